"""The deployments CSV parser and the assignment rule (Django-free), the rule checked against
a brute force over every deployment."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from projects.deployments import (
    DeploymentCsvError,
    DeploymentSpan,
    ImageClock,
    clock_offset_format,
    clock_offset_parse,
    deployments_assign,
    deployments_csv_parse,
    folder_normalise,
    true_time,
)

HEADER = (
    "deploymentID,locationName,latitude,longitude,coordinateUncertainty,deploymentStart,"
    "deploymentEnd,cameraID,folder,clockOffset"
)
GOOD = [
    "dep-a,North ridge,51.5,-0.12,30,2021-05-01T00:00:00+02:00,2021-06-01T00:00:00+02:00,"
    "CAM1,images/a/,+01:00",
    "dep-b,South creek,-12.25,130.9,,2021-05-01T00:00:00Z,2021-06-01T12:00:00Z,CAM2,./images/b,",
]


def csv_text(*rows: str, header: str = HEADER) -> str:
    return "\n".join([header, *rows]) + "\n"


def test_a_good_file_parses_to_checked_fields() -> None:
    a, b = deployments_csv_parse("\ufeff" + csv_text(*GOOD))
    assert (a.deployment_id, a.location_name, a.latitude, a.longitude) == (
        "dep-a",
        "North ridge",
        51.5,
        -0.12,
    )
    assert (a.coordinate_uncertainty, a.camera_id, a.folder) == (30, "CAM1", "images/a")
    assert a.clock_offset_seconds == 3600
    # Wall-clock reading in the offset given, labelled UTC (the images' convention).
    assert a.start == datetime(2021, 5, 1, tzinfo=UTC)
    assert (b.folder, b.clock_offset_seconds, b.coordinate_uncertainty) == ("images/b", 0, None)


def test_setup_by_and_comments_become_the_setup_notes() -> None:
    header = HEADER + ",locationID,setupBy,deploymentComments"
    (row,) = deployments_csv_parse(
        csv_text(GOOD[0] + ",L7,Ann Lee,Strapped to an oak", header=header)
    )
    assert row.location_id == "L7"
    assert row.setup_notes == "Set up by Ann Lee.\nStrapped to an oak"


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (GOOD[0].replace("51.5", "91"), "latitude '91' is outside -90..90"),
        (GOOD[0].replace("-0.12", "-180.5"), "longitude '-180.5' is outside -180..180"),
        (GOOD[0].replace("51.5", "north"), "latitude 'north' is not a number"),
        (GOOD[0].replace("51.5", "nan"), "outside"),
        (
            GOOD[0].replace("2021-06-01T00:00:00+02:00", "2021-04-01T00:00:00+02:00"),
            "deploymentStart must be before deploymentEnd",
        ),
        (GOOD[0].replace("2021-05-01T00:00:00+02:00", "2021-05-01T00:00:00"), "no UTC offset"),
        (GOOD[0].replace("2021-05-01T00:00:00+02:00", "1 May 2021"), "not an ISO 8601 time"),
        (GOOD[0].replace("+01:00", "1h"), "not ±hh:mm"),
        (GOOD[0].replace("+01:00", "+01:75"), "minutes must be below 60"),
        (GOOD[0].replace(",30,", ",-3,"), "not a whole number of metres"),
        (GOOD[0].replace(",30,", ",0,"), "≥ 1"),
        (GOOD[0].replace("images/a/", "../etc"), "may not contain '..'"),
        (GOOD[0].replace("dep-a", ""), "deploymentID is empty"),
        (GOOD[0].replace("dep-a", "x" * 201), "longer than 200"),
        (GOOD[0] + ",extra", "more values than columns"),
    ],
)
def test_bad_values_name_the_row_and_the_problem(row: str, message: str) -> None:
    with pytest.raises(DeploymentCsvError, match="row 2: ") as excinfo:
        deployments_csv_parse(csv_text(row, GOOD[1]))
    assert message in str(excinfo.value)


def test_duplicate_ids_unknown_and_missing_columns_are_errors() -> None:
    with pytest.raises(DeploymentCsvError, match=r"row 3: deploymentID 'dep-a' is also on row 2"):
        deployments_csv_parse(csv_text(GOOD[0], GOOD[0]))
    with pytest.raises(DeploymentCsvError, match=r"unknown column\(s\) 'habitat'"):
        deployments_csv_parse(csv_text(GOOD[0] + ",forest", header=HEADER + ",habitat"))
    # The Camtrap DP import passes the columns it knows Trapwise does not keep.
    (row,) = deployments_csv_parse(
        csv_text(GOOD[0] + ",forest", header=HEADER + ",habitat"), ignored=["habitat"]
    )
    assert row.deployment_id == "dep-a"
    with pytest.raises(DeploymentCsvError, match=r"missing column\(s\) latitude"):
        deployments_csv_parse("deploymentID,longitude,deploymentStart,deploymentEnd\n")
    with pytest.raises(DeploymentCsvError, match="empty"):
        deployments_csv_parse("")
    with pytest.raises(DeploymentCsvError, match="no deployments"):
        deployments_csv_parse(csv_text())


def test_many_problems_are_counted_not_all_listed() -> None:
    rows = [GOOD[0].replace("dep-a", f"d{i}").replace("51.5", "99") for i in range(15)]
    with pytest.raises(DeploymentCsvError, match="and 5 more$"):
        deployments_csv_parse(csv_text(*rows))


@pytest.mark.parametrize("seconds", [0, 60, -60, 3600 + 30 * 60, -(47 * 3600 + 59 * 60)])
def test_clock_offsets_round_trip(seconds: int) -> None:
    assert clock_offset_parse(clock_offset_format(seconds)) == seconds


def test_folders_are_normalised() -> None:
    assert folder_normalise(" ./a\\b/ ") == "a/b"
    assert folder_normalise("/a/b/") == "a/b"
    assert folder_normalise("") == ""


T0 = datetime(2021, 5, 1, tzinfo=UTC)


def brute_force(spans: list[DeploymentSpan], image: ImageClock) -> DeploymentSpan | None:
    """The rule spelt out: fitting deployments ranked by folder depth then start."""

    def holds(d: DeploymentSpan) -> bool:
        return d.folder == "" or image.file_name.split("/")[
            : d.folder.count("/") + 1
        ] == d.folder.split("/")

    inside = [d for d in spans if holds(d)]
    if image.camera_taken_at is None:
        if not inside:
            return None
        best = max(len(d.folder) for d in inside)
        top = [d for d in inside if len(d.folder) == best]
        return top[0] if len(top) == 1 else None
    best_span = None
    for d in inside:
        t = image.camera_taken_at - timedelta(seconds=d.clock_offset_seconds)
        assert d.start is not None and d.end is not None
        if d.start <= t <= d.end and (
            best_span is None or (len(d.folder), d.start) > (len(best_span.folder), best_span.start)
        ):
            best_span = d
    return best_span


def test_assignment_matches_brute_force_on_random_worlds() -> None:
    rng = random.Random(3)
    folders = ["", "a", "a/x", "b", "ab"]
    for _ in range(200):
        spans = []
        for key in range(rng.randint(0, 4)):
            start = T0 + timedelta(hours=rng.randint(0, 20))
            spans.append(
                DeploymentSpan(
                    key=key,
                    folder=rng.choice(folders),
                    start=start,
                    end=start + timedelta(hours=rng.randint(1, 10)),
                    clock_offset_seconds=rng.choice([0, 3600, -1800]),
                )
            )
        images = [
            ImageClock(
                key=i,
                file_name=f"{rng.choice(folders) or 'top'}/IMG_{i}.jpg",
                camera_taken_at=None
                if rng.random() < 0.3
                else T0 + timedelta(minutes=rng.randint(0, 30 * 60)),
            )
            for i in range(10)
        ]
        got = deployments_assign(spans, images)
        for image in images:
            assert got[image.key] == brute_force(spans, image), (spans, image)


def test_a_folder_prefix_is_a_whole_folder_and_the_offset_corrects_the_time() -> None:
    a = DeploymentSpan(
        key=1, folder="cam1", start=T0, end=T0 + timedelta(days=1), clock_offset_seconds=3600
    )
    camera_time = T0 + timedelta(minutes=30)  # true time: 23:30 the day before
    images = [
        ImageClock(key=1, file_name="cam1/x.jpg", camera_taken_at=camera_time + timedelta(hours=1)),
        ImageClock(
            key=2, file_name="cam10/x.jpg", camera_taken_at=camera_time + timedelta(hours=1)
        ),
        ImageClock(key=3, file_name="cam1/x.jpg", camera_taken_at=camera_time),
        ImageClock(key=4, file_name="cam1/sub/y.jpg", camera_taken_at=None),
    ]
    got = deployments_assign([a], images)
    assert [got[k] for k in (1, 2, 3, 4)] == [a, None, None, a]
    assert true_time(camera_time, a) == T0 - timedelta(minutes=30)
    assert true_time(camera_time, None) == camera_time


def test_untimed_images_of_a_folder_with_two_deployments_stay_unassigned() -> None:
    spans = [
        DeploymentSpan(
            key=k,
            folder="cam",
            start=T0 + timedelta(days=k),
            end=T0 + timedelta(days=k, hours=1),
            clock_offset_seconds=0,
        )
        for k in (1, 2)
    ]
    got = deployments_assign(
        spans, [ImageClock(key=1, file_name="cam/a.jpg", camera_taken_at=None)]
    )
    assert got == {1: None}
