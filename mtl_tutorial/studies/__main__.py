"""``python -m mtl_tutorial.studies``: list the book's studies and the command of each."""

from __future__ import annotations

import sys

from mtl_tutorial.studies import cli

# name -> (what it produces for the book). Each is ``python -m mtl_tutorial.studies.NAME --help``.
STUDIES: dict[str, str] = {
    "experiments": "chapters 2.1, 4 and 5: the case study's named experiments (case_study, article_lstm, prefix_ablation, "
                   "methods, architectures)",
    "pretrained": "chapter 2.2: MiniLM frozen / fine-tuned against the from-scratch trunk",
    "sine": "chapter 2.3: MAML, FOMAML, Reptile and joint training on sine waves",
    "fewshot": "chapter 2.3: WordNet 5-way 1- and 5-shot episodes",
    "digits": "chapter 3.1: digits with an auxiliary task, shared against separate trunks",
    "gridworld": "chapter 3.1: a four-goal grid world, shared against separate Q-networks",
    "toy_record": "chapter 4: the two-task toy problem's trajectories, and its timing",
    "bench": "chapters 2.1, 4 and 5: the cost of a multi-task step, of each aggregator and architecture",
}


def main(argv: list[str] | None = None) -> int:
    parser = cli.study_parser("__main__", __doc__)
    parser.prog = "python -m mtl_tutorial.studies"
    parser.parse_args(argv)
    width = max(map(len, STUDIES))
    for name, what in STUDIES.items():
        print(f"{name:{width}s}  {what}")
    print("\nEach is a command: python -m mtl_tutorial.studies.NAME --help")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
