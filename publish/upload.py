"""Stage, verify and upload an NV-Embed folder to the Hugging Face Hub.

The token comes from huggingface_hub's usual sources (the `HF_TOKEN` variable or the token stored by `hf auth login`),
never from an argument. The endpoint is huggingface_hub's (`HF_ENDPOINT`).

Example:
    >>> from publish import publish
    >>> publish("artifacts/nvembed", "my-org/nvembed-smollm2", dry_run=True)  # doctest: +SKIP
"""

import json
import logging
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

from .card import render_card
from .files import PublishError, StagedFile, select_files, stage


logger = logging.getLogger(__name__)

VERIFY_SCRIPT = Path(__file__).resolve().parent / "verify.py"


def run_verification(staged_dir: str | Path, timeout: float = 600) -> dict:
    """Run `publish/verify.py` on `staged_dir` in a fresh Python process (offline, empty remote-code cache).

    Raises:
        PublishError: a check failed, the process crashed or timed out.
    """
    staged_dir = Path(staged_dir).resolve()
    with tempfile.TemporaryDirectory(prefix="nvembed-verify-") as scratch:
        env = {
            **os.environ,
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "HF_MODULES_CACHE": str(Path(scratch, "modules")),  # the staged modeling code, not a cached copy
            "TOKENIZERS_PARALLELISM": "false",
        }
        env.pop("PYTHONPATH", None)  # the staged folder must be self-sufficient
        try:
            proc = subprocess.run(
                [sys.executable, str(VERIFY_SCRIPT), str(staged_dir)],
                cwd=scratch,
                env=env,
                capture_output=True,
                text=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired as e:
            raise PublishError(
                f"Verification of {staged_dir} timed out after {timeout:.0f}s; nothing uploaded."
            ) from e
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise PublishError(
            f"Verification process failed (exit {proc.returncode}); nothing uploaded.\n{proc.stderr[-3000:]}"
        )
    report = json.loads(lines[-1])
    if not report["ok"]:
        raise PublishError("Verification failed; nothing uploaded:\n- " + "\n- ".join(report["errors"]))
    logger.info("verified %s: AutoModel vs SentenceTransformer max abs diff %.2g", staged_dir, report["max_abs_diff"])
    return report


def check_can_upload(repo_id: str) -> None:
    """Fail early and clearly on offline mode, a bad repo id or a missing token (before any slow step)."""
    from huggingface_hub import constants, get_token

    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise PublishError(f"--repo-id must be ORG/NAME (or USER/NAME), got {repo_id!r}.")
    if constants.is_offline_mode():
        raise PublishError(
            "Offline mode is on (HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE is set), so nothing can be uploaded. "
            "Unset it for this command, e.g. `HF_HUB_OFFLINE=0 python -m publish ...`, or use --dry-run."
        )
    if not get_token():
        raise PublishError(
            "No Hugging Face token found. Set the HF_TOKEN environment variable or run `hf auth login` "
            "(a token with write access to the target namespace)."
        )


def format_listing(files: list[StagedFile], left_out: list[str]) -> str:
    width = max(len(f.path) for f in files)
    lines = [f"{f.path:<{width}}  {f.size:>14,d} bytes" for f in files]
    lines.append(f"{len(files)} files, {sum(f.size for f in files):,d} bytes in total")
    if left_out:
        lines.append("not uploaded (not on the allow-list): " + ", ".join(left_out))
    return "\n".join(lines)


def publish(
    model_dir: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    dry_run: bool = False,
    base_model: str | None = None,
    render: bool | None = None,
    card_kwargs: Mapping | None = None,
    commit_message: str = "Upload NV-Embed model",
    verify: bool = True,
    verify_timeout: float = 600,
) -> list[StagedFile]:
    """Build the staging copy of `model_dir`, verify it, then `create_repo` + `upload_folder` it to `repo_id`.

    Args:
        model_dir: An NV-Embed folder (converted or trained).
        repo_id: "ORG/NAME".
        private: Create the repo private (an existing repo keeps its visibility).
        dry_run: Print the files (with sizes) that would be uploaded; upload nothing, need no token.
        base_model: Backbone Hub id for the card; needed when the card is rendered.
        render: Render README.md with `render_card` (default: only when the folder has none).
        card_kwargs: Extra `render_card` arguments (training_config, eval_results, license, datasets, ...).
        verify: Run the fresh-process load/encode/agreement check (tests of the transport alone switch it off).

    Returns:
        The uploaded (or, with `dry_run`, the would-be uploaded) files.

    Raises:
        PublishError: Any check or the upload failed; the message says which and why.
    """
    model_dir = Path(model_dir)
    if not dry_run:
        check_can_upload(repo_id)
    _, left_out = select_files(model_dir)
    with tempfile.TemporaryDirectory(prefix="nvembed-publish-") as tmp:
        staged_dir = Path(tmp) / repo_id.replace("/", "--")
        readme = None
        if render or (render is None and not (model_dir / "README.md").is_file()):
            if not base_model:
                raise PublishError(
                    f"{model_dir} has no README.md; pass --base-model so the model card can be rendered."
                )
            card = render_card(
                model_dir, base_model=base_model, repo_id=repo_id, write=False, **dict(card_kwargs or {})
            )
            readme = str(card)
        files = stage(model_dir, staged_dir, readme=readme)
        if dry_run:
            print(f"Dry run: would upload to {repo_id} ({'private' if private else 'public'}):")
            print(format_listing(files, left_out))
            return files
        if verify:
            run_verification(staged_dir, timeout=verify_timeout)
        _upload(staged_dir, files, repo_id, private=private, commit_message=commit_message)
    return files


def _upload(staged_dir: Path, files: list[StagedFile], repo_id: str, private: bool, commit_message: str) -> None:
    import httpx2  # huggingface_hub's HTTP client
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    api = HfApi()
    try:
        url = api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        api.upload_folder(
            repo_id=repo_id,
            repo_type="model",
            folder_path=staged_dir,
            allow_patterns=[f.path for f in files],  # the staging copy holds nothing else; belt and braces
            commit_message=commit_message,
        )
    except OfflineModeIsEnabled as e:
        raise PublishError(f"Offline mode is on; nothing uploaded ({e}).") from e
    except HfHubHTTPError as e:
        status = e.response.status_code if e.response is not None else "?"
        hint = {
            401: "the token is invalid or expired",
            403: f"the token has no write access to {repo_id.split('/')[0]!r}",
            404: "the repository or namespace does not exist",
        }.get(status, "see the server message")
        raise PublishError(
            f"The Hub at {api.endpoint} rejected the upload of {repo_id} (HTTP {status}: {hint}): "
            f"{e.server_message or e}"
        ) from e
    except (OSError, httpx2.TransportError) as e:  # connection refused, DNS, TLS
        raise PublishError(f"Could not reach the Hub at {api.endpoint}: {e}") from e
    logger.info("uploaded %d files to %s", len(files), url)
