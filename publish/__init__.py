"""Publishing an NV-Embed folder: the model card, the upload to the Hub, and a local preview of the Hub widget.

python -m publish MODEL_DIR --repo-id ORG/NAME [--private] [--dry-run]
python -m publish.serve MODEL_DIR [--port 8000]
"""

from .card import render_card
from .files import PublishError, stage
from .upload import publish, run_verification


__all__ = ["PublishError", "publish", "render_card", "run_verification", "stage"]
