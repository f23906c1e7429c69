"""Multi-task learning for language models: the book's package."""
