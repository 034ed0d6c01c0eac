"""Writes of the active-learning loop, one module per capability.

- ``rounds``: opening rounds (selection strategies, round seeds, the k-Center cache);
- ``labels``: votes, reviews and undo, the consensus they make, closing a settled round;
- ``claims``: which volunteer is labelling which crop of the open round;
- ``retrain``: retrain requests and the queue, the retrain (training set, cross-validation,
  fit and predict);
- ``predictions``: storing and pruning crop and event predictions;
- ``finetune``: queueing and running the embedding's fine-tuning;
- ``settings``: the project's learning and consensus settings;
- ``species``: merging species and removing attributes (the edits that touch labels);
- ``locks``: every row lock the services take, and their order;
- ``errors``: the exceptions that refuse a request.

Callers import from this package (``from activelearn.services import label_submit``): it
re-exports the names used outside it. A test that replaces a name must patch the module that
looks it up (``activelearn.services.labels.consensus_update``), not this package.

Celery tasks are queued by name (``RETRAIN_TASK``, ``FINETUNE_TASK``) through
``projects.taskqueue``: ``activelearn.tasks`` imports this package, so no module here imports
``activelearn.tasks``.
"""

from __future__ import annotations

from activelearn.services.audit import audit_predictions_record
from activelearn.services.claims import crop_claim_next, crop_claim_release, event_claim_next
from activelearn.services.errors import FinetuneError, LabelError, RoundError, SettingsError
from activelearn.services.finetune import (
    FINETUNE_ABANDONED_AFTER,
    FINETUNE_TASK,
    embedding_finetune_and_retrain,
    embedding_finetune_queue,
    finetune_interval,
)
from activelearn.services.labels import (
    consensus_update,
    label_review,
    label_submit,
    label_undo,
    labels_event_submit,
    labels_import,
    labels_submit,
)
from activelearn.services.predictions import predictions_prune, predictions_store
from activelearn.services.retrain import (
    ATTRIBUTE_MIN_CROPS,
    CV_FOLDS,
    RETRAIN_TASK,
    classifier_retrain,
    classifier_retrain_queue,
    classifier_retrain_request,
)
from activelearn.services.rounds import (
    round_start,
    round_strategy_choice,
    round_strategy_default,
)
from activelearn.services.settings import project_consensus_update, project_learning_update
from activelearn.services.species import SpeciesMergeReport, attribute_remove, species_merge

__all__ = [
    "ATTRIBUTE_MIN_CROPS",
    "CV_FOLDS",
    "FINETUNE_ABANDONED_AFTER",
    "FINETUNE_TASK",
    "RETRAIN_TASK",
    "FinetuneError",
    "LabelError",
    "RoundError",
    "SettingsError",
    "SpeciesMergeReport",
    "audit_predictions_record",
    "attribute_remove",
    "classifier_retrain",
    "classifier_retrain_queue",
    "classifier_retrain_request",
    "consensus_update",
    "crop_claim_next",
    "crop_claim_release",
    "embedding_finetune_and_retrain",
    "event_claim_next",
    "embedding_finetune_queue",
    "finetune_interval",
    "label_review",
    "label_submit",
    "label_undo",
    "labels_event_submit",
    "labels_import",
    "labels_submit",
    "predictions_prune",
    "predictions_store",
    "project_consensus_update",
    "project_learning_update",
    "round_start",
    "round_strategy_choice",
    "round_strategy_default",
    "species_merge",
]
