"""The Camtrap DP 1.0 export, validated offline against the published schemas.

``camtrap_dp_errors`` is the validator: the package descriptor against the Camtrap DP 1.0
profile (JSON Schema, with the Data Package v1 schema it builds on), and the three CSV files
against the Camtrap DP 1.0 table schemas (frictionless: types, required fields, enums,
ranges, patterns, primary and foreign keys). See tests/data/camtrap-dp-1.0/README.md.
"""

from __future__ import annotations

import csv
import io
import json
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from annotator.camtrapdp import (
    DEPLOYMENT_FIELDS,
    MEDIA_FIELDS,
    OBSERVATION_FIELDS,
    PROFILE_URL,
    PackageOptions,
    camtrap_dp_write,
    schema_url,
)
from detector.models import Crop
from projects.models import Image, Project
from tests.annotator.test_exports import Scenario, build_scenario

pytestmark = pytest.mark.django_db

SCHEMAS = Path(__file__).resolve().parent.parent / "data" / "camtrap-dp-1.0"
START = datetime(2021, 5, 1, 6, 30, tzinfo=UTC)
FORM = {
    "latitude": "38.6",
    "longitude": "-92.1",
    "coordinate_uncertainty": "500",
    "utc_offset": "-05:00",
    "sampling_design": "opportunistic",
    "capture_method": "activityDetection",
    "data_license": "CC-BY-4.0",
    "media_license": "CC-BY-NC-4.0",
}


def camtrap_dp_errors(folder: Path) -> list[str]:
    """Why the unpacked package in ``folder`` is not valid Camtrap DP 1.0 ([] when it is)."""
    import frictionless
    import jsonschema
    from referencing import Registry
    from referencing.jsonschema import DRAFT4

    descriptor = json.loads((folder / "datapackage.json").read_text())
    # The 1.0 profile's "#$defs/version" lacks a JSON pointer's slash; 1.0.1 fixed only that.
    profile = json.loads(
        (SCHEMAS / "camtrap-dp-profile.json")
        .read_text()
        .replace('"#$defs/version"', '"#/$defs/version"')
    )
    data_package = json.loads((SCHEMAS / "data-package.json").read_text())
    geojson = json.loads(
        (Path(frictionless.__file__).parent / "assets" / "profiles" / "geojson.json").read_text()
    )
    registry: Registry[Any] = Registry().with_resources(
        [
            (
                "https://frictionlessdata.io/schemas/data-package.json",
                DRAFT4.create_resource(data_package),
            ),
            ("http://json.schemastore.org/geojson.json", DRAFT4.create_resource(geojson)),
        ]
    )
    validator = jsonschema.Draft4Validator(
        profile, registry=registry, format_checker=jsonschema.Draft4Validator.FORMAT_CHECKER
    )
    errors = [
        f"datapackage.json {list(e.absolute_path)}: {e.message}"
        for e in validator.iter_errors(descriptor)
    ]
    # The tables, against the local copies of the schemas the descriptor names by URL.
    local = dict(descriptor, profile="tabular-data-package")
    by_url = {schema_url(n): n for n in ("deployments", "media", "observations")}
    local["resources"] = [
        dict(
            r, schema=json.loads((SCHEMAS / f"{by_url[r['schema']]}-table-schema.json").read_text())
        )
        for r in descriptor["resources"]
    ]
    report = frictionless.Package(local, basepath=str(folder)).validate()
    errors += [f"package: {e.type}: {e.note}" for e in report.errors]
    for task in report.tasks:
        errors += [
            f"{task.name} row {getattr(e, 'row_number', '-')}: {e.type}: {e.note}"
            for e in task.errors
        ]
    return errors


def unpack(data: bytes, folder: Path) -> Path:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert sorted(archive.namelist()) == [
            "datapackage.json",
            "deployments.csv",
            "media.csv",
            "observations.csv",
        ]
        archive.extractall(folder)
    return folder


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def give_times(project: Project) -> None:
    """Capture times as EXIF would give them: 5 s apart, frame by frame."""
    for i, image in enumerate(Image.objects.filter(project=project).order_by("file_name")):
        image.taken_at = START + timedelta(seconds=5 * i)
        image.save(update_fields=["taken_at"])


@pytest.fixture
def scenario(ingested_project: Project, admin_user: User, volunteer: User) -> Scenario:
    give_times(ingested_project)
    return build_scenario(ingested_project, admin_user, volunteer)


@pytest.fixture
def package(scenario: Scenario, tmp_path: Path) -> Path:
    out = io.BytesIO()
    options = PackageOptions(latitude=38.6, longitude=-92.1, utc_offset="-05:00")
    camtrap_dp_write(project=scenario.project, options=options, out=out)
    return unpack(out.getvalue(), tmp_path / "package")


def test_package_validates_against_camtrap_dp_1_0(package: Path) -> None:
    assert camtrap_dp_errors(package) == []


def test_package_holds_the_project(package: Path, scenario: Scenario) -> None:
    project, crops = scenario.project, scenario.crops
    descriptor = json.loads((package / "datapackage.json").read_text())
    assert descriptor["profile"] == PROFILE_URL
    assert descriptor["project"]["title"] == project.name
    assert descriptor["spatial"] == {"type": "Point", "coordinates": [-92.1, 38.6]}
    assert descriptor["temporal"] == {"start": "2021-05-01", "end": "2021-05-01"}
    assert [t["scientificName"] for t in descriptor["taxonomic"]] == ["agouti", "red fox"]
    assert [r["schema"] for r in descriptor["resources"]] == [
        schema_url(n) for n in ("deployments", "media", "observations")
    ]

    deployments = read_csv(package / "deployments.csv")
    assert list(deployments[0]) == DEPLOYMENT_FIELDS
    cameras = set(Image.objects.filter(project=project).values_list("camera", flat=True))
    assert {d["deploymentID"] for d in deployments} == cameras
    assert {(d["latitude"], d["longitude"]) for d in deployments} == {("38.6", "-92.1")}
    # Clock times keep their clock value and get the exporter's offset.
    first = min(deployments, key=lambda d: d["deploymentStart"])
    assert first["deploymentStart"] == "2021-05-01T06:30:00-05:00"

    media = read_csv(package / "media.csv")
    assert list(media[0]) == MEDIA_FIELDS
    images = {str(i.pk): i for i in Image.objects.filter(project=project)}
    assert {m["mediaID"] for m in media} == set(images)
    for row in media:
        image = images[row["mediaID"]]
        assert (row["filePath"], row["deploymentID"]) == (image.file_name, image.camera)
        assert row["fileMediatype"] == "image/jpeg"

    observations = read_csv(package / "observations.csv")
    assert list(observations[0]) == OBSERVATION_FIELDS
    by_id = {o["observationID"]: o for o in observations}
    f1 = by_id[f"crop-{crops['F1'].pk}"]
    box = crops["F1"].detection
    assert (f1["observationLevel"], f1["observationType"], f1["scientificName"]) == (
        "media",
        "animal",
        "red fox",
    )
    assert (f1["classificationMethod"], f1["classifiedBy"]) == ("human", "vic")
    assert float(f1["bboxX"]) == pytest.approx(box.x, abs=1e-6)
    assert float(f1["bboxWidth"]) == pytest.approx(box.w, abs=1e-6)
    a6 = by_id[f"crop-{crops['A6'].pk}"]
    assert (a6["classificationMethod"], a6["classificationProbability"]) == ("machine", "0.95")
    assert a6["classifiedBy"] == "Trapwise classifier v1 (embedding v1)"
    assert "labelSource:auto" in a6["observationTags"]
    assert by_id[f"crop-{crops['A3'].pk}"]["observationType"] == "unknown"
    assert by_id[f"crop-{crops['F4'].pk}"]["observationType"] == "unclassified"
    assert f"crop-{crops['A2'].pk}" not in by_id  # people said: not an animal
    blank = Image.objects.filter(project=project, is_empty=True)
    assert all(by_id[f"image-{i.pk}"]["observationType"] == "blank" for i in blank)
    # Event-based: one row per species per event, counted as the event CSV counts.
    events = [o for o in observations if o["observationLevel"] == "event"]
    fox_event = [o for o in events if o["eventID"] == "SEQ75179"]
    assert [(o["observationType"], o["scientificName"], o["count"]) for o in fox_event] == [
        ("animal", "red fox", "2"),
        ("unclassified", "", "1"),
    ]
    assert fox_event[0]["classificationMethod"] == "machine"
    agouti_event = [o for o in events if o["eventID"] == "SEQ75520"]
    assert [(o["scientificName"], o["count"]) for o in agouti_event] == [
        ("agouti", "1"),
        ("red fox", "1"),
        ("", "1"),
    ]
    assert agouti_event[2]["observationType"] == "unknown"
    # A2's frame held only the box people called "not an animal": it is blank too.
    assert by_id[f"image-{crops['A2'].image_id}"]["observationType"] == "blank"
    n_media = Crop.objects.filter(project=project).count() - 1 + blank.count() + 1
    assert len(observations) - len(events) == n_media


def _rewrite_csv(path: Path, change: Any) -> None:
    rows = read_csv(path)
    change(rows)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _descriptor_without(key: str) -> Any:
    def change(folder: Path) -> None:
        descriptor = json.loads((folder / "datapackage.json").read_text())
        del descriptor[key]
        (folder / "datapackage.json").write_text(json.dumps(descriptor))

    return change


def _table_change(name: str, field: str, value: str) -> Any:
    def change(folder: Path) -> None:
        def edit(rows: list[dict[str, str]]) -> None:
            rows[0][field] = value

        _rewrite_csv(folder / f"{name}.csv", edit)

    return change


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (_descriptor_without("project"), "'project' is a required property"),
        (_descriptor_without("temporal"), "'temporal' is a required property"),
        (_descriptor_without("contributors"), "'contributors' is a required property"),
        (_table_change("deployments", "latitude", ""), "deployments row 2: constraint-error"),
        (_table_change("deployments", "longitude", "200"), "deployments row 2: constraint-error"),
        (_table_change("media", "timestamp", ""), "media row 2: constraint-error"),
        (_table_change("media", "deploymentID", "nowhere"), "media row 2: foreign-key"),
        (
            _table_change("observations", "observationType", "cat"),
            "observations row 2: constraint-error",
        ),
        (
            _table_change("observations", "eventStart", "2021-05-01 06:30"),
            "observations row 2: type-error",
        ),
    ],
)
def test_validation_fails_when_the_package_breaks_the_standard(
    package: Path, mutate: Any, expected: str
) -> None:
    mutate(package)
    errors = camtrap_dp_errors(package)
    assert any(expected in e for e in errors), errors


# --- the views ------------------------------------------------------------------------------


def _client(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_download_is_a_valid_package(scenario: Scenario, ecologist: User, tmp_path: Path) -> None:
    slug = scenario.project.slug
    form = _client(ecologist).get(reverse("camtrap_dp_form", args=[slug]))
    assert form.status_code == 200 and 'name="latitude"' in form.content.decode()
    response = _client(ecologist).get(reverse("export_camtrap_dp", args=[slug]), FORM)
    assert response.status_code == 200
    assert response["Content-Disposition"] == f'attachment; filename="{slug}-camtrap-dp.zip"'
    folder = unpack(b"".join(response.streaming_content), tmp_path / "download")  # type: ignore[attr-defined]
    assert camtrap_dp_errors(folder) == []
    descriptor = json.loads((folder / "datapackage.json").read_text())
    assert [(lic["name"], lic["scope"]) for lic in descriptor["licenses"]] == [
        ("CC-BY-4.0", "data"),
        ("CC-BY-NC-4.0", "media"),
    ]
    deployment = read_csv(folder / "deployments.csv")[0]
    assert (deployment["coordinateUncertainty"], deployment["deploymentStart"][-6:]) == (
        "500",
        "-05:00",
    )


def test_download_without_a_location_is_refused(scenario: Scenario, ecologist: User) -> None:
    url = reverse("export_camtrap_dp", args=[scenario.project.slug])
    response = _client(ecologist).get(url, {**FORM, "latitude": "", "longitude": ""})
    assert response.status_code == 400
    # Images without a deployment need the form's location.
    assert "15 image(s) have no deployment" in response.content.decode()
    response = _client(ecologist).get(url, {**FORM, "longitude": ""})
    assert "Give both the latitude and the longitude, or neither." in response.content.decode()
    response = _client(ecologist).get(url, {**FORM, "latitude": "91"})
    assert response.status_code == 400
    assert "less than or equal to 90" in response.content.decode()
    response = _client(ecologist).get(url, {**FORM, "utc_offset": "5"})
    assert "Give the offset as +hh:mm or -hh:mm" in response.content.decode()


def test_download_refused_when_images_have_no_capture_time(
    scenario: Scenario, ecologist: User
) -> None:
    Image.objects.filter(pk=scenario.crops["A1"].image_id).update(taken_at=None)
    response = _client(ecologist).get(
        reverse("export_camtrap_dp", args=[scenario.project.slug]), FORM
    )
    assert response.status_code == 400
    assert "1 image(s) have no capture time" in response.content.decode()


def test_formula_like_text_is_verbatim_in_the_package_and_quoted_in_crops_csv(
    scenario: Scenario, ecologist: User, tmp_path: Path
) -> None:
    """The package is machine-readable: paths and names must match their media and taxa, so the
    spreadsheet quote (``annotator.csvsafe``) stays in the CSV tables people open."""
    scenario.fox.name = "=1+2"
    scenario.fox.save()
    image = Image.objects.filter(project=scenario.project).order_by("id").first()
    assert image is not None
    image.file_name = "-cam/" + image.file_name
    image.save(update_fields=["file_name"])
    out = io.BytesIO()
    camtrap_dp_write(
        project=scenario.project, options=PackageOptions(latitude=0.0, longitude=0.0), out=out
    )
    folder = unpack(out.getvalue(), tmp_path / "formula")
    names = {o["scientificName"] for o in read_csv(folder / "observations.csv")}
    assert "=1+2" in names and "'=1+2" not in names
    paths = {m["filePath"] for m in read_csv(folder / "media.csv")}
    assert image.file_name in paths and "'" + image.file_name not in paths
    assert camtrap_dp_errors(folder) == []
    response = _client(ecologist).get(reverse("export_csv", args=[scenario.project.slug]))
    crops = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))  # type: ignore[attr-defined]
    labels = {row[column] for row in crops for column in ("human_label", "final_label")}
    assert "'=1+2" in labels and "=1+2" not in labels
    assert "'" + image.file_name in {row["image_file"] for row in crops}


def test_attributes_become_behavior_and_the_package_stays_valid(
    scenario: Scenario, admin_user: User, tmp_path: Path
) -> None:
    from tests.annotator.test_exports import add_attributes

    add_attributes(scenario, admin_user)
    out = io.BytesIO()
    options = PackageOptions(latitude=38.6, longitude=-92.1, utc_offset="-05:00")
    camtrap_dp_write(project=scenario.project, options=options, out=out)
    package = unpack(out.getvalue(), tmp_path / "package")
    assert camtrap_dp_errors(package) == []
    rows = read_csv(package / "observations.csv")
    media = {r["observationID"]: r["behavior"] for r in rows if r["observationLevel"] == "media"}
    crops = scenario.crops
    assert media[f"crop-{crops['A1'].pk}"] == "standing|eating"
    assert media[f"crop-{crops['A6'].pk}"] == "moving|eating"
    assert media[f"crop-{crops['F3'].pk}"] == ""
    events = {
        (r["eventID"], r["scientificName"]): r["behavior"]
        for r in rows
        if r["observationLevel"] == "event" and r["scientificName"]
    }
    assert events[("SEQ75520", "agouti")] == "standing|eating"
    assert events[("SEQ75179", "red fox")] == "moving"


# --- deployments and scientific names ---------------------------------------------------------

DEPLOYMENTS_CSV = (
    "deploymentID,locationName,latitude,longitude,coordinateUncertainty,deploymentStart,"
    "deploymentEnd,cameraID,folder,clockOffset,deploymentComments\n"
    "fox-ridge,Fox ridge,51.5,-0.12,25,2021-05-01T00:00:00-05:00,2021-05-31T00:00:00-05:00,"
    "CAM-F,images/Red_Fox,+00:10,Strapped to an oak\n"
    "agouti-creek,Agouti creek,51.25,-0.5,,2021-04-01T00:00:00-05:00,2021-06-01T00:00:00-05:00,"
    "CAM-A,images/Agouti,,\n"
)


def with_deployments(scenario: Scenario) -> None:
    from projects.services_deployments import deployments_import

    deployments_import(project=scenario.project, text=DEPLOYMENTS_CSV)
    scenario.fox.scientific_name = "Vulpes vulpes"
    scenario.fox.taxon_id = "https://www.checklistbank.org/dataset/COL2023/taxon/53VMF"
    scenario.fox.save()
    scenario.agouti.scientific_name = "Dasyprocta"
    scenario.agouti.rank = "genus"
    scenario.agouti.save()


def test_two_deployments_and_scientific_names_make_a_valid_package(
    scenario: Scenario, tmp_path: Path
) -> None:
    with_deployments(scenario)
    out = io.BytesIO()
    # No location: every image has a deployment with its own.
    camtrap_dp_write(project=scenario.project, options=PackageOptions(utc_offset="-05:00"), out=out)
    package = unpack(out.getvalue(), tmp_path / "package")
    assert camtrap_dp_errors(package) == []  # foreign keys included (frictionless)

    deployments = {d["deploymentID"]: d for d in read_csv(package / "deployments.csv")}
    assert set(deployments) == {"fox-ridge", "agouti-creek"}
    fox = deployments["fox-ridge"]
    assert (fox["latitude"], fox["longitude"], fox["coordinateUncertainty"]) == (
        "51.5",
        "-0.12",
        "25",
    )
    assert (fox["locationName"], fox["cameraID"]) == ("Fox ridge", "CAM-F")
    assert (fox["deploymentStart"], fox["deploymentEnd"]) == (
        "2021-05-01T00:00:00-05:00",
        "2021-05-31T00:00:00-05:00",
    )
    assert fox["deploymentComments"] == "Strapped to an oak"

    images = {str(i.pk): i for i in Image.objects.filter(project=scenario.project)}
    media = read_csv(package / "media.csv")
    for row in media:
        expected = "fox-ridge" if "Red_Fox" in images[row["mediaID"]].file_name else "agouti-creek"
        assert row["deploymentID"] == expected
    # The fox camera ran 10 minutes fast: its media times are corrected.
    fox_first = min(r["timestamp"] for r in media if r["deploymentID"] == "fox-ridge")
    first_fox_image = min(
        (i for i in images.values() if "Red_Fox" in i.file_name), key=lambda i: i.file_name
    )
    assert first_fox_image.camera_taken_at is not None
    corrected = first_fox_image.camera_taken_at - timedelta(minutes=10)
    assert fox_first == corrected.strftime("%Y-%m-%dT%H:%M:%S") + "-05:00"

    observations = read_csv(package / "observations.csv")
    # Observations name the taxon; its taxonID is in the descriptor's taxonomic list.
    names = {o["scientificName"] for o in observations if o["scientificName"]}
    assert names == {"Vulpes vulpes", "Dasyprocta"}
    by_event = {o["eventID"]: o["deploymentID"] for o in observations}
    assert by_event["SEQ75179"] == "fox-ridge" and by_event["SEQ75520"] == "agouti-creek"
    descriptor = json.loads((package / "datapackage.json").read_text())
    assert descriptor["taxonomic"] == [
        {
            "scientificName": "Dasyprocta",
            "taxonRank": "genus",
            "vernacularNames": {"eng": "agouti"},
        },
        {
            "scientificName": "Vulpes vulpes",
            "taxonID": scenario.fox.taxon_id,
            "taxonRank": "species",
            "vernacularNames": {"eng": "red fox"},
        },
    ]
    assert descriptor["spatial"]["type"] == "Polygon"


def test_images_without_a_deployment_fall_back_to_the_form_location(
    scenario: Scenario, tmp_path: Path
) -> None:
    from projects.services_deployments import deployment_delete

    with_deployments(scenario)
    fox = scenario.project.deployments.get(deployment_id="fox-ridge")
    deployment_delete(project=scenario.project, deployment_pk=fox.pk)
    from annotator.camtrapdp import CamtrapDpError, camtrap_dp_check

    with pytest.raises(CamtrapDpError, match="have no deployment"):
        camtrap_dp_check(project=scenario.project, options=PackageOptions())
    out = io.BytesIO()
    options = PackageOptions(latitude=38.6, longitude=-92.1, utc_offset="-05:00")
    camtrap_dp_write(project=scenario.project, options=options, out=out)
    package = unpack(out.getvalue(), tmp_path / "package")
    assert camtrap_dp_errors(package) == []
    rows = {d["deploymentID"]: d for d in read_csv(package / "deployments.csv")}
    cameras = set(
        Image.objects.filter(project=scenario.project, deployment__isnull=True).values_list(
            "camera", flat=True
        )
    )
    assert set(rows) == {"agouti-creek", *cameras}
    assert all((rows[c]["latitude"], rows[c]["longitude"]) == ("38.6", "-92.1") for c in cameras)
