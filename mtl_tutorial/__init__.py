"""Multi-task learning for language models: the book's package.

The library is what a student imports and reuses: ``data``, ``tokenizer``, ``tasks``, ``models``,
``architectures``, ``batching``, ``step``, ``trainer``, ``evaluation``, ``weightings``,
``aggregators``, ``jacobian``, ``losses``, ``inference``, ``meta``, ``baselines``, ``files`` and
``fingerprint``. The code that only produces the book's results lives apart, in
:mod:`mtl_tutorial.studies` (``python -m mtl_tutorial.studies`` lists it); the library never
imports it.
"""
