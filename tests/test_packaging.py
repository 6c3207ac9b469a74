"""pyproject.toml names only what exists: every py-module is a file and every console script a function."""

import importlib
from pathlib import Path

import pytest


tomllib = pytest.importorskip("tomllib")  # Python 3.11+


ROOT = Path(__file__).resolve().parents[1]
SETUPTOOLS = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_every_listed_py_module_exists():
    missing = [name for name in SETUPTOOLS["py-modules"] if not (ROOT / f"{name}.py").is_file()]
    assert not missing, f"pyproject.toml lists py-modules with no file: {missing}"


def test_every_top_level_module_is_listed():
    """A top-level module left out of py-modules would be missing from the installed package."""
    assert {p.stem for p in ROOT.glob("*.py")} == set(SETUPTOOLS["py-modules"])


def test_console_scripts_resolve():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    for name, target in scripts.items():
        module, function = target.split(":")
        assert callable(getattr(importlib.import_module(module), function)), name
