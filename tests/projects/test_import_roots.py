"""The folder browser over TRAPWISE_IMPORT_ROOTS: subfolders with image counts, never a step out
of the roots, no link listed or followed; uploads count as a root."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from projects import import_roots
from projects.import_roots import (
    FolderImportError,
    import_folder_list,
    import_path_check,
    import_root_path,
    upload_root,
)


@pytest.fixture
def root(settings: Any, tmp_path: Path) -> Path:
    """A root with cam1 (3 images, one in a subfolder), cam2 (none), a .json file, a hidden
    folder, and links out of the root; ``outside`` holds 2 images."""
    base = tmp_path / "root"
    for rel in ("cam1/a.jpg", "cam1/b.JPEG", "cam1/night/c.png", "cam1/readme.txt", ".hid/d.jpg"):
        (base / rel).parent.mkdir(parents=True, exist_ok=True)
        (base / rel).write_bytes(b"x")
    (base / "cam2").mkdir()
    (base / "top.jpg").write_bytes(b"x")
    (base / "coco.json").write_text("{}")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "e.jpg").write_bytes(b"x")
    (outside / "f.jpg").write_bytes(b"x")
    (base / "link-out").symlink_to(outside, target_is_directory=True)
    (base / "cam1" / "link.jpg").symlink_to(outside / "e.jpg")
    settings.TRAPWISE_IMPORT_ROOTS = [base]
    return base


def test_root_lists_subfolders_with_counts_and_no_links(root: Path) -> None:
    listing = import_folder_list(root=0, path="")
    assert [(f.name, f.path, f.images) for f in listing.folders] == [
        ("cam1", "cam1", 3),
        ("cam2", "cam2", 0),
    ]
    assert (listing.images_here, listing.images_below, listing.parent) == (1, 4, None)
    assert listing.metadata_files == ("coco.json",)
    assert listing.absolute == root.resolve()


def test_subfolder_has_a_parent_and_its_own_counts(root: Path) -> None:
    listing = import_folder_list(root=0, path="cam1")
    assert [f.path for f in listing.folders] == ["cam1/night"]
    assert (listing.images_here, listing.parent) == (2, "")  # the link to e.jpg is not counted
    assert import_folder_list(root=0, path="cam1/night").parent == "cam1"


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("..", "not a folder below an import root"),
        ("cam1/../..", "not a folder below an import root"),
        ("/etc", "not a folder below an import root"),
        ("link-out", "leads outside the import root"),
        ("missing", "is not a folder"),
        ("top.jpg", "is not a folder"),
    ],
)
def test_paths_out_of_the_root_or_not_folders_are_refused(
    root: Path, path: str, reason: str
) -> None:
    with pytest.raises(FolderImportError, match=reason):
        import_folder_list(root=0, path=path)


def test_no_roots_or_a_bad_root_number_is_refused(root: Path, settings: Any) -> None:
    with pytest.raises(FolderImportError, match="no import root number 1"):
        import_root_path(root=1, path="")
    settings.TRAPWISE_IMPORT_ROOTS = []
    with pytest.raises(FolderImportError, match="set TRAPWISE_IMPORT_ROOTS"):
        import_folder_list(root=0, path="")


def test_counts_stop_at_the_cap(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(import_roots, "FOLDER_COUNT_CAP", 2)
    cam1 = import_folder_list(root=0, path="").folders[0]
    assert (cam1.images, cam1.capped) == (2, True)


def test_uploads_count_as_a_root_only_when_roots_are_set(
    root: Path, settings: Any, tmp_path: Path
) -> None:
    batch = upload_root() / "1" / "batch"
    batch.mkdir(parents=True)
    assert import_path_check(path=batch, what="the folder") == batch.resolve()
    with pytest.raises(FolderImportError, match="outside the allowed import roots"):
        import_path_check(path=tmp_path / "outside", what="the folder")
