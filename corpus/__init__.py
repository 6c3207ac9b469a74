"""Embedding large corpora: fixed row-range shards, one worker process per device, atomic resumable writes.

python -m corpus.encode MODEL --input corpus.jsonl --output embeddings/ --num-processes 2
"""
