"""What each of the project's pages shows: one selector per page, so each view stays thin.

The project page is split into an overview and sub-pages (rounds and labelling, model and
metrics, data and detection, settings, exports) that share one navigation
(``templates/annotator/_project_nav.html``); each fits about two screens at 1366x768. The
forms the pages carry are built by the views; the rest comes from here.
"""

from __future__ import annotations

from dataclasses import dataclass

from activelearn.anchoring import Anchoring
from activelearn.empties import MissedRate
from activelearn.models import ClassifierVersion
from activelearn.selection_rule import StrategyChoice
from activelearn.selectors import (
    AttributeMetricsView,
    ClassifierMetricsView,
    ConfusionView,
    LearningCurveView,
    attribute_metrics_get,
    classifier_latest,
    classifier_metrics_get,
    confusion_matrix_get,
    learning_curve_get,
)
from activelearn.selectors_audit import AuditView, audit_estimate_get, classifier_rejected_get
from activelearn.selectors_empties import empty_checks_summary
from activelearn.services import finetune_interval, round_strategy_choice
from annotator.jobs import JobProgress, jobs_active_for_project, jobs_recent_for_project
from annotator.selectors import (
    EffortSaved,
    LabelCountsView,
    ProjectStatus,
    RareSpeciesView,
    effort_saved_estimate,
    label_counts_chart,
    project_status,
    species_rare_get,
)
from annotator.selectors_labels import anchoring_get, label_seconds_measured
from detector.selectors import JobProgress as DetectionProgress
from detector.selectors import detection_job_latest
from embeddings.models import EmbeddingVersion
from embeddings.selectors import embedding_versions_list
from projects.models import Project


@dataclass(frozen=True)
class Headline:
    """The three numbers that matter, for the overview.

    ``labels``: crops with a decided human label. ``audit``: the audit estimate of the machine
    labels (random crops labelled without suggestions), None before the first audit label.
    ``machine_crops``: active crops without a human vote whose machine label reaches the
    confidence threshold of the target accuracy; ``machine_share`` their share of the active
    crops, None without crops or without a threshold that reaches the target.
    """

    labels: int
    audit: AuditView | None
    machine_crops: int
    crops: int
    machine_share: float | None
    threshold: float | None
    target_accuracy: float

    # Percentages for the page: ecologists read "87.5%" more easily than "0.875".
    @property
    def audit_percent(self) -> float | None:
        accuracy = self.audit.overall.accuracy if self.audit is not None else None
        return None if accuracy is None else 100.0 * accuracy

    @property
    def audit_low_percent(self) -> float | None:
        return None if self.audit is None else 100.0 * self.audit.overall.ci_low

    @property
    def audit_high_percent(self) -> float | None:
        return None if self.audit is None else 100.0 * self.audit.overall.ci_high

    @property
    def machine_percent(self) -> float | None:
        return None if self.machine_share is None else 100.0 * self.machine_share

    @property
    def target_percent(self) -> float:
        return 100.0 * self.target_accuracy


@dataclass(frozen=True)
class OverviewPage:
    status: ProjectStatus
    headline: Headline
    effort: EffortSaved
    jobs: list[JobProgress]
    recent_jobs: list[JobProgress]


def project_overview_get(*, project: Project, with_jobs: bool) -> OverviewPage:
    """The overview: counts, the open round, the three numbers, the effort saved and (with
    ``with_jobs``, the admin's) the background jobs. A fixed number of queries, plus the
    audit's one pass over the live classifier's predictions of unlabelled crops."""
    status = project_status(project=project)
    counts = status.pipeline
    share = None
    if counts.crops and counts.threshold is not None:
        share = counts.auto_acceptable / counts.crops
    return OverviewPage(
        status=status,
        headline=Headline(
            labels=counts.labelled,
            audit=audit_estimate_get(project=project),
            machine_crops=counts.auto_acceptable,
            crops=counts.crops,
            machine_share=share,
            threshold=counts.threshold,
            target_accuracy=project.target_accuracy,
        ),
        effort=effort_saved_estimate(
            project=project,
            counts=counts,
            measured=label_seconds_measured(project=project),
            missed=empty_checks_summary(project=project)[0],
        ),
        jobs=jobs_active_for_project(project=project) if with_jobs else [],
        recent_jobs=jobs_recent_for_project(project=project) if with_jobs else [],
    )


@dataclass(frozen=True)
class RoundsPage:
    status: ProjectStatus
    # What the automatic strategy would pick now, and why (``round_strategy_choice``).
    strategy_auto: StrategyChoice
    # Where labels help most: fewest labels, lowest estimated accuracy.
    rare_species: RareSpeciesView | None


def project_rounds_get(*, project: Project) -> RoundsPage:
    """Rounds and labelling: the open round, the vote counts, the rare species (where a
    species round helps) and the recent rounds."""
    return RoundsPage(
        status=project_status(project=project),
        strategy_auto=round_strategy_choice(project=project),
        rare_species=species_rare_get(
            project=project, classifier=classifier_latest(project=project)
        ),
    )


@dataclass(frozen=True)
class ModelPage:
    """Model and metrics: the live classifier and every estimate of how good it is."""

    classifier: ClassifierVersion | None
    rejected: ClassifierVersion | None
    audit: AuditView | None
    metrics: ClassifierMetricsView | None
    attribute_metrics: AttributeMetricsView | None
    learning_curve: LearningCurveView | None
    label_counts: LabelCountsView | None
    confusion: ConfusionView | None
    # How often volunteers took the machine's first suggestion, and how often it was right.
    anchoring: Anchoring


def project_model_get(*, project: Project) -> ModelPage:
    """The model-and-metrics page's data (about fifteen queries, none growing with the crops
    but the audit's pass over the predictions of unlabelled crops)."""
    classifier = classifier_latest(project=project)
    return ModelPage(
        classifier=classifier,
        rejected=classifier_rejected_get(project=project),
        audit=audit_estimate_get(project=project),
        metrics=classifier_metrics_get(project=project, classifier=classifier),
        attribute_metrics=attribute_metrics_get(project=project, classifier=classifier),
        learning_curve=learning_curve_get(project=project),
        label_counts=label_counts_chart(project=project),
        confusion=confusion_matrix_get(project=project),
        anchoring=anchoring_get(project=project),
    )


@dataclass(frozen=True)
class DataPage:
    status: ProjectStatus
    detection: DetectionProgress | None
    embedding_versions: list[EmbeddingVersion]
    # New labels between automatic fine-tunes (0: only on request).
    finetune_every: int
    # The detector's empties checked by volunteers: the missed-animal rate, 95% interval.
    rate: MissedRate


def project_data_get(*, project: Project) -> DataPage:
    """Data and detection: images, the latest detection job and the embedding versions."""
    status = project_status(project=project)
    return DataPage(
        status=status,
        detection=detection_job_latest(project=project),
        embedding_versions=list(embedding_versions_list(project=project)),
        finetune_every=finetune_interval(
            finetune_every=project.finetune_every,
            n_crops=status.embedding.n_crops if status.embedding else 0,
        ),
        rate=empty_checks_summary(project=project)[0],
    )
