"""Embedding large corpora on Ray Data: one model replica per worker (per GPU where there are GPUs), one output part
per row range of an input file, each written whole and atomically, so a killed run resumes where it stopped.

    python -m corpus.encode MODEL --input corpus.jsonl --output embeddings/ [--num-workers 2] [--address ray://HEAD:10001]

See `corpus/encode.py` for the output layout and what a rerun checks.
"""
