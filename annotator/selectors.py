"""Reads for the web app: project access, the dashboard and the CSV export."""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth.models import AnonymousUser, User
from django.db.models import Count, F, Q, QuerySet
from django.http import Http404
from django.utils import timezone

from activelearn.empties import MissedRate
from activelearn.final_labels import AutoAccept
from activelearn.models import (
    ClassifierVersion,
    Consensus,
    Label,
    LabelKind,
    Prediction,
    Round,
)
from activelearn.selectors import classifier_latest, round_open_get, round_progress
from activelearn.selectors_empties import empty_checks_summary
from annotator.jobs import jobs_active_for_project, jobs_recent_for_project
from annotator.selectors_labels import MEASURED_MIN, MeasuredSeconds, label_seconds_measured
from detector.models import Crop
from embeddings.models import EmbeddingVersion
from embeddings.selectors import embedding_version_current
from projects.models import Image, Invitation, Membership, Project, Role, Species


def project_list_for_user(*, user: User | AnonymousUser) -> QuerySet[Membership]:
    return (
        Membership.objects.filter(user_id=user.pk or 0)
        .select_related("project")
        .order_by("project__name")
    )


def project_get_for_user(
    *, slug: str, user: User | AnonymousUser, roles: tuple[str, ...] = tuple(Role)
) -> tuple[Project, str]:
    """The project and the user's role in it; 404 for non-members or a role not in ``roles``.

    A 404 rather than a 403 so that outsiders learn nothing, not even that the project exists.
    """
    membership = (
        Membership.objects.filter(project__slug=slug, user_id=user.pk or 0)
        .select_related("project")
        .first()
    )
    if membership is None or membership.role not in roles:
        raise Http404("No such project")
    return membership.project, membership.role


@dataclass(frozen=True)
class PipelineCounts:
    """The pipeline's counts, each one SQL aggregate (none grows with the crops in Python).

    ``labelled``: crops whose votes are decided (Consensus done); ``votes_pending``: crops
    waiting for more votes; ``review``: crops the volunteers disagreed on. ``predicted``: crops
    with a prediction of the latest classifier; ``auto_acceptable``: active crops without any
    human vote whose latest prediction reaches that classifier's confidence threshold.
    """

    images: int
    images_detected: int
    images_empty: int
    crops: int
    labelled: int
    votes_pending: int
    review: int
    predicted: int
    auto_acceptable: int
    classifier_number: int | None
    threshold: float | None

    def as_json(self) -> dict[str, int | float | None]:
        return dict(self.__dict__)


def pipeline_counts(*, project: Project) -> PipelineCounts:
    """The project's pipeline counts in five queries, whatever the number of crops."""
    images = Image.objects.filter(project=project).aggregate(
        total=Count("id"),
        detected=Count("id", filter=Q(detected_at__isnull=False)),
        empty=Count("id", filter=Q(is_empty=True)),
    )
    votes = Consensus.objects.filter(project=project).aggregate(
        done=Count("id", filter=Q(status=Consensus.Status.DONE)),
        pending=Count("id", filter=Q(status=Consensus.Status.PENDING)),
        review=Count("id", filter=Q(status=Consensus.Status.REVIEW)),
    )
    classifier = classifier_latest(project=project)
    predicted = auto_acceptable = 0
    if classifier is not None:
        # Each species at its own threshold where it has one (``AutoAccept``).
        auto = AutoAccept.of(classifier).q() & Q(crop__active=True, crop__consensus__isnull=True)
        counts = Prediction.objects.filter(classifier=classifier).aggregate(
            predicted=Count("id"), auto=Count("id", filter=auto)
        )
        predicted, auto_acceptable = counts["predicted"], counts["auto"]
    return PipelineCounts(
        images=images["total"],
        images_detected=images["detected"],
        images_empty=images["empty"],
        crops=Crop.objects.filter(project=project, active=True).count(),
        labelled=votes["done"],
        votes_pending=votes["pending"],
        review=votes["review"],
        predicted=predicted,
        auto_acceptable=auto_acceptable,
        classifier_number=classifier.number if classifier else None,
        threshold=classifier.threshold if classifier else None,
    )


@dataclass(frozen=True)
class ProjectStatus:
    images: int
    images_detected: int
    images_empty: int
    crops: int
    labelled: int
    predicted: int
    embedding: EmbeddingVersion | None
    open_round: Round | None
    open_round_done: int
    open_round_total: int
    rounds: list[Round]
    classifier_number: int | None
    # All of the pipeline's counts (the fields above repeat the commonest of them).
    pipeline: PipelineCounts


def project_status(*, project: Project) -> ProjectStatus:
    """The project page's status: pipeline counts, embedding, open round and recent rounds.

    A fixed number of queries (about nine), independent of the number of crops.
    """
    counts = pipeline_counts(project=project)
    open_round = round_open_get(project=project)
    done, total = round_progress(round_=open_round) if open_round else (0, 0)
    return ProjectStatus(
        images=counts.images,
        images_detected=counts.images_detected,
        images_empty=counts.images_empty,
        crops=counts.crops,
        labelled=counts.labelled,
        predicted=counts.predicted,
        embedding=embedding_version_current(project=project),
        open_round=open_round,
        open_round_done=done,
        open_round_total=total,
        rounds=list(project.rounds.select_related("target_species").order_by("-number")[:20]),
        classifier_number=counts.classifier_number,
        pipeline=counts,
    )


def project_live_status(*, project: Project) -> dict[str, object]:
    """What the dashboard polls (``status.json``): pipeline counts, the open round's progress,
    the active jobs with percent and time left, and the recently finished jobs. A fixed number
    of queries (about ten)."""
    open_round = round_open_get(project=project)
    round_json: dict[str, object] | None = None
    if open_round is not None:
        done, total = round_progress(round_=open_round)
        round_json = {
            "number": open_round.number,
            "strategy": round_strategy_text(round_=open_round),
            "done": done,
            "total": total,
        }
    return {
        "pipeline": pipeline_counts(project=project).as_json(),
        "round": round_json,
        "jobs": [job.as_json() for job in jobs_active_for_project(project=project)],
        "recent_jobs": [job.as_json() for job in jobs_recent_for_project(project=project)],
    }


@dataclass(frozen=True)
class SpeciesCount:
    """Crops per species: decided human labels and the latest classifier's machine labels of
    the crops without any human vote."""

    species_id: int
    name: str
    human: int
    machine: int


def species_label_counts(*, project: Project) -> list[SpeciesCount]:
    """Per species of the project, in list order: human and machine label counts (3 queries)."""
    human = dict(
        Consensus.objects.filter(
            project=project, status=Consensus.Status.DONE, kind=LabelKind.SPECIES
        )
        .values_list("species_id")
        .annotate(n=Count("id"))
        .values_list("species_id", "n")
    )
    classifier = classifier_latest(project=project)
    machine: dict[int, int] = {}
    if classifier is not None:
        machine = dict(
            Prediction.objects.filter(
                classifier=classifier, crop__active=True, crop__consensus__isnull=True
            )
            .values_list("species_id")
            .annotate(n=Count("id"))
            .values_list("species_id", "n")
        )
    return [
        SpeciesCount(
            species_id=s.pk, name=s.name, human=human.get(s.pk, 0), machine=machine.get(s.pk, 0)
        )
        for s in Species.objects.filter(project=project)
    ]


@dataclass(frozen=True)
class SpeciesRow:
    """A species on the admin's species page, with the labels that name it."""

    species: Species
    labels: int  # Label rows (votes, including replaced and undone ones)
    decided: int  # crops whose decided human label is this species


def species_list_with_counts(*, project: Project) -> list[SpeciesRow]:
    """The project's species in list order with their label counts (three grouped queries,
    not one join of labels with consensus rows, which would multiply them)."""
    labels = dict(
        Label.objects.filter(project=project, species__isnull=False)
        .values_list("species_id")
        .annotate(n=Count("id"))
        .values_list("species_id", "n")
    )
    decided = dict(
        Consensus.objects.filter(project=project, status=Consensus.Status.DONE)
        .exclude(species__isnull=True)
        .values_list("species_id")
        .annotate(n=Count("id"))
        .values_list("species_id", "n")
    )
    return [
        SpeciesRow(species=s, labels=labels.get(s.pk, 0), decided=decided.get(s.pk, 0))
        for s in Species.objects.filter(project=project).select_related("parent")
    ]


def members_list(*, project: Project) -> QuerySet[Membership]:
    """The project's memberships with their users, admins first, then by username."""
    return (
        Membership.objects.filter(project=project)
        .select_related("user")
        .order_by("role", "user__username")
    )


def invitations_open(*, project: Project) -> QuerySet[Invitation]:
    """The project's invitations that can still be accepted (not revoked, not expired, not
    used up), newest first, with their makers."""
    return (
        Invitation.objects.filter(
            project=project,
            revoked_at__isnull=True,
            expires_at__gt=timezone.now(),
            uses__lt=F("max_uses"),
        )
        .select_related("created_by")
        .order_by("-created_at", "-id")
    )


@dataclass(frozen=True)
class LabelCountsView:
    """Crops per species as a table (``rows``, every species) and a bar chart (``svg``, the
    species with any label; empty when none has one yet)."""

    rows: list[SpeciesCount]
    svg: str


def label_counts_chart(*, project: Project) -> LabelCountsView | None:
    """The admin's label-count chart: human and machine labels per species; None without
    species. Three queries."""
    rows = species_label_counts(project=project)
    if not rows:
        return None
    shown = [r for r in rows if r.human or r.machine]
    if not shown:
        return LabelCountsView(rows=rows, svg="")
    # Imported here: matplotlib is slow to import and only this page needs it.
    from activelearn.plots import label_counts_svg

    svg = label_counts_svg(
        [r.name for r in shown], [r.human for r in shown], [r.machine for r in shown]
    )
    return LabelCountsView(rows=rows, svg=svg)


def round_strategy_text(*, round_: Round) -> str:
    """The round's strategy as people read it, with the target of a species round."""
    text = str(round_.get_strategy_display())
    if round_.target_species_id is not None and round_.target_species is not None:
        return f"{text}: {round_.target_species.name}"
    return text


# The preprint's unit for volunteer time: years of 40-hour weeks (52 weeks a year).
HOURS_PER_WEEK = 40.0
WEEKS_PER_YEAR = 52.0


@dataclass(frozen=True)
class EffortSaved:
    """Volunteer time the machine saved so far, and what it was computed from.

    hours = (auto_accepted + empty_credited) x seconds_per_image / 3600, where
    ``auto_accepted`` counts the active crops without any human vote whose latest prediction
    reaches the classifier's threshold for ``target_accuracy``, ``empty_images`` the images
    the detector found empty and ``empty_credited`` those times the empty accuracy measured by
    the volunteers' checks (``empty_accuracy``, of ``empty_checked`` images; before any check
    it is None and the detector's word is taken, which the page says). ``weeks`` and ``years``
    restate the hours as 40-hour weeks and years of them, as the preprint does for Snapshot
    Serengeti.
    """

    auto_accepted: int
    empty_images: int
    seconds_per_image: float
    target_accuracy: float
    threshold: float | None
    classifier_number: int | None
    hours: float
    weeks: float
    years: float
    # Where ``seconds_per_image`` came from: "measured" (the median of ``measured_labels``
    # timed votes) or "setting" (the project's, while fewer votes were timed).
    seconds_source: str = "setting"
    measured_labels: int = 0
    empty_accuracy: float | None = None
    empty_checked: int = 0

    @property
    def empty_credited(self) -> float:
        """The empty images counted as saved: times the measured empty accuracy."""
        if self.empty_accuracy is None:
            return float(self.empty_images)
        return self.empty_images * self.empty_accuracy

    @property
    def items(self) -> float:
        return self.auto_accepted + self.empty_credited

    @property
    def minutes(self) -> float:
        """The hours in minutes: a young project's estimate is shown in minutes."""
        return self.hours * 60.0

    def formula(self) -> str:
        """The computation with its numbers, e.g. for the export and the page's title text."""
        if self.empty_accuracy is None:
            empties = f"{self.empty_images} empty images filtered out"
        else:
            empties = (
                f"{self.empty_images} empty images x {self.empty_accuracy:.3f} measured empty "
                f"accuracy = {self.empty_credited:.1f} filtered out"
            )
        text = (
            f"({self.auto_accepted} crops auto-accepted at {self.target_accuracy:.1%} target "
            f"accuracy + {empties}) x "
            f"{self.seconds_per_image:g} s per image / 3600 = {self.hours:.1f} hours"
        )
        if self.hours >= HOURS_PER_WEEK:
            text += f" = {self.weeks:.1f} weeks of 40 hours"
        if self.weeks >= WEEKS_PER_YEAR:
            text += f" = {self.years:.1f} years of 40-hour weeks"
        return text

    @property
    def measured_min(self) -> int:
        """Timed votes needed before the measured median replaces the setting."""
        return MEASURED_MIN

    def seconds_text(self) -> str:
        """Which seconds per image the estimate used, in words."""
        if self.seconds_source == "measured":
            return f"the median time of {self.measured_labels} timed labels"
        return "the project's setting"

    def as_json(self) -> dict[str, object]:
        return {
            **self.__dict__,
            "items": self.items,
            "empty_credited": self.empty_credited,
            "formula": self.formula(),
        }


def effort_saved_estimate(
    *,
    project: Project,
    counts: PipelineCounts,
    measured: MeasuredSeconds | None = None,
    missed: MissedRate | None = None,
) -> EffortSaved:
    """The effort estimate from counts already read (``pipeline_counts``), the timed votes
    (``measured``) and the empties check (``missed``,
    ``activelearn.selectors_empties.empty_checks_summary``): no query.

    With ``measured`` seconds of enough votes (``MeasuredSeconds.enough``), their median
    replaces the project's seconds-per-image setting; the estimate says which it used. The
    detector's empties count times the measured empty accuracy once any was checked.
    """
    use_measured = measured is not None and measured.enough and measured.median is not None
    seconds = (
        float(measured.median)
        if use_measured and measured is not None and measured.median is not None
        else project.seconds_per_image
    )
    accuracy = missed.empty_accuracy if missed is not None else None
    empties = counts.images_empty if accuracy is None else counts.images_empty * accuracy
    hours = (counts.auto_acceptable + empties) * seconds / 3600.0
    return EffortSaved(
        seconds_source="measured" if use_measured else "setting",
        measured_labels=measured.n if measured is not None else 0,
        empty_accuracy=accuracy,
        empty_checked=missed.checked if missed is not None else 0,
        auto_accepted=counts.auto_acceptable,
        empty_images=counts.images_empty,
        seconds_per_image=seconds,
        target_accuracy=project.target_accuracy,
        threshold=counts.threshold,
        classifier_number=counts.classifier_number,
        hours=hours,
        weeks=hours / HOURS_PER_WEEK,
        years=hours / HOURS_PER_WEEK / WEEKS_PER_YEAR,
    )


@dataclass(frozen=True)
class RareSpecies:
    """A species on the admin's rare-species list: its decided human labels, and its
    cross-validated accuracy and support under the latest classifier (None: not measured)."""

    species_id: int
    name: str
    labels: int
    accuracy: float | None
    support: int


@dataclass(frozen=True)
class RareSpeciesView:
    fewest_labels: list[RareSpecies]
    lowest_accuracy: list[RareSpecies]
    classifier_number: int | None


def species_rare_get(
    *, project: Project, classifier: ClassifierVersion | None, limit: int = 5
) -> RareSpeciesView | None:
    """The ``limit`` species with the fewest decided human labels (none counts) and the
    ``limit`` with the lowest cross-validated accuracy of ``classifier`` (the latest; species
    it never saw are left out). None for a project without species. Two queries.
    """
    species = list(Species.objects.filter(project=project))
    if not species:
        return None
    labels = dict(
        Consensus.objects.filter(
            project=project, status=Consensus.Status.DONE, kind=LabelKind.SPECIES
        )
        .values_list("species_id")
        .annotate(n=Count("id"))
        .values_list("species_id", "n")
    )
    measured = (classifier.cv_per_species or {}) if classifier is not None else {}
    rows = []
    for s in species:
        accuracy, support = measured.get(str(s.pk), (None, 0))
        rows.append(
            RareSpecies(
                species_id=s.pk,
                name=s.name,
                labels=labels.get(s.pk, 0),
                accuracy=None if accuracy is None else float(accuracy),
                support=int(support),
            )
        )
    scored = [r for r in rows if r.accuracy is not None and r.support > 0]
    return RareSpeciesView(
        fewest_labels=sorted(rows, key=lambda r: (r.labels, r.name))[:limit],
        lowest_accuracy=sorted(scored, key=lambda r: (r.accuracy, r.support, r.name))[:limit],
        classifier_number=classifier.number if classifier is not None else None,
    )


def project_metrics_report(*, project: Project) -> dict[str, object]:
    """The metrics export (``metrics.json``): the latest classifier's cross-validated metrics,
    per-species accuracy with names, attribute metrics if any, the effort estimate with its
    inputs, the audit estimate (``audit``: ``n``, ``accuracy``, ``ci_low``, ``ci_high``,
    ``per_species``, ...) and the auto-accept thresholds (``thresholds.per_species``). A
    fixed number of queries (about fourteen)."""
    from activelearn.selectors import classifier_metrics_get
    from activelearn.selectors_audit import audit_estimate_get

    counts = pipeline_counts(project=project)
    missed, _ = empty_checks_summary(project=project)
    audit = audit_estimate_get(project=project)
    classifier = classifier_latest(project=project)
    metrics = classifier_metrics_get(project=project, classifier=classifier)
    return {
        "project": project.slug,
        "classifier": None
        if classifier is None
        else {
            "number": classifier.number,
            "created_at": classifier.created_at.isoformat(),
            "algorithm": classifier.algorithm,
            "n_labels": classifier.n_labels,
            "n_classes": classifier.n_classes,
            "cv_n_splits": classifier.cv_n_splits,
            "class_balance": classifier.class_balance,
            "ensemble_size": classifier.ensemble_size,
            "target_accuracy": classifier.target_accuracy,
            "threshold": classifier.threshold,
            "threshold_accuracy": classifier.threshold_accuracy,
        },
        "cv_metrics": metrics.summary if metrics else None,
        "per_species": [s.__dict__ for s in metrics.per_species] if metrics else [],
        "attribute_metrics": classifier.attribute_metrics if classifier else None,
        "effort_saved": effort_saved_estimate(
            project=project,
            counts=counts,
            measured=label_seconds_measured(project=project),
            missed=missed,
        ).as_json(),
        # The detector's empties checked by volunteers: missed-animal rate, 95% Wilson interval.
        "empties_check": missed.__dict__,
        # The unbiased measure: machine labels checked on crops drawn at random (None before
        # the first audit label).
        "audit": audit.as_json() if audit is not None else None,
        "thresholds": {
            "global": classifier.threshold if classifier else None,
            "per_species": _thresholds_named(classifier=classifier, project=project),
        },
    }


def _thresholds_named(
    *, classifier: ClassifierVersion | None, project: Project
) -> list[dict[str, object]]:
    """``classifier``'s per-species auto-accept thresholds with species names (species
    without their own use the global threshold)."""
    own = (classifier.thresholds_per_species or {}) if classifier else {}
    names = dict(Species.objects.filter(project=project).values_list("id", "name"))
    return [
        {"species_id": int(sid), "name": names.get(int(sid), "?"), "threshold": threshold}
        for sid, threshold in sorted(own.items(), key=lambda item: int(item[0]))
    ]
