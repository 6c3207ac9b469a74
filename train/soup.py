"""A model soup: the weight average of NV-Embed folders fine-tuned from one base (Wortsman et al. 2022, "Model soups:
averaging weights of multiple fine-tuned models improves accuracy without increasing inference time", arXiv
2203.05482; their uniform soup). Same architecture, same tokenizer, one more folder and no extra inference cost.

    python -m train.soup OUTPUT FOLDER FOLDER [FOLDER ...] [--weights 0.5 0.5]
    python -m train.soup OUTPUT TRAINED RUN/base --weights 0.9 0.1   # WiSE-FT: toward the untrained base

(WiSE-FT on the demo lost out-of-domain retrieval as the base's share grew: benchmarks/results/levers-2026-12-07g.md.)

The output is the first folder's files (config, remote code, tokenizer, sentence-transformers modules) with the
averaged `model*.safetensors` (other safetensors, such as a run's `teacher_projection.safetensors`, are left out),
plus `soup.json` naming the ingredients and their weights. Folders whose configs, weight files, tensor names, shapes
or dtypes differ are refused, naming the first difference: averaging unrelated weights gives a broken model, not an
error. Neither transformers nor sentence-transformers ships weight averaging.
"""

import argparse
import json
import shutil
import sys
from pathlib import Path


# Keys that differ between identical models saved apart, at any level of config.json: a conversion records no
# `dtype` and `use_cache: true`, a trained folder `float32` and false (the tensors' own dtypes are checked below).
MODEL_KEYS_IGNORED = ("_name_or_path", "transformers_version", "dtype", "torch_dtype", "use_cache")


def weight_files(folder: Path) -> list[str]:
    files = sorted(p.name for p in folder.glob("model*.safetensors"))  # not a training run's loss weights
    if not files:
        raise FileNotFoundError(f"{folder} holds no model*.safetensors weights")
    return files


def model_config(folder: Path) -> dict:
    return _without_ignored(json.loads((folder / "config.json").read_text()))


def _without_ignored(config: dict) -> dict:
    return {
        k: _without_ignored(v) if isinstance(v, dict) else v for k, v in config.items() if k not in MODEL_KEYS_IGNORED
    }


def check_compatible(folders: list[Path]) -> list[str]:
    """The weight file names the folders share; raises ValueError on the first difference between them."""
    first = folders[0]
    files, config = weight_files(first), model_config(first)
    for folder in folders[1:]:
        if weight_files(folder) != files:
            raise ValueError(f"{folder} has weight files {weight_files(folder)}, {first} has {files}")
        other = model_config(folder)
        if other != config:
            keys = sorted(k for k in set(config) | set(other) if config.get(k) != other.get(k))
            raise ValueError(f"{folder}'s config.json differs from {first}'s in {keys}: not one architecture")
    return files


def average(folders: list[Path], weights: list[float], file: str) -> dict:
    """The weighted average of one weight file across folders, in float32, cast back to each tensor's dtype."""
    from safetensors import safe_open

    total, dtypes = {}, {}
    for folder, weight in zip(folders, weights):
        with safe_open(str(folder / file), "pt") as handle:
            names = set(handle.keys())
            if total and names != set(total):
                diff = sorted(names ^ set(total))[:3]
                raise ValueError(f"{folder / file} holds other tensors than {folders[0] / file}: {diff}")
            for name in names:
                tensor = handle.get_tensor(name)
                if name in total and (tensor.shape != total[name].shape or tensor.dtype != dtypes[name]):
                    raise ValueError(
                        f"{name}: {tuple(tensor.shape)} {tensor.dtype} in {folder}, "
                        f"{tuple(total[name].shape)} {dtypes[name]} in {folders[0]}"
                    )
                dtypes[name] = tensor.dtype
                scaled = tensor.float() * weight
                total[name] = scaled if name not in total else total[name] + scaled
    return {name: tensor.to(dtypes[name]).contiguous() for name, tensor in total.items()}


def soup(output: str | Path, folders: list[str | Path], weights: list[float] | None = None) -> Path:
    """Write the weight average of `folders` (uniform unless `weights`, which must be positive and sum to 1) into
    `output`, a new folder. Returns it."""
    from safetensors.torch import save_file

    folders = [Path(f) for f in folders]
    output = Path(output)
    if len(folders) < 2:
        raise ValueError(f"a soup needs at least two folders, got {len(folders)}")
    weights = [1.0 / len(folders)] * len(folders) if weights is None else list(weights)
    if len(weights) != len(folders) or any(w <= 0 for w in weights) or abs(sum(weights) - 1) > 1e-6:
        raise ValueError(f"weights must be {len(folders)} positive numbers summing to 1, got {weights}")
    if output.exists():  # an ingredient's own folder included
        raise FileExistsError(f"{output} exists; a soup is written into a new folder")
    files = check_compatible(folders)
    shutil.copytree(folders[0], output, ignore=shutil.ignore_patterns("*.safetensors"))
    for file in files:
        save_file(average(folders, weights, file), str(output / file), metadata={"format": "pt"})
    record = {
        "method": "uniform" if len(set(weights)) == 1 else "weighted",
        "ingredients": [{"folder": str(f), "weight": w} for f, w in zip(folders, weights)],
    }
    (output / "soup.json").write_text(json.dumps(record, indent=2) + "\n")
    return output


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output")
    parser.add_argument("folders", nargs="+")
    parser.add_argument("--weights", type=float, nargs="+", default=None)
    args = parser.parse_args(argv)
    try:
        print(soup(args.output, args.folders, args.weights))
    except (ValueError, FileNotFoundError, FileExistsError) as error:
        sys.exit(f"train.soup: {error}")


if __name__ == "__main__":
    main()
