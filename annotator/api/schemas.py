"""Request and response shapes of the JSON API (they are also its OpenAPI description)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from ninja import Field, Schema
from pydantic import field_validator

from activelearn.models import Label, RoundUnit, Strategy
from activelearn.services.labels import SECONDS_MAX, SUGGESTIONS_MAX
from annotator.camtrapdp import CAPTURE_METHODS, LICENSES, SAMPLING_DESIGNS
from annotator.numbers import MAX_ID

# An id the databases can store (bigint): a larger one is refused (422) before any query.
Id = Annotated[int, Field(ge=1, le=MAX_ID)]
# A crop list filter: the final label's source (activelearn.selectors_explore.SOURCES).
FinalSource = Literal["human", "auto", "machine", "none"]
# Most attribute ids on one label (a project has a handful).
ATTRIBUTES_MAX = 50


class ErrorOut(Schema):
    detail: str = Field(description="What went wrong, in words.")


class QueuedOut(Schema):
    detail: str = Field(description="What was queued, in words.")


class ValidationErrorOut(Schema):
    detail: str = Field(description="Every problem with the request, in words.")
    errors: list[dict[str, Any]] = Field(description="The same, one entry per field: loc, msg.")


class ProjectOut(Schema):
    slug: str
    name: str
    role: str = Field(description="Your role: admin, volunteer or ecologist.")


class RoundOut(Schema):
    id: int
    number: int
    strategy: str
    size: int = Field(description="Crops asked for; the round has `total`, fewer if few were left.")
    status: str
    created_at: datetime
    closed_at: datetime | None
    done: int = Field(description="Crops of the round with a label.")
    total: int = Field(description="Crops in the round.")
    target_species_id: int | None = Field(
        None, description="The species a `species` round aims at; null for other strategies."
    )
    unit: str = Field("crop", description="`crop` or `event`: what one answer labels.")


class ProjectStatusOut(Schema):
    slug: str
    name: str
    role: str
    images: int
    images_detected: int
    images_empty: int
    crops: int = Field(description="Active crops (above the project's detection thresholds).")
    labelled: int = Field(description="Crops whose human votes are decided (consensus done).")
    predicted: int = Field(description="Crops with a prediction of the latest classifier.")
    classifier_version: int | None
    embedding_version: int | None
    open_round: RoundOut | None


class SpeciesOut(Schema):
    id: int
    name: str


class AttributeOut(Schema):
    id: int
    name: str
    key: str = Field(description="The labelling page's hotkey.")


class RoundStartIn(Schema):
    strategy: Strategy | None = Field(
        None, description="Selection strategy; the project's default when left out."
    )
    size: int | None = Field(
        None, ge=1, le=100_000, description="Crops to pick; the project's round size when left out."
    )
    target_species_id: Id | None = Field(
        None,
        description="For the `species` strategy (and only for it): the project's species whose "
        "predicted crops the round picks among, for diversity.",
    )
    unit: RoundUnit = Field(
        RoundUnit.CROP,
        description="`crop`: crops one at a time; `event`: whole capture events, one answer "
        "each (k-Center over event embeddings; `size` then counts events).",
    )


class BoxOut(Schema):
    x: float = Field(description="Left edge, as a fraction of the image width.")
    y: float = Field(description="Top edge, as a fraction of the image height.")
    w: float
    h: float


class SuggestionOut(Schema):
    species_id: int
    species: str
    probability: float


class CropCardOut(Schema):
    crop_id: int
    crop_url: str
    image_id: int
    image_url: str
    image_file: str
    seq_id: str
    frame_num: int | None
    event: str = Field(description="Capture event: the sequence id, or image-<id> without one.")
    box: BoxOut
    detection_confidence: float
    suggestions: list[SuggestionOut] = Field(
        description="The latest classifier's top five, best first (empty before the first)."
    )


class NextOut(Schema):
    round: int | None = Field(description="The open round's number; null when none is open.")
    crops: list[CropCardOut] = Field(
        description="Crops to label next, held for you; empty when the round has none left."
    )


_IDEMPOTENCY_KEY_DESCRIPTION = (
    "A fresh random key per label (e.g. a UUID): a retried request with the same key returns "
    "the label stored the first time and stores nothing."
)


class _ShownIn(Schema):
    """What the client showed with the crop, for the anchoring figures and the effort
    estimate; each left out means not recorded."""

    suggestions: list[Id] | None = Field(
        None,
        max_length=SUGGESTIONS_MAX,
        description="The species ids your client suggested for this crop, in the order shown "
        "(e.g. the card's suggestions). Reported by the client: the server checks they are the "
        "project's species, not that it offered them.",
    )
    suggestion_rank: int | None = Field(
        None,
        ge=1,
        le=SUGGESTIONS_MAX,
        description="The 1-based place in suggestions of the one picked; null or left out "
        "when the answer was not picked from them. Must name this label's species.",
    )
    seconds: float | None = Field(
        None,
        ge=0,
        le=SECONDS_MAX,
        allow_inf_nan=False,
        description=f"Seconds from showing the crop to the answer (0 to {SECONDS_MAX:g}).",
    )


class SpeciesLabelIn(_ShownIn):
    """A label naming the animal's species (kind=species)."""

    crop_id: Id
    kind: Literal["species"]
    species_id: Id = Field(description="One of the project's species (GET .../species).")
    idempotency_key: str | None = Field(
        None, max_length=200, description=_IDEMPOTENCY_KEY_DESCRIPTION
    )
    attributes: list[Id] | None = Field(
        None,
        max_length=ATTRIBUTES_MAX,
        description="Ids of the project's attributes (GET .../attributes) seen in the crop, "
        "for kind=species only: [] means none of them, left out means not recorded.",
    )


class OtherLabelIn(_ShownIn):
    """A label saying the crop is no animal (kind=not_animal) or cannot be told (kind=unknown):
    no species, no attributes."""

    crop_id: Id
    kind: Literal["not_animal", "unknown"]
    species_id: None = Field(None, description="Only for kind=species: leave it out.")
    idempotency_key: str | None = Field(
        None, max_length=200, description=_IDEMPOTENCY_KEY_DESCRIPTION
    )
    attributes: Annotated[list[Id], Field(max_length=0)] | None = Field(
        None, description="Only for kind=species: leave it out (or send [])."
    )

    @field_validator("species_id", mode="before")
    @classmethod
    def _no_species(cls, value: Any) -> Any:
        if value is not None:
            raise ValueError("species_id is only for kind=species")
        return value

    @field_validator("attributes", mode="before")
    @classmethod
    def _no_attributes(cls, value: Any) -> Any:
        if value:
            raise ValueError("attributes are only for species labels")
        return value


# The body of POST .../labels: which fields it takes depends on its kind.
LabelIn = Annotated[SpeciesLabelIn | OtherLabelIn, Field(discriminator="kind")]


class LabelOut(Schema):
    id: int
    crop_id: int
    kind: str
    species_id: int | None
    species: str | None
    round: int | None = Field(description="Number of the round the crop was picked in, if open.")
    user: str
    is_review: bool
    created_at: datetime
    undone_at: datetime | None
    attributes: list[int] | None = Field(
        description="Attribute ids ticked yes; null when not recorded."
    )
    suggestions: list[int] | None = Field(
        description="Species ids suggested with the crop, in order; null when not recorded."
    )
    suggestion_rank: int | None = Field(
        description="1-based place of the suggestion picked; null when none was."
    )
    seconds: float | None = Field(description="Seconds spent on the crop; null when not recorded.")

    @staticmethod
    def resolve_species(obj: Label) -> str | None:
        return obj.species.name if obj.species else None

    @staticmethod
    def resolve_round(obj: Label) -> int | None:
        return obj.round.number if obj.round else None

    @staticmethod
    def resolve_user(obj: Label) -> str:
        return obj.user.get_username()


class HumanLabelOut(Schema):
    status: str = Field(description="pending (more votes wanted), done, or review.")
    kind: str
    species_id: int | None
    species: str | None
    votes: int
    agreement: float
    reviewed: bool


class MachineLabelOut(Schema):
    species_id: int
    species: str
    confidence: float


class FinalLabelOut(Schema):
    """The label the exports use: the humans' once their consensus is done, else the machine's
    (auto-accepted at or above the classifier's threshold), else none."""

    kind: str = Field(description="species, not_animal, unknown, or empty for no label.")
    species: str
    source: str = Field(description="human, auto, machine, or empty for no label.")
    confidence: float | None = Field(
        description="The humans' agreement (human) or the machine's confidence."
    )


class CropRowOut(Schema):
    crop_id: int
    crop_url: str
    image_id: int
    image_file: str
    seq_id: str
    frame_num: int | None
    event: str
    box: BoxOut
    detection_confidence: float
    active: bool
    human_label: HumanLabelOut | None = Field(description="The crop's consensus; null if unvoted.")
    machine_label: MachineLabelOut | None
    final_label: FinalLabelOut
    auto_accepted: bool
    classifier_version: int | None
    round: int | None
    strategy: str | None
    attributes_human: list[str] | None = Field(
        description="Attributes the votes decided yes (names); null when no vote recorded any."
    )
    attributes_machine: dict[str, float] | None = Field(
        description="Attributes the attribute head says yes to (probability > 0.5), with the "
        "probability; null without an attribute head."
    )
    attributes: list[str] = Field(
        description="The attributes of the final label: the humans' when it is theirs, else "
        "the machine's."
    )


class CropPageOut(Schema):
    items: list[CropRowOut]
    next_cursor: int | None = Field(
        description="Pass as `cursor` for the next page; null on the last page."
    )


class ImportIn(Schema):
    source: str = Field(
        max_length=1000,
        description="What to import: s3://bucket/prefix (a bucket of TRAPWISE_IMPORT_BUCKETS; "
        "the images stay there) or an absolute folder under TRAPWISE_IMPORT_ROOTS.",
    )
    coco: str | None = Field(
        None,
        max_length=1000,
        description="A COCO Camera Traps file (s3://bucket/key or an absolute path under the "
        "import roots): sequences, frame numbers, species names.",
    )


class ImportQueuedOut(Schema):
    job_id: int = Field(description="The import's job: poll `status_url`.")
    status: str
    total: int = Field(description="Images found when the import was asked for.")
    status_url: str


class JobOut(Schema):
    id: int
    kind: str = Field(description="import, embedding, retrain, finetune or crops.")
    status: str = Field(description="queued, running, done or failed.")
    done: int
    total: int
    detail: str
    worker: str = Field(description="The worker that last started it; empty before.")
    error: str = Field(description="Why it failed; empty unless status is failed.")
    problems: int = Field(description="Items the job skipped and went on without.")
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class ExportIn(Schema):
    """An export file to build. Camtrap DP also takes the package's metadata (defaults as on the
    web form) and, for images without a deployment, the location to publish them with."""

    format: Literal["camtrap-dp", "coco", "crops-csv", "images-csv", "events-csv"]
    latitude: float | None = Field(None, ge=-90, le=90)
    longitude: float | None = Field(None, ge=-180, le=180)
    coordinate_uncertainty: int | None = Field(None, ge=1, le=20_000_000)
    utc_offset: str = Field("+00:00", pattern=r"^[+-](0\d|1[0-4]):[0-5]\d$")
    sampling_design: Literal[SAMPLING_DESIGNS] = "opportunistic"  # type: ignore[valid-type]
    capture_method: Literal[CAPTURE_METHODS] = "activityDetection"  # type: ignore[valid-type]
    data_license: Literal[tuple(LICENSES)] = "CC-BY-4.0"  # type: ignore[valid-type]
    media_license: Literal[tuple(LICENSES)] = "CC-BY-4.0"  # type: ignore[valid-type]


class ExportOut(Schema):
    id: int
    format: str
    status: str = Field(description="queued, running, done or failed.")
    progress: float = Field(description="Share of the work done, 0 to 1.")
    done: int = Field(description="Work units done (images, twice, or CSV rows).")
    total: int = Field(description="Work units in all (an estimate for CSVs).")
    error: str = Field(description="Why it failed; empty otherwise.")
    size: int | None = Field(description="The file's size in bytes, once done.")
    created_at: datetime
    finished_at: datetime | None
    classifier_version: int | None = Field(
        description="The classifier whose predictions the file holds (null: none)."
    )
    round: int | None = Field(description="The round that classifier was trained after.")
    download_url: str | None = Field(
        description="Where to download the file once done (a redirect to a signed URL with S3)."
    )
