"""Import: recursive, metadata from COCO, new files only, bad files reported and skipped."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from django.contrib.auth.models import User

from annotator.models import Image, Membership, Project, Role
from annotator.services import (
    FolderImportError,
    folder_ingest,
    images_import,
    membership_set,
    project_create,
    species_ensure,
)

pytestmark = pytest.mark.django_db


def test_import_reads_metadata_and_species(project: Project, small_folder: Path) -> None:
    report = images_import(
        project=project, folder=small_folder, coco=small_folder / "annotations.json"
    )
    assert (report.added, report.already_present, report.problems) == (15, 0, [])
    image = Image.objects.get(file_name="images/Agouti/SEQ75520/SEQ75520_IMG_0003.JPG")
    assert (image.seq_id, image.frame_num, image.width, image.height) == ("SEQ75520", 3, 640, 640)
    assert Path(image.path).is_absolute()
    assert project.species.count() == 10 and project.species.filter(name="agouti").exists()


def test_reimport_adds_only_what_is_new(
    project: Project, small_folder: Path, sample_dir: Path
) -> None:
    images_import(project=project, folder=small_folder)
    shutil.copytree(sample_dir / "images" / "Ocelot", small_folder / "images" / "Ocelot")
    report = images_import(project=project, folder=small_folder)
    assert (report.added, report.already_present) == (10, 15)
    assert Image.objects.filter(project=project).count() == 25


def test_bad_files_are_reported_and_the_rest_goes_on(project: Project, small_folder: Path) -> None:
    (small_folder / "notes.jpg").write_text("this is not an image")
    (small_folder / "empty.png").write_bytes(b"")
    real = next((small_folder / "images").rglob("*.JPG"))
    (small_folder / "truncated.jpg").write_bytes(real.read_bytes()[:200])
    report = images_import(project=project, folder=small_folder)
    bad = {name for name, _ in report.problems}
    assert {"notes.jpg", "empty.png"} <= bad
    assert report.added == 15 + (0 if "truncated.jpg" in bad else 1)
    assert not Image.objects.filter(file_name__in=["notes.jpg", "empty.png"]).exists()


def test_missing_folder_changes_nothing(project: Project, tmp_path: Path) -> None:
    with pytest.raises(FolderImportError, match="not a folder"):
        images_import(project=project, folder=tmp_path / "nowhere")
    assert not Image.objects.exists()


def test_both_box_sources_refused(project: Project, small_folder: Path) -> None:
    with pytest.raises(FolderImportError, match="either"):
        folder_ingest(
            project=project,
            folder=small_folder,
            coco=small_folder / "a.json",
            megadetector=small_folder / "b.json",
        )
    assert not Image.objects.exists()


def test_ingest_twice_changes_nothing(ingested_project: Project, small_folder: Path) -> None:
    counts = (ingested_project.images.count(), ingested_project.crops.count())
    again = folder_ingest(
        project=ingested_project, folder=small_folder, coco=small_folder / "annotations.json"
    )
    assert again.images.added == 0 and again.detection is not None
    assert again.detection.images_done == 0
    assert (ingested_project.images.count(), ingested_project.crops.count()) == counts


def test_project_create_makes_creator_admin(admin_user: User) -> None:
    project = project_create(name="Serengeti Season 12", created_by=admin_user)
    assert project.slug == "serengeti-season-12"
    assert Membership.objects.get(project=project, user=admin_user).role == Role.ADMIN


def test_membership_set_changes_role_and_refuses_unknown(project: Project, volunteer: User) -> None:
    membership_set(project=project, user=volunteer, role=Role.ECOLOGIST)
    assert Membership.objects.get(project=project, user=volunteer).role == Role.ECOLOGIST
    with pytest.raises(ValueError, match="unknown role"):
        membership_set(project=project, user=volunteer, role="owner")


def test_species_ensure_is_case_insensitive(project: Project) -> None:
    species_ensure(project=project, names=["Agouti", "ocelot"])
    species_ensure(project=project, names=["agouti", "Paca"])
    assert [s.name for s in project.species.all()] == ["Agouti", "ocelot", "Paca"]


def test_decompression_bomb_is_refused(
    project: Project, small_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from PIL import Image as PILImage

    # Any real image is a "bomb" once the limit is below its pixel count (640 × 640).
    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 100_000)
    report = images_import(project=project, folder=small_folder)
    assert report.added == 0 and len(report.problems) == 15
    assert "decompression bomb" in report.problems[0][1].lower()
    assert not Image.objects.exists()
