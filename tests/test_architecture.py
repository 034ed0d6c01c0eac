"""The house's shape, checked: every import points down, no cycle, Django-free ML modules.

The contracts live in pyproject.toml (``[tool.importlinter]``) and run with import-linter, which
reads every import in a module, those inside functions included. The tests below also break a
copy of the tree on purpose, to show that the contracts catch what they promise to catch.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CONFIG = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
PACKAGES: list[str] = CONFIG["root_packages"]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    """Run import-linter on the tree under ``root`` (its packages shadow any installed ones)."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--config", str(root / "pyproject.toml")],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def tree_copy(tmp_path: Path) -> Path:
    """The product packages and pyproject.toml, copied: a tree the tests may break."""
    for package in PACKAGES:
        shutil.copytree(
            ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def _append(path: Path, code: str) -> None:
    path.write_text(path.read_text() + "\n\n" + code + "\n")


def test_the_contracts_hold() -> None:
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 kept, 0 broken" in result.stdout


def test_an_upward_import_breaks_the_layers_even_inside_a_function(tree_copy: Path) -> None:
    _append(
        tree_copy / "detector" / "crops.py",
        "def _sneaky() -> None:\n    from annotator import jobs  # noqa: F401\n",
    )
    result = _lint(tree_copy)
    assert result.returncode != 0
    assert "Every import points down" in result.stdout and "BROKEN" in result.stdout
    assert "detector.crops -> annotator.jobs" in result.stdout


def test_an_import_cycle_breaks_the_contract(tree_copy: Path) -> None:
    # experiment imports selection; selection importing experiment back closes a cycle.
    _append(
        tree_copy / "activelearn" / "selection.py",
        "def _sneaky() -> None:\n    import activelearn.experiment  # noqa: F401\n",
    )
    result = _lint(tree_copy)
    assert result.returncode != 0
    assert "No cycles are allowed in activelearn" in result.stdout


def test_django_in_an_ml_module_breaks_the_contract(tree_copy: Path) -> None:
    _append(tree_copy / "activelearn" / "metrics.py", "import django  # noqa: E402, F401")
    result = _lint(tree_copy)
    assert result.returncode != 0
    assert "activelearn.metrics -> django" in result.stdout


def test_ml_modules_import_without_django() -> None:
    """Each Django-free module, imported in a fresh interpreter, leaves django unimported."""
    modules = next(c for c in CONFIG["contracts"] if c["id"] == "django-free")["source_modules"]
    script = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "    assert 'django' not in sys.modules, f'{name} imported django'\n"
        "    assert 'celery' not in sys.modules, f'{name} imported celery'\n"
        "print('ok', len(sys.modules))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("ok")


def test_no_product_file_is_over_800_lines() -> None:
    """Split by capability before a module grows past a few hundred lines (tests and
    migrations aside)."""
    long = {
        str(path.relative_to(ROOT)): n
        for package in PACKAGES
        for path in (ROOT / package).rglob("*.py")
        if "migrations" not in path.parts and (n := len(path.read_text().splitlines())) > 800
    }
    assert long == {}


def test_the_web_and_the_api_never_store_a_label_without_a_claim() -> None:
    """``labels_import`` (and the private ``_labels_store`` under it) skip the claim check that
    keeps volunteers to the crops they were served: trusted code's only, never a request's."""
    bypass = re.compile(r"\b(labels_import|_labels_store)\b")
    named = sorted(
        str(path.relative_to(ROOT))
        for path in (ROOT / "annotator").rglob("*.py")
        if bypass.search(path.read_text())
    )
    assert named == []


# The only modules that may name the local folders of stored files: the storage layer itself, and
# the import roots (browser uploads are an import source, kept on the web machine's disk).
LOCAL_FOLDER_SETTINGS = {"MEDIA_ROOT", "TRAPWISE_DATA_DIR"}
LOCAL_FOLDER_READERS = {"projects/storage.py", "projects/import_roots.py"}


def _local_folder_uses(root: Path) -> list[str]:
    """``settings.MEDIA_ROOT`` / ``settings.TRAPWISE_DATA_DIR`` reads in the product packages
    under ``root``, outside the modules allowed to make them, as "file:line"."""
    import ast

    found = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            relative = path.relative_to(root).as_posix()
            if relative in LOCAL_FOLDER_READERS or relative == "annotator/settings.py":
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if (
                    isinstance(node, ast.Attribute)
                    and node.attr in LOCAL_FOLDER_SETTINGS
                    and isinstance(node.value, ast.Name)
                    and node.value.id == "settings"
                ):
                    found.append(f"{relative}:{node.lineno}")
    return found


def test_stored_files_are_reached_only_through_the_storage_layer() -> None:
    """No code path reads a crop, a vector file or a model by a local path of its own: they go
    through ``projects.storage`` (the local folder, or a remote store and a worker's cache)."""
    assert _local_folder_uses(ROOT) == []


def test_a_direct_media_root_read_is_caught(tree_copy: Path) -> None:
    _append(
        tree_copy / "embeddings" / "services.py",
        "def _sneaky() -> object:\n    return settings.MEDIA_ROOT",
    )
    assert [use.split(":")[0] for use in _local_folder_uses(tree_copy)] == [
        "embeddings/services.py"
    ]
