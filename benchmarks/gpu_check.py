"""`make gpu-check`: every CUDA path of this repository in one prepared run, sized for a short GPU lease (< 8 min).

Checks, in order; each one's status, seconds and numbers go to `benchmarks/results/gpu/gpu_check.json` and a readable
`gpu_check.txt` beside it (headed by the command and the machine), and the script exits 1 if any check failed:

1. `env`: CUDA is there, the GPU's name, bf16 support (`train.pipeline.bf16_available`).
2. `cuda_tests`: `pytest -m cuda tests/test_cuda.py` (the CUDA-marked tests, all in that file; they skip without a
   GPU).
3. `train_steps`: a few optimizer steps at `train/configs/full.yaml`'s settings (LoRA, gradient checkpointing,
   GradCache's cached loss with its mini-batch, stage 1's batch size and hard negatives, max_seq_length) under bf16
   autocast, on local texts (no Hub); the loss must be finite. The step time gives the MFU: model FLOPs
   (6 x backbone parameters x tokens, the usual convention; recompute and the cached loss's extra forward are not
   counted) over the GPU's dense bf16 peak (`PEAK_BF16_TFLOPS`).
4. `encode`: forward throughput (tokens/s) and peak memory of the converted model at 512 and 4096 tokens, sdpa vs
   eager attention, with the largest difference between the two kernels' embeddings.
5. `server`: `python -m serve` (Ray Serve) on the GPU answers `/v1/embeddings`, and `nvidia-smi` shows a process other
   than this one holding GPU memory.

`--dry-run` runs the same code on CPU with tiny sizes (a 1-layer conversion, 2 steps of batch 4 at 32 tokens, 16 and
32 tokens for `encode`, the server on CPU) and writes `benchmarks/results/gpu/dry_run.json`; CI runs it
(tests/test_gpu_check.py) so the script does not rot. Nothing in a dry run is a GPU number.

Sizing: on an H100 the real run is, by estimate (never run: no GPU so far), ~1 min of tests, ~1 min of conversion and
training steps, ~1 min of encode timings and ~1-2 min of server start-up; `--budget-s` (default 420) stops starting new
checks once spent, and those are reported as skipped (a failure).

The device machine's image has torch but lacks `datasets`, `trl` and `gguf`, and the tree sent to it is limited to
64 MiB. Carry their wheels: on a machine with PyPI, from the repository root,

    pip download --no-deps -d wheels/ datasets trl gguf dill multiprocess xxhash
    du -sh wheels/            # must leave room for the tree: pyarrow (~40 MB) only if the image lacks it

then send `wheels/` with the tree (the device tool's `carry: ["wheels"]`) and run

    make gpu-check GPU_CHECK_ARGS="--wheels wheels"

`--wheels DIR` installs whatever of those is missing with `pip install --no-index --find-links DIR` before anything
else (pyarrow too if its wheel is there). Results come back under `benchmarks/results/gpu/`.

Example:
    python benchmarks/gpu_check.py --dry-run              # CPU, tiny sizes, ~1 min
    python benchmarks/gpu_check.py --wheels wheels        # on the GPU machine
"""

import argparse
import importlib.util
import json
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.request
from pathlib import Path

import torch
from _model import converted_folder
from _paths import RESULTS, ROOT
from _report import Report
from _texts import token_batch
from _timing import sync


OUT = RESULTS / "gpu"
MISSING_ON_DEVICE = ("datasets", "trl", "gguf")
# Dense bf16 tensor-core peaks (TFLOP/s) from the vendors' data sheets; a GPU not listed gets no MFU.
PEAK_BF16_TFLOPS = {"H200": 989.4, "H100 SXM": 989.4, "H100 80GB HBM3": 989.4, "H100 PCIe": 756.0, "A100": 312.0}
FULL = dict(lengths=(512, 4096), encode_batch=4, encode_repeats=3, steps=3, server_timeout=240)
DRY = dict(lengths=(16, 32), encode_batch=2, encode_repeats=1, steps=2, server_timeout=240)


def install_missing(wheels: Path) -> list[str]:
    """pip-install what the device image lacks from a folder of wheels (no index); returns what it installed."""
    missing = [name for name in MISSING_ON_DEVICE if importlib.util.find_spec(name) is None]
    if missing:
        if not wheels.is_dir():
            raise SystemExit(f"{missing} are not installed and --wheels {wheels} is not a folder (see the docstring)")
        cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--find-links", str(wheels), *missing]
        subprocess.run(cmd, check=True)
    return missing


def peak_tflops(name: str) -> float | None:
    return next((peak for key, peak in PEAK_BF16_TFLOPS.items() if key in name), None)


def check_env(device: str) -> dict:
    from train.pipeline import bf16_available

    info = {"torch": torch.__version__, "cuda_available": torch.cuda.is_available(), "bf16": bf16_available(device)}
    if device == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("torch.cuda.is_available() is False on the GPU run")
        info.update(gpu=torch.cuda.get_device_name(), capability=list(torch.cuda.get_device_capability()))
        info["memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
    return info


CUDA_TESTS = "tests/test_cuda.py"  # every `cuda`-marked test lives here (tests/test_gpu_check.py checks it)


def check_cuda_tests(dry_run: bool) -> dict:
    # One file, not tests/: collecting the whole suite imports Ray, mteb and the server (~1 min of a CI run) to find
    # two tests.
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider", CUDA_TESTS]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    tail = proc.stdout.strip().splitlines()[-1:] or [""]
    # Without a GPU every CUDA test skips (exit 0); exit 5 means none were collected: the marker lost its tests.
    if proc.returncode != 0:
        raise RuntimeError(f"pytest -m cuda exited {proc.returncode}: {proc.stdout[-2000:]}{proc.stderr[-1000:]}")
    if not dry_run and "skipped" in tail[0] and "passed" not in tail[0]:
        raise RuntimeError(f"every CUDA test skipped on the GPU run: {tail[0]}")
    return {"summary": tail[0]}


def model_folder(dry_run: bool, work: Path) -> Path:
    if not dry_run:
        return converted_folder()
    from convert_to_nvembed import convert

    return convert(None, work / "nvembed-1layer", num_latents=16, num_layers=1)


def check_train_steps(device: str, folder: Path, dry_run: bool, steps: int, work: Path) -> dict:
    from _texts import mixed_corpus
    from sentence_transformers.sentence_transformer.losses import CachedMultipleNegativesRankingLoss

    from modeling_nvembed import format_instruction
    from nvembed_defaults import DEFAULT_QUERY_TASK
    from train.config import load_config
    from train.pipeline import bf16_available, load_for_training

    overrides = dict(output_dir=str(work / "run"))
    if dry_run:
        overrides.update(max_seq_length=32, mini_batch_size=2)
    cfg = load_config(ROOT / "train" / "configs" / "full.yaml", **overrides)
    stage = cfg.stages[0]
    batch, negatives = (4, 1) if dry_run else (stage.batch_size, stage.num_hard_negatives)
    if not cfg.cached_loss:
        raise RuntimeError("full.yaml no longer uses the cached loss; this check measures it")
    torch.manual_seed(0)
    model = load_for_training(folder, cfg, device)
    model.train()
    loss = CachedMultipleNegativesRankingLoss(model, scale=1.0 / cfg.temperature, mini_batch_size=cfg.mini_batch_size)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=stage.learning_rate)
    tokenizer = model[0].model.tokenizer
    texts = mixed_corpus(tokenizer, (2 + negatives) * batch, cfg.max_seq_length // 2, cfg.max_seq_length * 2, seed=3)
    columns = [texts[i * batch : (i + 1) * batch] for i in range(2 + negatives)]
    prompts = [format_instruction(DEFAULT_QUERY_TASK)] + [None] * (1 + negatives)
    features = []
    for column, prompt in zip(columns, prompts):
        f = model.preprocess(column, prompt=prompt)
        features.append({k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in f.items()})
    tokens = sum(int(f["attention_mask"].sum()) for f in features)
    use_bf16 = bf16_available(device)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()

    def step() -> float:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=use_bf16):
            value = loss(features, None)
        value.backward()
        optimizer.step()
        return value.item()

    losses, times = [step()], []  # the first step is the warm-up
    for _ in range(steps):
        sync(device)
        start = time.perf_counter()
        losses.append(step())
        sync(device)
        times.append(time.perf_counter() - start)
    if not all(math.isfinite(value) for value in losses):
        raise RuntimeError(f"a training step's loss is not finite: {losses}")
    backbone_params = sum(p.numel() for name, p in model.named_parameters() if "embed_tokens" not in name)
    step_s = sorted(times)[len(times) // 2]
    flops = 6 * backbone_params * tokens
    result = {
        "bf16": use_bf16,
        "batch_size": batch,
        "columns": 2 + negatives,
        "max_seq_length": cfg.max_seq_length,
        "mini_batch_size": cfg.mini_batch_size,
        "lora": cfg.lora,
        "gradient_checkpointing": cfg.gradient_checkpointing,
        "losses": losses,
        "step_s": times,
        "tokens_per_step": tokens,
        "model_tflops_per_step": flops / 1e12,
        "achieved_tflops": flops / step_s / 1e12,
    }
    if device == "cuda":
        result["peak_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
        peak = peak_tflops(torch.cuda.get_device_name())
        result["mfu"] = flops / step_s / (peak * 1e12) if peak else None
    return result


def check_encode(device: str, folder: Path, lengths, batch_size: int, repeats: int) -> dict:
    from _model import load_model
    from attention_path import set_kernel

    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    model = load_model(folder, device, dtype)
    results = {}
    for length in lengths:
        batch = token_batch(model.tokenizer, batch_size, length, device)
        embeddings = {}
        for kernel in ("sdpa", "eager"):
            set_kernel(model.embedding_model, kernel)
            if device == "cuda":
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
            times = []
            for i in range(repeats + 1):  # the first is the warm-up
                sync(device)
                start = time.perf_counter()
                with torch.no_grad():
                    out = model(**batch)["sentence_embeddings"]
                sync(device)
                if i:
                    times.append(time.perf_counter() - start)
            embeddings[kernel] = out.float()
            seconds = sorted(times)[len(times) // 2]
            entry = {"tokens_per_s": batch_size * length / seconds, "forward_s": times}
            if device == "cuda":
                entry["peak_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
            results[f"{length}_{kernel}"] = entry
        diff = (embeddings["sdpa"] - embeddings["eager"]).abs().max().item()
        results[f"{length}_max_abs_diff_sdpa_vs_eager"] = diff
        if not diff < (5e-2 if dtype == torch.bfloat16 else 1e-4):
            raise RuntimeError(f"sdpa and eager embeddings differ by {diff} at {length} tokens")
    return results


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check_server(device: str, folder: Path, timeout: float) -> dict:
    port = free_port()
    cmd = [sys.executable, "-m", "serve", str(folder), "--port", str(port), "--name", "nvembed"]
    cmd += ["--gpus-per-replica", "1"] if device == "cuda" else ["--gpus-per-replica", "0", "--cpus-per-replica", "1"]
    log = tempfile.NamedTemporaryFile("w+", suffix=".log", delete=False)
    server = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    body = json.dumps({"model": "nvembed", "input": ["gzip compresses files"]}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/embeddings", body, {"Content-Type": "application/json"}
    )
    start = time.perf_counter()
    try:
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"the server exited {server.returncode}: {Path(log.name).read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    answer = json.loads(response.read())
                break
            except OSError:
                if time.perf_counter() - start > timeout:
                    raise RuntimeError(f"no answer in {timeout} s: {Path(log.name).read_text()[-2000:]}") from None
                time.sleep(2)
        vector = answer["data"][0]["embedding"]
        result = {"start_to_answer_s": time.perf_counter() - start, "dimensions": len(vector)}
        if not all(math.isfinite(x) for x in vector):
            raise RuntimeError("the server returned a non-finite embedding")
        if device == "cuda":
            apps = subprocess.run(
                ["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader"],
                capture_output=True,
                text=True,
            ).stdout.strip()
            others = [line for line in apps.splitlines() if line.split(",")[0].strip() != str(os.getpid())]
            if not others:
                raise RuntimeError(f"the server answered but no other process holds GPU memory: {apps!r}")
            result["gpu_processes"] = others
        return result
    finally:
        server.terminate()  # SIGTERM: the server shuts Serve and the Ray instance it started down
        try:
            server.wait(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)  # its own session: only the server and what it started
            server.wait(timeout=30)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes: checks the script, measures nothing")
    parser.add_argument("--wheels", type=Path, default=None, help="folder of wheels for what the image lacks")
    parser.add_argument("--budget-s", type=float, default=420.0, help="start no new check after this many seconds")
    parser.add_argument("--only", default=None, help="comma-separated checks to run (default: all)")
    parser.add_argument("--output", type=Path, default=None, help="results file (default: results/gpu/...json)")
    args = parser.parse_args(argv)
    installed = install_missing(args.wheels) if args.wheels else []
    device = "cpu" if args.dry_run else "cuda"
    sizes = DRY if args.dry_run else FULL
    report = Report("gpu_check", device if torch.cuda.is_available() or args.dry_run else "cpu")
    work = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    folder: list[Path] = []

    def the_folder() -> Path:
        if not folder:
            folder.append(model_folder(args.dry_run, work))
        return folder[0]

    checks = {
        "env": lambda: check_env(device),
        "cuda_tests": lambda: check_cuda_tests(args.dry_run),
        "train_steps": lambda: check_train_steps(device, the_folder(), args.dry_run, sizes["steps"], work),
        "encode": lambda: check_encode(
            device, the_folder(), sizes["lengths"], sizes["encode_batch"], sizes["encode_repeats"]
        ),
        "server": lambda: check_server(device, the_folder(), sizes["server_timeout"]),
    }
    chosen = args.only.split(",") if args.only else list(checks)
    unknown = [name for name in chosen if name not in checks]
    if unknown:
        parser.error(f"unknown checks {unknown}; checks: {list(checks)}")
    results = {"dry_run": args.dry_run, "device": device, "installed_from_wheels": installed, "checks": {}}
    start = time.perf_counter()
    for name in chosen:
        if time.perf_counter() - start > args.budget_s:
            results["checks"][name] = {"status": "skipped", "reason": f"budget of {args.budget_s:.0f} s spent"}
            report(f"{name}: SKIPPED (budget spent)")
            continue
        t0 = time.perf_counter()
        try:
            value = checks[name]()
            results["checks"][name] = {"status": "ok", "seconds": time.perf_counter() - t0, **value}
            report(f"{name}: ok in {time.perf_counter() - t0:.1f} s: {json.dumps(value, default=str)[:1500]}")
        except Exception as error:  # every check reports; the exit status says whether any failed
            results["checks"][name] = {"status": "failed", "seconds": time.perf_counter() - t0, "error": repr(error)}
            report(f"{name}: FAILED in {time.perf_counter() - t0:.1f} s: {error!r}")
            report(traceback.format_exc())
    failed = [name for name, check in results["checks"].items() if check["status"] != "ok"]
    results["failed"] = failed
    report(f"failed: {failed or 'none'}")
    OUT.mkdir(parents=True, exist_ok=True)
    output = args.output or OUT / ("dry_run.json" if args.dry_run else "gpu_check.json")
    output.write_text(json.dumps(results, indent=2, default=str) + "\n")
    output.with_suffix(".txt").write_text("\n".join(report.header + report.lines) + "\n")
    report(f"wrote {output} and {output.with_suffix('.txt').name}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
