"""A Camtrap DP package imported into a new project: the round trip export -> import keeps the
deployments, species, images and people's labels; a bad package creates nothing."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command

from activelearn.camtrapdp_import import CamtrapDpImportError, camtrap_dp_import
from activelearn.models import Label, LabelOrigin
from annotator.camtrapdp import PackageOptions, camtrap_dp_write
from detector.models import Crop
from projects.models import Deployment, Image, Project, Species, TimeSource
from tests.annotator.test_camtrapdp import give_times, with_deployments
from tests.annotator.test_exports import Scenario, build_scenario

pytestmark = pytest.mark.django_db


@pytest.fixture
def exported(
    ingested_project: Project, admin_user: User, volunteer: User, small_folder: Path
) -> tuple[Scenario, Path]:
    """The small project with two deployments and scientific names, exported as a zip next
    to its images (media.filePath is relative to the import folder)."""
    give_times(ingested_project)
    scenario = build_scenario(ingested_project, admin_user, volunteer)
    with_deployments(scenario)
    out = io.BytesIO()
    camtrap_dp_write(project=ingested_project, options=PackageOptions(utc_offset="-05:00"), out=out)
    path = small_folder / "package.zip"
    path.write_bytes(out.getvalue())
    return scenario, path


def _table(path: Path, name: str) -> list[dict[str, str]]:
    with zipfile.ZipFile(path) as archive:
        return list(csv.DictReader(io.StringIO(archive.read(name).decode())))


def test_round_trip_keeps_deployments_species_images_and_labels(
    exported: tuple[Scenario, Path], admin_user: User
) -> None:
    scenario, package = exported
    old = scenario.project
    report = camtrap_dp_import(name="Imported", source=package, admin=admin_user)
    new = report.project
    assert (report.deployments, report.images, report.deployment_mismatches) == (2, 15, 0)
    assert new.memberships.get().user == admin_user

    fields = (
        "deployment_id", "location_name", "latitude", "longitude", "coordinate_uncertainty",
        "start", "end", "camera_id", "setup_notes",
    )  # fmt: skip
    assert list(Deployment.objects.filter(project=new).values_list(*fields)) == list(
        Deployment.objects.filter(project=old).values_list(*fields)
    )

    species = {(s.scientific_name, s.name, s.taxon_id) for s in Species.objects.filter(project=new)}
    assert species == {
        ("Vulpes vulpes", "red fox", scenario.fox.taxon_id),
        ("Dasyprocta", "agouti", ""),
    }

    def images(project: Project) -> set[tuple[str, object, str]]:
        return {
            (i.file_name, i.taken_at, i.deployment.deployment_id if i.deployment else "")
            for i in Image.objects.filter(project=project).select_related("deployment")
        }

    assert images(new) == images(old)
    assert set(Image.objects.filter(project=new).values_list("time_source", flat=True)) == {
        TimeSource.CAMTRAP_DP
    }
    # Events become sequences.
    assert set(Image.objects.filter(project=new).values_list("seq_id", flat=True)) == set(
        Image.objects.filter(project=old).values_list("seq_id", flat=True)
    )

    # People's labels, on the same boxes; machine classifications are not labels.
    def box(label: Label) -> tuple[str, tuple[float, ...], str]:
        d = label.crop.detection
        return (
            label.crop.image.file_name,
            tuple(round(v, 4) for v in (d.x, d.y, d.w, d.h)),
            label.species.name if label.species else "",
        )

    human = [
        o
        for o in _table(package, "observations.csv")
        if o["observationLevel"] == "media" and o["classificationMethod"] == "human"
    ]
    assert human, "the scenario has human labels"
    media = {m["mediaID"]: m["filePath"] for m in _table(package, "media.csv")}
    names = {"Vulpes vulpes": "red fox", "Dasyprocta": "agouti"}
    expected = {
        (
            media[o["mediaID"]],
            tuple(round(float(o[k]), 4) for k in ("bboxX", "bboxY", "bboxWidth", "bboxHeight")),
            names[o["scientificName"]],
        )
        for o in human
        if o["observationType"] == "animal"
    }
    labels = Label.objects.filter(project=new).select_related(
        "crop__detection", "crop__image", "species"
    )
    assert {box(label) for label in labels} == expected
    assert {label.origin for label in labels} == {LabelOrigin.IMPORTED}
    assert report.labels == len(expected)
    # Every box of a media-based observation is a box and a crop of the new project.
    boxed = [o for o in _table(package, "observations.csv") if o["bboxX"]]
    assert report.boxes == len(boxed) == Crop.objects.filter(project=new).count()


def test_a_bad_package_creates_nothing(
    exported: tuple[Scenario, Path], admin_user: User, tmp_path: Path
) -> None:
    _, package = exported
    bad = package.parent / "bad.zip"
    with zipfile.ZipFile(package) as source, zipfile.ZipFile(bad, "w") as target:
        for name in source.namelist():
            data = source.read(name)
            if name == "media.csv":
                data = data.replace(b"images/Red_Fox/", b"images/Red_Wolf/", 1)
            if name == "deployments.csv":
                data = data.replace(b"51.5,", b"95,", 1)
            target.writestr(name, data)
    before = Project.objects.count()
    with pytest.raises(
        CamtrapDpImportError,
        match=r"nothing imported: deployments.csv row \d: latitude .*; media.csv row \d+: .*Wolf",
    ):
        camtrap_dp_import(name="Bad", source=bad, admin=admin_user)
    assert Project.objects.count() == before
    with pytest.raises(CamtrapDpImportError, match="no deployments resource|cannot read"):
        empty = tmp_path / "empty"
        empty.mkdir()
        (empty / "datapackage.json").write_text(json.dumps({"resources": []}))
        camtrap_dp_import(name="Empty", source=empty, admin=admin_user)
    with pytest.raises(CamtrapDpImportError, match="there is a project called"):
        camtrap_dp_import(name=exported[0].project.name, source=package, admin=admin_user)
    assert Project.objects.count() == before


def test_the_command(
    exported: tuple[Scenario, Path], admin_user: User, capsys: pytest.CaptureFixture[str]
) -> None:
    _, package = exported
    call_command("import_camtrap_dp", "From package", str(package), "--admin", admin_user.username)
    assert "2 deployment(s), 2 species, 15 image(s)" in capsys.readouterr().out
    with pytest.raises(CommandError, match="there is a project called"):
        call_command(
            "import_camtrap_dp", "From package", str(package), "--admin", admin_user.username
        )
