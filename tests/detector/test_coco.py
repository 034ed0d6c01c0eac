from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from detector.cct import CctError
from detector.coco import CocoError, coco_datetime, coco_metadata_read


def test_reads_the_real_sample(sample_dir: Path) -> None:
    meta = coco_metadata_read(sample_dir / "annotations.json")
    assert len(meta.by_file) == 209 and len(meta.species) == 10
    entry = meta.by_file["images/Red_Fox/SEQ75179/SEQ75179_IMG_0002.JPG"]
    assert (entry.seq_id, entry.frame_num) == ("SEQ75179", 2)


@pytest.mark.parametrize(
    "text,message",
    [
        ("{not json", "cannot read"),
        ('{"images": []}', "needs 'images' and 'categories'"),
        ('{"images": [{"id": 1}], "categories": []}', "no file_name"),
        ('{"images": [], "categories": [{"name": "x"}]}', "id and a name"),
        (
            '{"images": [{"file_name": "a\\\\b.jpg"}, {"file_name": "a/b.jpg"}], "categories": []}',
            r"file_name listed more than once: a/b\.jpg",
        ),
        ('{"images": [{"file_name": "a.jpg", "frame_num": "x"}], "categories": []}', "frame_num"),
        (
            '{"images": [], "categories": [{"id": 1, "name": "fox"}], "annotations": ['
            '{"image_id": 1, "category_id": 1}, {"image_id": 1, "category_id": 7}, '
            '{"image_id": 2, "category_id": "1"}, {"image_id": 2, "category_id": 7}]}',
            r"3 annotation\(s\) name a category_id that is not in 'categories': "
            r"7 in annotations\[1, 3\]; '1' in annotations\[2\]",
        ),
    ],
)
def test_bad_files_get_clear_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(CocoError, match=message):
        coco_metadata_read(path)


def test_coco_error_is_the_readers_error() -> None:
    assert CocoError is CctError  # import_images' ``except CocoError`` catches the reader's


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("  ", None),
        ("2019-05-01 22:15:03", datetime(2019, 5, 1, 22, 15, 3)),
        ("2019-05-01T22:15:03", datetime(2019, 5, 1, 22, 15, 3)),
        ("2019:05:01 22:15:03", datetime(2019, 5, 1, 22, 15, 3)),
        ("2019-05-01T22:15:03+02:00", datetime(2019, 5, 1, 20, 15, 3, tzinfo=UTC)),
        ("2019-05-01T22:15:03Z", datetime(2019, 5, 1, 22, 15, 3, tzinfo=UTC)),
    ],
)
def test_coco_datetime(value: object, expected: datetime | None) -> None:
    assert coco_datetime(value, where="x") == expected


@pytest.mark.parametrize("value", ["yesterday", "2019-13-01 00:00:00", 20190501, ["2019"]])
def test_a_bad_coco_datetime_names_the_image(value: object, tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    doc = {"images": [{"id": 1, "file_name": "a.jpg", "datetime": value}], "categories": []}
    path.write_text(json.dumps(doc))
    with pytest.raises(CocoError, match=r"a\.jpg: datetime must be"):
        coco_metadata_read(path)
