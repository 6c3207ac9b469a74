"""Model card, allow-listed staging, verification and the upload path, against a local fake Hub (loopback only)."""

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from huggingface_hub import EvalResult, ModelCard
from huggingface_hub.repocard import metadata_load

from publish import PublishError, publish, render_card, run_verification, stage
from publish.files import is_allowed, scan_for_tokens, select_files


ROOT = Path(__file__).resolve().parents[1]
BASE_MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
FAKE_TOKEN = "hf_" + "Ab3" * 12  # shaped like a real token; only ever in the environment
INSTRUCTIONS = {
    "debian_description": {"kind": "retrieval", "instruction": "Given a package summary, retrieve its description"},
    "debian_section": {"kind": "classification", "instruction": "Classify the package into its Debian section"},
}
EXPECTED_FILES = {
    "README.md",
    "config.json",
    "config_sentence_transformers.json",
    "configuration_nvembed.py",
    "instructions.json",
    "model.safetensors",
    "modeling_nvembed.py",
    "modules.json",
    "sentence_transformer_nvembed.py",
    "1_Pooling/config.json",
    "sentence_bert_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
}
TIMEOUT = 240  # per subprocess; a verification loads torch + transformers + sentence-transformers twice over


# ---------------------------------------------------------------- fake Hub


class FakeHub(ThreadingHTTPServer):
    """The endpoints huggingface_hub 2.x calls for create_repo + upload_folder (regular and legacy-LFS uploads).

    Attributes set by tests: `reject` (HTTP status for every API call, e.g. 403), `lfs_suffixes` (files the preupload
    answer sends through the LFS batch API instead of inline base64). Recorded: `requests`, `repos`, `files`.
    """

    def __init__(self):
        super().__init__(("127.0.0.1", 0), FakeHubHandler)
        self.endpoint = f"http://127.0.0.1:{self.server_address[1]}"
        self.reject: int | None = None
        self.lfs_suffixes: tuple[str, ...] = ()
        self.requests: list[tuple[str, str]] = []
        self.auth: set[str] = set()
        self.repos: dict[str, dict] = {}
        self.files: dict[str, dict[str, bytes]] = {}
        self.lfs_store: dict[str, bytes] = {}


class FakeHubHandler(BaseHTTPRequestHandler):
    server: FakeHub

    def log_message(self, *args):  # keep pytest output clean
        pass

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while (size := int(self.rfile.readline().strip() or b"0", 16)) > 0:
                data += self.rfile.read(size)
                self.rfile.readline()
            self.rfile.readline()
            return data
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _reply(self, status: int, payload: dict | None = None):
        data = json.dumps(payload or {}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self):
        hub, path, body = self.server, self.path.split("?")[0], self._body()
        hub.requests.append((self.command, path))
        hub.auth.add(self.headers.get("Authorization", ""))
        if hub.reject:
            return self._reply(
                hub.reject, {"error": "You don't have the rights to create a model under this namespace"}
            )
        parts = path.strip("/").split("/")
        if self.command == "POST" and path == "/api/repos/create":
            payload = json.loads(body)
            repo_id = f"{payload['organization']}/{payload['name']}"
            hub.repos[repo_id] = payload
            hub.files.setdefault(repo_id, {})
            return self._reply(200, {"url": f"{hub.endpoint}/{repo_id}"})
        if self.command == "POST" and path == "/api/validate-yaml":
            return self._reply(200, {})
        if self.command == "POST" and parts[:2] == ["api", "models"] and parts[4] == "preupload":
            files = json.loads(body)["files"]
            modes = [
                {
                    "path": f["path"],
                    "uploadMode": "lfs" if f["path"].endswith(hub.lfs_suffixes) else "regular",
                    "shouldIgnore": False,
                    "oid": None,
                }
                for f in files
            ]
            return self._reply(200, {"files": modes})
        if self.command == "POST" and path.endswith(".git/info/lfs/objects/batch"):
            objects = [
                {
                    "oid": o["oid"],
                    "size": o["size"],
                    "authenticated": True,
                    "actions": {"upload": {"href": f"{hub.endpoint}/lfs-upload/{o['oid']}"}},
                }
                for o in json.loads(body)["objects"]
            ]
            return self._reply(200, {"transfer": "basic", "objects": objects})
        if self.command == "PUT" and parts[0] == "lfs-upload":
            if hashlib.sha256(body).hexdigest() != parts[1]:
                return self._reply(400, {"error": "sha256 mismatch"})
            hub.lfs_store[parts[1]] = body
            return self._reply(200)
        if self.command == "POST" and parts[:2] == ["api", "models"] and parts[4] == "commit":
            repo_id = f"{parts[2]}/{parts[3]}"
            if repo_id not in hub.repos:
                return self._reply(404, {"error": "Repository not found"})
            for line in body.decode().splitlines():
                item = json.loads(line)
                if item["key"] == "file":
                    hub.files[repo_id][item["value"]["path"]] = base64.b64decode(item["value"]["content"])
                elif item["key"] == "lfsFile":
                    hub.files[repo_id][item["value"]["path"]] = hub.lfs_store[item["value"]["oid"]]
            return self._reply(
                200,
                {
                    "commitUrl": f"{hub.endpoint}/{repo_id}/commit/{'0' * 40}",
                    "commitOid": "0" * 40,
                    "pullRequestUrl": None,
                },
            )
        return self._reply(404, {"error": f"fake hub: no route for {self.command} {path}"})

    do_GET = do_POST = do_PUT = _handle


@pytest.fixture()
def fake_hub():
    hub = FakeHub()
    thread = threading.Thread(target=hub.serve_forever, daemon=True)
    thread.start()
    yield hub
    hub.shutdown()
    hub.server_close()


def hub_env(hub: FakeHub, tmp_path: Path, token: str | None = FAKE_TOKEN, **extra) -> dict:
    """Environment of a publishing subprocess: the fake endpoint, online, an empty HF_HOME (no stored token)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING"))}
    env.update(
        HF_ENDPOINT=hub.endpoint,
        HF_HUB_OFFLINE="0",
        TRANSFORMERS_OFFLINE="0",
        HF_HOME=str(tmp_path / "hf_home"),
        HF_HUB_DISABLE_PROGRESS_BARS="1",
        NO_PROXY="127.0.0.1",
        no_proxy="127.0.0.1",
    )
    env.update(extra)
    if token:
        env["HF_TOKEN"] = token
    return env


def run_python(args: list[str], env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT)


PUBLISH_NO_VERIFY = """
import sys
from publish import PublishError, publish
try:
    publish(sys.argv[1], sys.argv[2], verify=False, base_model="org/base")
except PublishError as e:
    sys.exit(f"error: {e}")
"""


@pytest.fixture()
def model_dir(tiny_nvembed_folder, tmp_path) -> Path:
    """A private copy of the tiny folder with instructions.json, as a trained folder has."""
    folder = tmp_path / "model"
    shutil.copytree(tiny_nvembed_folder, folder)
    (folder / "instructions.json").write_text(json.dumps(INSTRUCTIONS, indent=2))
    return folder


# ---------------------------------------------------------------- card


def test_card_states_supported_versions_of_the_folders_code(model_dir):
    """Metadata and body name the ranges the folder's configuration_nvembed.py checks when it loads."""
    code = (model_dir / "configuration_nvembed.py").read_text()
    assert "SUPPORTED_TRANSFORMERS = ((4, 42), (6, 0))" in code
    code = code.replace("SUPPORTED_TRANSFORMERS = ((4, 42), (6, 0))", "SUPPORTED_TRANSFORMERS = ((4, 53), (6, 0))")
    (model_dir / "configuration_nvembed.py").write_text(code)  # the card follows the folder's code, not the repo's
    card = render_card(model_dir, base_model=BASE_MODEL, repo_id="org/nvembed-tiny")
    meta = metadata_load(model_dir / "README.md")
    assert meta["supported_versions"] == {"transformers": ">=4.53,<6.0", "sentence_transformers": ">=4.0,<7.0"}
    assert 'pip install "transformers>=4.53,<6.0" "sentence-transformers>=4.0,<7.0"' in card.text
    (model_dir / "configuration_nvembed.py").write_text(code.replace("SUPPORTED_SENTENCE_TRANSFORMERS", "OTHER"))
    with pytest.raises(ValueError, match="SUPPORTED_SENTENCE_TRANSFORMERS"):
        render_card(model_dir, base_model=BASE_MODEL)


def test_card_metadata_round_trips(model_dir):
    eval_results = [
        EvalResult(
            task_type="Retrieval",
            dataset_type="debian_description",
            dataset_name="debian_description",
            metric_type="ndcg_at_10",
            metric_value=0.612,
            dataset_split="test",
        ),
        EvalResult(
            task_type="Classification",
            dataset_type="debian_section",
            dataset_name="debian_section",
            metric_type="accuracy",
            metric_value=0.7,
            dataset_split="test",
        ),
    ]
    training = {
        "stages": {
            "stage1": {"loss": "CachedMNRL", "in_batch_negatives": True},
            "stage2": {"loss": "hard negatives only", "in_batch_negatives": False},
        },
        "datasets": ["local/debian", "local/pydoc"],
        "hardware": "1x NVIDIA H100 80GB",
        "lora_r": 16,
    }
    card = render_card(
        model_dir,
        base_model=BASE_MODEL,
        training_config=training,
        eval_results=eval_results,
        repo_id="org/nvembed-tiny",
        license="apache-2.0",
        language="en",
    )

    loaded = ModelCard.load(model_dir / "README.md").data
    assert loaded.base_model == BASE_MODEL
    assert loaded.library_name == "sentence-transformers"
    assert loaded.pipeline_tag == "sentence-similarity"
    assert loaded.license == "apache-2.0" and loaded.language == "en"
    assert loaded.datasets == ["local/debian", "local/pydoc"]
    assert {"nvembed", "sentence-transformers", "feature-extraction"} <= set(loaded.tags)
    assert "text-embeddings-inference" not in loaded.tags
    assert loaded.model_name == "org/nvembed-tiny"
    assert loaded.eval_results == eval_results
    assert loaded.to_dict() == card.data.to_dict()

    meta = metadata_load(model_dir / "README.md")
    widget = meta["widget"][0]
    assert widget["source_sentence"].startswith(
        f"Instruct: {INSTRUCTIONS['debian_description']['instruction']}\nQuery:\n"
    )
    assert len(widget["sentences"]) >= 2
    assert meta["model-index"][0]["results"][0]["metrics"][0] == {"type": "ndcg_at_10", "value": 0.612}

    body = card.text
    for needle in [
        "trust_remote_code=True",
        'prompt_name="query"',
        "mteb.evaluate",
        "| debian_section | classification |",
        "#### stage2",
        "1x NVIDIA H100 80GB",
        "| lora_r | 16 |",
        "| Retrieval | debian_description | test |",
        "lee2025nvembed",
        "## Limitations",
    ]:
        assert needle in body, needle


def test_card_optional_inputs_absent(tiny_nvembed_folder, tmp_path):
    folder = tmp_path / "bare"
    shutil.copytree(tiny_nvembed_folder, folder)
    card = render_card(folder, base_model=BASE_MODEL)
    meta = metadata_load(folder / "README.md")
    assert "model-index" not in meta
    prompt = json.loads((folder / "config_sentence_transformers.json").read_text())["prompts"]["query"]
    assert meta["widget"][0]["source_sentence"].startswith(prompt)
    assert "No training record" in card.text and "No evaluation results" in card.text
    assert "temperature 0.01" in card.text and "### Command" not in card.text  # the recipe it is meant for


def test_card_reads_eval_and_training_files_from_folder(model_dir):
    (model_dir / "eval_results.json").write_text(json.dumps({"debian_description": 0.5, "debian_section": 0.75}))
    (model_dir / "training_config.json").write_text(json.dumps({"learning_rate": 1e-4, "hardware": "CPU"}))
    card = render_card(model_dir, base_model=BASE_MODEL)
    results = ModelCard.load(model_dir / "README.md").data.eval_results
    assert [(r.task_type, r.dataset_name, r.metric_value) for r in results] == [
        ("Retrieval", "debian_description", 0.5),
        ("Classification", "debian_section", 0.75),
    ]
    assert "| learning_rate | 0.0001 |" in card.text


# ---------------------------------------------------------------- allow-list, pickles, tokens


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        ("model.safetensors", True),
        ("model-00001-of-00002.safetensors", True),
        ("tokenizer.json", True),
        ("modeling_nvembed.py", True),
        ("sentence_transformer_nvembed.py", True),
        ("1_Pooling/config.json", True),
        ("2_Dense/model.safetensors", True),
        ("README.md", True),
        ("instructions.json", True),
        (".env", False),
        ("trainer_state.json", False),
        ("checkpoints/model.safetensors", False),
        ("runs/events.out.tfevents", False),
        ("train.log", False),
        ("optimizer.safetensors/x", False),
        ("1_Pooling/notes.txt", False),
        ("eval_results.json", False),
    ],
)
def test_allow_list(path, allowed):
    assert is_allowed(path) is allowed


def test_staging_keeps_only_allow_listed_files(model_dir, tmp_path):
    junk = {
        "checkpoints/checkpoint-10/optimizer.pt": b"x",
        "checkpoints/checkpoint-10/model.safetensors": b"x",
        "runs/events.out.tfevents.1": b"x",
        "logs/train.log": b"x",
        ".env": f"HF_TOKEN={FAKE_TOKEN}".encode(),
        "trainer_state.json": b"{}",
        "notes.txt": b"hello",
    }
    for rel, data in junk.items():
        (model_dir / rel).parent.mkdir(parents=True, exist_ok=True)
        (model_dir / rel).write_bytes(data)
    (model_dir / "2_Dense").mkdir()
    (model_dir / "2_Dense" / "config.json").write_text("{}")

    selected, left_out = select_files(model_dir)
    assert set(selected) == EXPECTED_FILES - {"README.md"} | {"2_Dense/config.json"}
    assert {"checkpoints/", "runs/", "logs/", ".env", "trainer_state.json", "notes.txt"} <= set(left_out)

    staged = stage(model_dir, tmp_path / "staged")
    on_disk = {p.relative_to(tmp_path / "staged").as_posix() for p in (tmp_path / "staged").rglob("*") if p.is_file()}
    assert on_disk == {f.path for f in staged} == set(selected)
    assert all(f.size == (model_dir / f.path).stat().st_size for f in staged)


@pytest.mark.parametrize(
    "name",
    [
        "pytorch_model.bin",
        "training_args.bin",
        "model.pt",
        "weights.pth",
        "x.pkl",
        "last.ckpt",
        "1_Dense/pytorch_model.bin",
    ],
)
def test_pickled_weights_refused(model_dir, name):
    (model_dir / name).parent.mkdir(exist_ok=True)
    (model_dir / name).write_bytes(b"\x80\x04pickle")
    with pytest.raises(PublishError, match="pickled") as info:
        select_files(model_dir)
    assert name in str(info.value)


def test_token_scan_refuses_files_with_tokens(model_dir, tmp_path, monkeypatch):
    readme = f"---\nlicense: mit\n---\nmy token is {FAKE_TOKEN}\n"
    with pytest.raises(PublishError, match="looks like a Hugging Face token") as info:
        stage(model_dir, tmp_path / "staged", readme=readme)
    assert "README.md" in str(info.value) and FAKE_TOKEN not in str(info.value)

    # a token split across two read chunks is still found; short "hf_" strings are not tokens
    monkeypatch.setattr("publish.files._SCAN_CHUNK", 16)
    (tmp_path / "split.json").write_text("x" * 10 + FAKE_TOKEN)
    (tmp_path / "short.json").write_text('{"tag": "hf_transfer", "x": "hf_abc123"}')
    with pytest.raises(PublishError, match="split.json"):
        scan_for_tokens(tmp_path, ["short.json", "split.json"])
    scan_for_tokens(tmp_path, ["short.json"])


# ---------------------------------------------------------------- CLI and upload against the fake Hub


def test_dry_run_lists_files_with_sizes_and_uploads_nothing(model_dir, fake_hub, tmp_path):
    (model_dir / ".env").write_text("SECRET=1")
    proc = run_python(
        ["-m", "publish", str(model_dir), "--repo-id", "org/tiny", "--dry-run", "--base-model", BASE_MODEL],
        hub_env(fake_hub, tmp_path, token=None, HF_HUB_OFFLINE="1"),
    )
    assert proc.returncode == 0, proc.stderr
    listed = {
        line.split()[0]: int(line.split()[1].replace(",", ""))
        for line in proc.stdout.splitlines()
        if line.endswith(" bytes") and not line.startswith(("Dry run", f"{len(EXPECTED_FILES)} files"))
    }
    assert set(listed) == EXPECTED_FILES
    assert listed["model.safetensors"] == (model_dir / "model.safetensors").stat().st_size
    assert ".env" in proc.stdout.splitlines()[-1]  # named as left out
    assert fake_hub.requests == []
    assert not (model_dir / "README.md").exists()  # the card is rendered into the staging copy only


def test_publish_verifies_then_uploads_exactly_the_staged_files(model_dir, fake_hub, tmp_path):
    (model_dir / "checkpoints").mkdir()
    (model_dir / "checkpoints" / "optimizer.pt").write_bytes(b"x")
    (model_dir / ".env").write_text("SECRET=1")
    proc = run_python(
        ["-m", "publish", str(model_dir), "--repo-id", "org/tiny", "--private", "--base-model", BASE_MODEL],
        hub_env(fake_hub, tmp_path),
    )
    assert proc.returncode == 0, proc.stderr
    assert "verified" in proc.stderr and f"uploaded {len(EXPECTED_FILES)} files" in proc.stderr

    assert fake_hub.repos["org/tiny"]["visibility"] == "private"
    assert f"Bearer {FAKE_TOKEN}" in fake_hub.auth
    arrived = fake_hub.files["org/tiny"]
    assert set(arrived) == EXPECTED_FILES
    for name in EXPECTED_FILES - {"README.md"}:
        assert arrived[name] == (model_dir / name).read_bytes(), name
    readme = tmp_path / "README.md"
    readme.write_bytes(arrived["README.md"])
    assert ModelCard.load(readme).data.base_model == BASE_MODEL


def test_publish_large_files_through_lfs_batch(model_dir, fake_hub, tmp_path):
    """Legacy path (no hf_xet): the server asks for LFS, the client does batch + PUT, the commit references oids."""
    fake_hub.lfs_suffixes = (".safetensors",)
    env = hub_env(fake_hub, tmp_path, HF_HUB_DISABLE_XET="1")
    proc = run_python(["-c", PUBLISH_NO_VERIFY, str(model_dir), "org/tiny-lfs"], env)
    assert proc.returncode == 0, proc.stderr
    weights = (model_dir / "model.safetensors").read_bytes()
    assert fake_hub.lfs_store == {hashlib.sha256(weights).hexdigest(): weights}
    assert fake_hub.files["org/tiny-lfs"]["model.safetensors"] == weights
    assert set(fake_hub.files["org/tiny-lfs"]) == EXPECTED_FILES


def test_offline_mode_gives_clear_message(model_dir, fake_hub, tmp_path):
    proc = run_python(
        ["-m", "publish", str(model_dir), "--repo-id", "org/tiny", "--base-model", BASE_MODEL],
        hub_env(fake_hub, tmp_path, HF_HUB_OFFLINE="1"),
    )
    assert proc.returncode == 2
    assert "Offline mode is on" in proc.stderr and "--dry-run" in proc.stderr
    assert fake_hub.requests == []


def test_missing_token_gives_clear_message(model_dir, fake_hub, tmp_path):
    proc = run_python(
        ["-m", "publish", str(model_dir), "--repo-id", "org/tiny", "--base-model", BASE_MODEL],
        hub_env(fake_hub, tmp_path, token=None),
    )
    assert proc.returncode == 2
    assert "No Hugging Face token found" in proc.stderr and "HF_TOKEN" in proc.stderr
    assert fake_hub.requests == []


def test_rejected_upload_gives_clear_message(model_dir, fake_hub, tmp_path):
    fake_hub.reject = 403
    proc = run_python(["-c", PUBLISH_NO_VERIFY, str(model_dir), "org/tiny"], hub_env(fake_hub, tmp_path))
    assert proc.returncode != 0
    assert "rejected the upload of org/tiny (HTTP 403: the token has no write access to 'org')" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert ("POST", "/api/repos/create") in fake_hub.requests
    assert not any("commit" in path for _, path in fake_hub.requests)


def test_verification_failure_stops_upload(model_dir, fake_hub, tmp_path):
    """A README without widget metadata and ST truncating at 4 tokens (AutoModel does not): both are reported."""
    (model_dir / "README.md").write_text("---\nlicense: mit\n---\n# hand-written card\n")
    st_config = json.loads((model_dir / "sentence_bert_config.json").read_text())
    (model_dir / "sentence_bert_config.json").write_text(json.dumps({**st_config, "max_seq_length": 4}))
    staged = tmp_path / "staged"
    stage(model_dir, staged)
    with pytest.raises(PublishError) as info:
        run_verification(staged, timeout=TIMEOUT)
    message = str(info.value)
    assert "nothing uploaded" in message
    assert "no sentence-similarity widget" in message and "pipeline_tag" in message
    assert "AutoModel and SentenceTransformer disagree" in message

    with pytest.raises(PublishError, match="must be ORG/NAME"):
        publish(model_dir, "no-namespace")
    assert fake_hub.requests == []
