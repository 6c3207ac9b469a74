"""OpenAI-compatible embedding server on Ray Serve (`python -m serve MODEL`); see `serve/app.py`."""
