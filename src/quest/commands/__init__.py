"""The commands beside the pipeline: every `quest` verb and `python -m` entry point but the stages (cli is the
table of them), and the served model's code."""
