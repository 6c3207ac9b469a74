"""Embedding large corpora on Ray Data: fixed row-range parts, one model replica per GPU (or per node on CPU
clusters), checked inputs, fingerprinted and verified parts, atomic resumable writes, one run per output folder.

python -m corpus.encode MODEL --input corpus.jsonl --output embeddings/ [--address ray://HEAD:10001] [--num-workers N]
"""
