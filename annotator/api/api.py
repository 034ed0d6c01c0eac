"""The JSON API, version 1: mounted at /api/v1/, described at /api/v1/openapi.json.

Every endpoint takes a personal token (``Authorization: Bearer <key>``) or the browser's
session (writes then need the CSRF token). Project endpoints check the caller's role exactly as
the web views do, and answer 404 to people outside the project. Errors are
``{"detail": "..."}`` with a 4xx status.
"""

from __future__ import annotations

import logging
import re
from dataclasses import asdict
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent
from django.db import DatabaseError, InterfaceError, OperationalError
from django.http import Http404, HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404
from django.urls import reverse
from ninja import NinjaAPI, Path, Query, Status
from ninja.errors import AuthenticationError, HttpError, ValidationError

from activelearn.models import Label, Round
from activelearn.selectors import round_open_get, round_progress
from activelearn.services import (
    LabelError,
    RoundError,
    classifier_retrain_request,
    crop_claim_next,
    label_submit,
    label_undo,
    round_start,
)
from annotator.api.auth import BrowserSessionAuth, TokenAuth
from annotator.api.schemas import (
    AttributeOut,
    CropPageOut,
    ErrorOut,
    ExportIn,
    ExportOut,
    FinalSource,
    Id,
    ImportIn,
    ImportQueuedOut,
    JobOut,
    LabelIn,
    LabelOut,
    NextOut,
    ProjectOut,
    ProjectStatusOut,
    QueuedOut,
    RoundOut,
    RoundStartIn,
    SpeciesOut,
    ValidationErrorOut,
)
from annotator.api.selectors import crop_cards, crop_rows_page, job_get, round_list
from annotator.camtrapdp import CamtrapDpError, PackageOptions
from annotator.export_jobs import (
    ExportError,
    export_download_name,
    export_job_create,
)
from annotator.file_responses import (
    crop_file_response,
    export_file_response,
    image_file_response,
)
from annotator.forms_explore import ExploreFilterError, explore_filters_parse
from annotator.middleware import database_unavailable_response
from annotator.models import ExportFile, ExportFormat
from annotator.numbers import MAX_ID, SKIP_MAX
from annotator.selectors import project_get_for_user, project_list_for_user, project_status
from annotator.selectors_exports import export_file_get, export_file_list, export_file_progress
from detector.coco import CocoError
from detector.import_jobs import image_import_request
from detector.models import Crop
from projects.import_roots import FolderImportError
from projects.models import EXPORTERS, LABELLERS, Attribute, Image, Job, Project, Role, Species

logger = logging.getLogger(__name__)

NAMESPACE = "api-v1"

api = NinjaAPI(
    title="Trapwise API",
    version="1",
    description=__doc__ or "",
    urls_namespace=NAMESPACE,
    auth=[TokenAuth(), BrowserSessionAuth()],
)

# The error answers every project endpoint can give, for the OpenAPI description.
_ERRORS: dict[int, Any] = {
    401: ErrorOut,
    404: ErrorOut,
    413: ErrorOut,
    422: ValidationErrorOut,
}
NEXT_LIMIT_MAX = 50
# Crop ids one GET .../next may skip.
NEXT_SKIP_MAX = SKIP_MAX
_SLUG = re.compile(r"[-a-zA-Z0-9_]{1,200}")
CROPS_LIMIT_MAX = 500


@api.exception_handler(Http404)
def _not_found(request: HttpRequest, exc: Http404) -> HttpResponse:
    return api.create_response(request, {"detail": str(exc) or "Not found"}, status=404)


@api.exception_handler(OperationalError)
@api.exception_handler(InterfaceError)
def _database_unavailable(request: HttpRequest, exc: DatabaseError) -> HttpResponse:
    logger.warning("database unavailable for %s %s: %s", request.method, request.path, exc)
    return database_unavailable_response(request)


@api.exception_handler(RequestDataTooBig)
@api.exception_handler(TooManyFieldsSent)
def _too_large(request: HttpRequest, exc: RequestDataTooBig | TooManyFieldsSent) -> HttpResponse:
    # Django's limits (DATA_UPLOAD_MAX_MEMORY_SIZE, DATA_UPLOAD_MAX_NUMBER_FIELDS): JSON here,
    # where Django itself would answer an HTML 400 page.
    if isinstance(exc, RequestDataTooBig):
        detail = (
            "Request too large: the body may hold at most "
            f"{settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes"
        )
    else:
        detail = (
            "Request too large: at most "
            f"{settings.DATA_UPLOAD_MAX_NUMBER_FIELDS} parameters in the query string or body"
        )
    return api.create_response(request, {"detail": detail}, status=413)


@api.exception_handler(AuthenticationError)
def _unauthenticated(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    response = api.create_response(
        request,
        {
            "detail": "Not authenticated: send 'Authorization: Bearer <key>' with a valid, "
            "unrevoked token (from /account/tokens/ or `manage.py api_token`), or log in."
        },
        status=401,
    )
    response["WWW-Authenticate"] = 'Bearer realm="trapwise"'
    return response


@api.exception_handler(ValidationError)
def _invalid(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    # Only loc and msg: pydantic's ctx may hold exception objects that are not JSON.
    errors = [
        {"loc": [str(part) for part in error.get("loc", ())], "msg": str(error.get("msg", ""))}
        for error in exc.errors
    ]
    detail = "; ".join(f"{'.'.join(e['loc'][1:]) or 'body'}: {e['msg']}" for e in errors)
    return api.create_response(
        request, {"detail": f"Invalid request: {detail}", "errors": errors}, status=422
    )


def _user(request: HttpRequest) -> User:
    """The authenticated caller (every endpoint requires authentication)."""
    user = getattr(request, "auth", None)
    assert isinstance(user, User)
    return user


def _project(
    request: HttpRequest, slug: str, roles: tuple[str, ...] = tuple(Role)
) -> tuple[Project, str]:
    """``project_get_for_user`` for the caller; a slug that no project can have is a 404 too
    (and never reaches the database: PostgreSQL refuses some characters outright)."""
    if not _SLUG.fullmatch(slug):
        raise Http404("No such project")
    return project_get_for_user(slug=slug, user=_user(request), roles=roles)


def _round_out(round_: Round, *, done: int, total: int) -> dict[str, Any]:
    return {
        "id": round_.pk,
        "number": round_.number,
        "strategy": round_.strategy,
        "size": round_.size,
        "status": round_.status,
        "created_at": round_.created_at,
        "closed_at": round_.closed_at,
        "target_species_id": round_.target_species_id,
        "unit": round_.unit,
        "done": done,
        "total": total,
    }


def _url(request: HttpRequest, name: str, **kwargs: Any) -> str:
    return request.build_absolute_uri(reverse(f"{NAMESPACE}:{name}", kwargs=kwargs))


@api.get(
    "/projects", response={200: list[ProjectOut], 401: ErrorOut, 413: ErrorOut}, tags=["projects"]
)
def projects_list(request: HttpRequest) -> list[dict[str, str]]:
    """The projects you are a member of, with your role in each."""
    return [
        {"slug": m.project.slug, "name": m.project.name, "role": m.role}
        for m in project_list_for_user(user=_user(request))
    ]


@api.get("/projects/{slug}", response={200: ProjectStatusOut, **_ERRORS}, tags=["projects"])
def project_detail(request: HttpRequest, slug: str) -> dict[str, Any]:
    """The project's counts and the open round's progress, as on its web page."""
    project, role = _project(request, slug)
    status = project_status(project=project)
    return {
        "slug": project.slug,
        "name": project.name,
        "role": role,
        "images": status.images,
        "images_detected": status.images_detected,
        "images_empty": status.images_empty,
        "crops": status.crops,
        "labelled": status.labelled,
        "predicted": status.predicted,
        "classifier_version": status.classifier_number,
        "embedding_version": status.embedding.number if status.embedding else None,
        "open_round": _round_out(
            status.open_round, done=status.open_round_done, total=status.open_round_total
        )
        if status.open_round
        else None,
    }


@api.get("/projects/{slug}/species", response={200: list[SpeciesOut], **_ERRORS}, tags=["projects"])
def species_list(request: HttpRequest, slug: str) -> list[Species]:
    """The project's species, in the labelling page's order."""
    project, _ = _project(request, slug)
    return list(project.species.all())


@api.get(
    "/projects/{slug}/attributes", response={200: list[AttributeOut], **_ERRORS}, tags=["projects"]
)
def attributes_list(request: HttpRequest, slug: str) -> list[Attribute]:
    """The project's yes/no attributes (behaviours), in the labelling page's order."""
    project, _ = _project(request, slug)
    return list(project.attributes.all())


@api.get("/projects/{slug}/rounds", response={200: list[RoundOut], **_ERRORS}, tags=["rounds"])
def rounds_list(request: HttpRequest, slug: str) -> list[dict[str, Any]]:
    """The project's rounds, newest first, with their progress."""
    project, _ = _project(request, slug)
    return [_round_out(r, done=r.n_done, total=r.n_total) for r in round_list(project=project)]  # type: ignore[attr-defined]


@api.post(
    "/projects/{slug}/rounds",
    response={201: RoundOut, 400: ErrorOut, 409: ErrorOut, **_ERRORS},
    tags=["rounds"],
)
def round_create(request: HttpRequest, slug: str, payload: RoundStartIn) -> Status[dict[str, Any]]:
    """Start the next round (project admins only). 409 when it cannot start, e.g. one is open;
    400 when the body is not JSON."""
    project, _ = _project(request, slug, roles=(Role.ADMIN,))
    target = None
    if payload.target_species_id is not None:
        target = project.species.filter(pk=payload.target_species_id).first()
        if target is None:
            raise HttpError(
                409,
                f"Round not started: species #{payload.target_species_id} is not a species "
                "of this project",
            )
    try:
        new_round = round_start(
            project=project,
            user=_user(request),
            strategy=payload.strategy.value if payload.strategy else None,
            size=payload.size or project.round_size,
            target_species=target,
            unit=payload.unit.value,
        )
    except RoundError as exc:
        raise HttpError(409, f"Round not started: {exc}") from exc
    done, total = round_progress(round_=new_round)
    return Status(201, _round_out(new_round, done=done, total=total))


@api.post(
    "/projects/{slug}/retrain",
    response={202: QueuedOut, 409: ErrorOut, **_ERRORS},
    tags=["rounds"],
)
def retrain_request(request: HttpRequest, slug: str) -> Status[dict[str, str]]:
    """Retrain the classifier on every species label and predict every crop (project admins
    only), as the project page's "Retrain now": queued for a worker, so the answer comes before
    the new predictions (``classifier_version`` and ``predicted`` of the project's status show
    them). A retrain with nothing new keeps the current classifier. 409 when no crop has a
    species label yet."""
    project, _ = _project(request, slug, roles=(Role.ADMIN,))
    try:
        classifier_retrain_request(project=project)
    except LabelError as exc:
        raise HttpError(409, f"Retrain not queued: {exc}") from exc
    return Status(202, {"detail": "Retrain queued"})


@api.get("/projects/{slug}/next", response={200: NextOut, **_ERRORS}, tags=["labelling"])
def next_crops(
    request: HttpRequest,
    slug: str,
    limit: int = Query(1, ge=1, le=NEXT_LIMIT_MAX),  # noqa: B008
    skip: list[Id] = Query([], max_length=NEXT_SKIP_MAX),  # noqa: B008
) -> dict[str, Any]:
    """The next crops of the open round for you to label (labellers: admins and volunteers).

    The crops are held for you for a while (others are not offered them meanwhile); asking
    again returns the ones you hold first. ``skip`` lists crop ids you passed over: they are
    given back to the others and not served to you again. You hold at most
    ``TRAPWISE_CLAIMS_PER_USER`` crops of a round at once (25 unless configured), those held
    counted: a larger ``limit`` gets fewer crops. Only crops served to you can be labelled.
    """
    project, _ = _project(request, slug, roles=LABELLERS)
    open_round = round_open_get(project=project)
    if open_round is None:
        return {"round": None, "crops": []}
    crops = crop_claim_next(round_=open_round, user=_user(request), skipped=skip, limit=limit)
    cards = crop_cards(project=project, crops=crops)
    return {
        "round": open_round.number,
        "crops": [
            {
                **asdict(card),
                "crop_url": _url(request, "crop_file", slug=slug, crop_id=card.crop_id),
                "image_url": _url(request, "image_file", slug=slug, image_id=card.image_id),
            }
            for card in cards
        ],
    }


@api.post(
    "/projects/{slug}/labels",
    response={201: LabelOut, 400: ErrorOut, **_ERRORS},
    tags=["labelling"],
)
def label_create(request: HttpRequest, slug: str, payload: LabelIn) -> Status[Label]:
    """Store your label of a crop (labellers). 400 for a crop ``next`` did not serve you (or
    that went to someone else after your hold expired), a crop, species or attribute of
    another project, and for a body that is not JSON.

    With an ``idempotency_key``, a retried request in the same project returns the label
    stored the first time (201 again) and stores nothing; reusing a key for a different label
    is a 400.
    """
    project, _ = _project(request, slug, roles=LABELLERS)
    try:
        label = label_submit(
            project=project,
            crop_id=payload.crop_id,
            user=_user(request),
            kind=payload.kind,
            species_id=payload.species_id,
            idempotency_key=payload.idempotency_key or "",
            attributes=payload.attributes,
            suggestions=payload.suggestions,
            suggestion_rank=payload.suggestion_rank,
            seconds=payload.seconds,
        )
    except LabelError as exc:
        raise HttpError(400, f"Label refused: {exc}") from exc
    return Status(201, label)


@api.post(
    "/projects/{slug}/labels/undo",
    response={200: LabelOut, 400: ErrorOut, **_ERRORS},
    tags=["labelling"],
)
def label_undo_latest(request: HttpRequest, slug: str) -> Label:
    """Withdraw your latest label in the project (labellers); it is kept, marked undone.

    While its round is open the crop comes back to you first. 400 when there is nothing to undo.
    """
    project, _ = _project(request, slug, roles=LABELLERS)
    try:
        return label_undo(project=project, user=_user(request))
    except LabelError as exc:
        raise HttpError(400, f"Nothing undone: {exc}") from exc


# A file endpoint answers the file itself (FileResponse), or a redirect to it where a store or
# bucket serves it (annotator.file_responses), which ninja cannot describe: written out here.
_FILE_200 = {
    "responses": {
        200: {
            "description": "The file, as stored (crops are JPEG; images are JPEG or PNG).",
            "content": {
                media_type: {"schema": {"type": "string", "format": "binary"}}
                for media_type in ("image/jpeg", "image/png")
            },
        },
        302: {"description": "A short-lived signed URL of the file in the object store."},
    }
}


@api.exception_handler(ExploreFilterError)
def _bad_filter(request: HttpRequest, exc: ExploreFilterError) -> HttpResponse:
    return api.create_response(request, {"detail": f"Invalid filter: {exc}"}, status=400)


@api.get(
    "/projects/{slug}/crops",
    response={200: CropPageOut, 400: ErrorOut, **_ERRORS},
    tags=["export"],
)
def crops_page(
    request: HttpRequest,
    slug: str,
    cursor: int = Query(0, ge=0, le=MAX_ID),  # noqa: B008
    limit: int = Query(100, ge=1, le=CROPS_LIMIT_MAX),  # noqa: B008
    source: list[FinalSource] = Query(  # noqa: B008
        [], description="Final label source (repeat for several): human, auto, machine, none."
    ),
    species: Id | None = Query(None, description="Final species: one of the project's."),  # noqa: B008
    confidence_min: float | None = Query(  # noqa: B008
        None, ge=0, le=1, description="Lowest final confidence (the humans' agreement for human)."
    ),
    confidence_max: float | None = Query(  # noqa: B008
        None, ge=0, le=1, description="Highest final confidence."
    ),
    round: Id | None = Query(None, description="Crops picked in this round (its number)."),  # noqa: B008
    event: str | None = Query(  # noqa: B008
        None,
        max_length=220,
        description="Capture event: a sequence id, or image-<id> for an image without one.",
    ),
) -> dict[str, Any]:
    """Every crop with its human and machine labels, as the CSV export (admins, ecologists),
    filtered as on the explore page.

    Pages are in crop-id order; pass ``next_cursor`` back as ``cursor`` (with the same
    filters) until it is null. A bad filter value is a 400 that says which and why.
    """
    project, _ = _project(request, slug, roles=EXPORTERS)
    filters = explore_filters_parse(project=project, query=request.GET)
    page = crop_rows_page(project=project, after=cursor, limit=limit, filters=filters)
    return {
        "items": [
            {
                **asdict(row),
                "crop_url": _url(request, "crop_file", slug=slug, crop_id=row.crop_id),
            }
            for row in page.items
        ],
        "next_cursor": page.next_cursor,
    }


@api.get(
    "/projects/{slug}/crops/{crop_id}/file",
    response=_ERRORS,
    openapi_extra=_FILE_200,
    url_name="crop_file",
    tags=["files"],
)
def crop_file(
    request: HttpRequest,
    slug: str,
    crop_id: int = Path(..., ge=1, le=MAX_ID),  # noqa: B008
) -> HttpResponseBase:
    """The crop as a JPEG (any member)."""
    project, _ = _project(request, slug)
    crop = get_object_or_404(Crop, project=project, pk=crop_id)
    return crop_file_response(crop=crop)


@api.get(
    "/projects/{slug}/images/{image_id}/file",
    response=_ERRORS,
    openapi_extra=_FILE_200,
    url_name="image_file",
    tags=["files"],
)
def image_file(
    request: HttpRequest,
    slug: str,
    image_id: int = Path(..., ge=1, le=MAX_ID),  # noqa: B008
) -> HttpResponseBase:
    """The whole camera-trap image (any member)."""
    project, _ = _project(request, slug)
    image = get_object_or_404(Image, project=project, pk=image_id)
    return image_file_response(image=image)


@api.post(
    "/projects/{slug}/imports",
    response={202: ImportQueuedOut, 400: ErrorOut, **_ERRORS},
    tags=["imports"],
)
def import_create(request: HttpRequest, slug: str, payload: ImportIn) -> Status[dict[str, Any]]:
    """Queue an import of images (project admins), as the browser's import page does; when it
    is done the project's detector runs on the new images.

    ``source`` is ``s3://bucket/prefix`` (the bucket must be one of TRAPWISE_IMPORT_BUCKETS;
    the images are read from it and stay there) or an absolute folder under
    TRAPWISE_IMPORT_ROOTS. 400, with nothing recorded, for a bucket not allowed, a prefix
    without images, a folder outside the roots, S3 out of reach or no credentials.
    """
    project, _ = _project(request, slug, roles=(Role.ADMIN,))
    try:
        record = image_import_request(
            project=project,
            source=payload.source,
            coco=payload.coco or "",
            created_by=_user(request),
        )
    except (FolderImportError, CocoError) as exc:
        raise HttpError(400, f"Import not started: {exc}") from exc
    job = record.job
    return Status(
        202,
        {
            "job_id": job.pk,
            "status": job.status,
            "total": job.total,
            "status_url": _url(request, "job_detail", slug=slug, job_id=job.pk),
        },
    )


@api.get(
    "/projects/{slug}/jobs/{job_id}",
    response={200: JobOut, **_ERRORS},
    url_name="job_detail",
    tags=["imports"],
)
def job_detail(
    request: HttpRequest,
    slug: str,
    job_id: int = Path(..., ge=1, le=MAX_ID),  # noqa: B008
) -> dict[str, Any]:
    """A background job of the project (project admins): an import, embedding, retraining,
    fine-tuning or re-deriving crops, with its progress (``done`` of ``total``)."""
    project, _ = _project(request, slug, roles=(Role.ADMIN,))
    job: Job | None = job_get(project=project, job_id=job_id)
    if job is None:
        raise Http404("No such job")
    return {
        "id": job.pk,
        "kind": job.kind,
        "status": job.status,
        "done": job.done,
        "total": job.total,
        "detail": job.detail,
        "worker": job.worker,
        "error": job.error,
        "problems": len(job.problems or []),
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
    }


# --- export files -------------------------------------------------------------------------------


def _export_out(request: HttpRequest, slug: str, export_file: ExportFile) -> dict[str, Any]:
    job = export_file.job
    done = job.status == Job.Status.DONE
    return {
        "id": export_file.pk,
        "format": export_file.format,
        "status": job.status,
        "progress": export_file_progress(export_file=export_file),
        "done": job.done,
        "total": job.total,
        "error": job.error,
        "size": export_file.size,
        "created_at": export_file.created_at,
        "finished_at": job.finished_at,
        "classifier_version": export_file.classifier_number,
        "round": export_file.round_number,
        "download_url": _url(request, "export_file", slug=slug, export_id=export_file.pk)
        if done
        else None,
    }


@api.post(
    "/projects/{slug}/exports",
    response={202: ExportOut, 400: ErrorOut, **_ERRORS},
    tags=["export"],
)
def export_create(request: HttpRequest, slug: str, payload: ExportIn) -> Status[dict[str, Any]]:
    """Build an export file in the background (admins, ecologists): 202 with its id; poll
    ``GET .../exports/{id}`` for its progress and, once done, its ``download_url``. 400 when
    the project cannot make it (e.g. Camtrap DP with images without a capture time, or
    without a deployment and no ``latitude``/``longitude``); nothing is queued then."""
    project, _ = _project(request, slug, roles=EXPORTERS)
    options = None
    if payload.format == ExportFormat.CAMTRAP_DP:
        if (payload.latitude is None) != (payload.longitude is None):
            raise HttpError(400, "Export refused: give both the latitude and the longitude")
        options = PackageOptions(
            **payload.model_dump(exclude={"format"})  # the schema's fields are the options'
        )
    try:
        record = export_job_create(
            project=project, format=payload.format, created_by=_user(request), options=options
        )
    except (CamtrapDpError, ExportError) as exc:
        raise HttpError(400, f"Export refused: {exc}") from exc
    return Status(202, _export_out(request, slug, record))


@api.get("/projects/{slug}/exports", response={200: list[ExportOut], **_ERRORS}, tags=["export"])
def exports_list(request: HttpRequest, slug: str) -> list[dict[str, Any]]:
    """The project's export files, newest first (admins, ecologists)."""
    project, _ = _project(request, slug, roles=EXPORTERS)
    return [_export_out(request, slug, f) for f in export_file_list(project=project)]


@api.get(
    "/projects/{slug}/exports/{export_id}", response={200: ExportOut, **_ERRORS}, tags=["export"]
)
def export_detail(
    request: HttpRequest,
    slug: str,
    export_id: int = Path(..., ge=1, le=MAX_ID),  # noqa: B008
) -> dict[str, Any]:
    """An export file's status and progress, and its ``download_url`` once done."""
    project, _ = _project(request, slug, roles=EXPORTERS)
    return _export_out(request, slug, export_file_get(project=project, export_id=export_id))


# The export file itself, or (S3) a redirect to it: described here, as for crops and images.
_EXPORT_FILE_200 = {
    "responses": {
        200: {
            "description": "The export file (a Camtrap DP zip, COCO JSON or CSV).",
            "content": {
                media_type: {"schema": {"type": "string", "format": "binary"}}
                for media_type in ("application/zip", "application/json", "text/csv")
            },
        },
        302: {
            "description": "With S3 storage: a redirect to a short-lived signed URL of the file.",
            "headers": {"Location": {"schema": {"type": "string"}}},
        },
    }
}


@api.get(
    "/projects/{slug}/exports/{export_id}/file",
    response=_ERRORS,
    openapi_extra=_EXPORT_FILE_200,
    url_name="export_file",
    tags=["files"],
)
def export_file(
    request: HttpRequest,
    slug: str,
    export_id: int = Path(..., ge=1, le=MAX_ID),  # noqa: B008
) -> HttpResponseBase:
    """The finished export file (admins, ecologists): with S3 a 302 to a short-lived signed
    URL, else the file. 404 while it is not done."""
    project, _ = _project(request, slug, roles=EXPORTERS)
    record = export_file_get(project=project, export_id=export_id)
    if record.job.status != Job.Status.DONE:
        raise Http404("This export file is not ready")
    return export_file_response(
        name=record.name, download_name=export_download_name(export_file=record)
    )
