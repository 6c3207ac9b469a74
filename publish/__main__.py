"""Publish an NV-Embed folder to the Hugging Face Hub.

    python -m publish MODEL_DIR --repo-id ORG/NAME [--private] [--dry-run] [--base-model ID] [--render-card]

Only allow-listed files are uploaded (weights as safetensors, config, code, tokenizer, sentence-transformers files,
instructions.json, README.md). Before the upload a fresh process loads the staged copy with AutoModel and
SentenceTransformer and checks that they agree. The token comes from HF_TOKEN or `hf auth login`, never a flag.
"""

import argparse
import json
import logging
import sys

import yaml

from .files import PublishError
from .upload import publish


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m publish", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model_dir", help="NV-Embed folder (converted or trained)")
    parser.add_argument("--repo-id", required=True, help="target Hub repo, ORG/NAME")
    parser.add_argument("--private", action="store_true", help="create the repo private")
    parser.add_argument(
        "--dry-run", action="store_true", help="list the files that would go, with sizes; upload nothing"
    )
    parser.add_argument("--base-model", default=None, help="backbone Hub id, needed to render the card")
    parser.add_argument("--render-card", action="store_true", help="re-render README.md even if the folder has one")
    parser.add_argument(
        "--training-config",
        default=None,
        help="JSON or YAML file (e.g. train/configs/*.yaml) for the card's training section",
    )
    parser.add_argument("--eval-results", default=None, help="JSON file for the card's evaluation section")
    parser.add_argument("--license", default="apache-2.0")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    card_kwargs = {"license": args.license}
    try:
        for key, path in [("training_config", args.training_config), ("eval_results", args.eval_results)]:
            if path:
                with open(path, encoding="utf-8") as f:
                    card_kwargs[key] = yaml.safe_load(f) if path.endswith((".yaml", ".yml")) else json.load(f)
        publish(
            args.model_dir,
            args.repo_id,
            private=args.private,
            dry_run=args.dry_run,
            base_model=args.base_model,
            render=True if args.render_card else None,
            card_kwargs=card_kwargs,
        )
    except (PublishError, OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
