"""Rounds of selection, human labels, classifier versions and machine predictions."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from detector.models import Crop
from embeddings.models import EmbeddingVersion
from projects.models import Image, Project, Species


class Strategy(models.TextChoices):
    K_CENTER = "k_center", "k-Center greedy"
    # Most typical crop of each least-covered kNN neighbourhood (activelearn.selection_typical).
    TYPICAL = "typical", "Typical crops, spread out"
    RANDOM = "random", "Random"
    CONFIDENCE = "confidence", "Least confident"
    MARGIN = "margin", "Smallest margin"
    ENTROPY = "entropy", "Highest entropy"
    HYBRID = "hybrid", "k-Center among the least confident"
    # k-Center among the crops the classifier predicts as one species (Round.target_species).
    SPECIES = "species", "One species, for diversity"


# Strategies that rank crops by the current classifier's probabilities.
UNCERTAINTY_STRATEGIES = frozenset({"confidence", "margin", "entropy", "hybrid"})


class RoundUnit(models.TextChoices):
    """What a round offers for one decision: a crop, or a whole capture event (all its crops,
    one answer; ``activelearn.selection_events``)."""

    CROP = "crop", "Crops, one at a time"
    EVENT = "event", "Capture events, one answer per event"


class Round(models.Model):
    class Status(models.TextChoices):
        OPEN = "open"
        CLOSED = "closed"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="rounds")
    number = models.PositiveIntegerField()
    strategy = models.CharField(max_length=30, choices=Strategy.choices)
    # Why the default rule chose ``strategy`` (activelearn.selection_rule); empty when an admin
    # chose it.
    strategy_reason = models.CharField(max_length=300, blank=True)
    size = models.PositiveIntegerField(help_text="Crops asked for; fewer if fewer were left.")
    seed = models.PositiveIntegerField()
    embedding_version = models.ForeignKey(
        EmbeddingVersion, on_delete=models.PROTECT, related_name="rounds"
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    # A round aimed at one species (strategy "species"): crops predicted as it.
    target_species = models.ForeignKey(
        Species, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Event rounds pick whole capture events (k-Center over event embeddings) and serve each
    # event's crops together; ``size`` then counts events.
    unit = models.CharField(max_length=10, choices=RoundUnit.choices, default=RoundUnit.CROP)

    class Meta:
        ordering = ["project_id", "number"]
        constraints = [
            models.UniqueConstraint(fields=["project", "number"], name="round_unique_number"),
            # The database, not the view, guarantees one open round per project.
            models.UniqueConstraint(
                fields=["project"], condition=Q(status="open"), name="round_one_open"
            ),
        ]

    def __str__(self) -> str:
        return f"round {self.number} ({self.strategy})"


class RoundCrop(models.Model):
    """A crop picked in a round, in pick order."""

    round = models.ForeignKey(Round, on_delete=models.CASCADE, related_name="items")
    crop = models.ForeignKey(Crop, on_delete=models.CASCADE, related_name="round_items")
    position = models.PositiveIntegerField()
    # Distance to the covered set when picked (k-Center); null for random picks.
    distance = models.FloatField(null=True, blank=True)
    # Drawn uniformly at random for the audit stream (not by the strategy): shown without
    # machine suggestions, its label measures the classifier that was live when it was offered.
    is_audit = models.BooleanField(default=False)

    class Meta:
        ordering = ["round_id", "position"]
        constraints = [
            models.UniqueConstraint(fields=["round", "crop"], name="roundcrop_unique"),
            models.UniqueConstraint(fields=["round", "position"], name="roundcrop_position"),
        ]

    def __str__(self) -> str:
        return f"crop {self.crop_id} at {self.position} in round {self.round_id}"


class LabelKind(models.TextChoices):
    SPECIES = "species", "Species"
    NOT_ANIMAL = "not_animal", "Not an animal"
    UNKNOWN = "unknown", "Unknown"


class LabelOrigin(models.TextChoices):
    """Which human act made a label (every label is a human's; machine labels are predictions)."""

    VOTE = "vote", "Vote on a crop offered in a round"
    REVIEW = "review", "Admin's decision on a disagreement"
    VERIFIED = "verified", "Checked on the explore page (confirmed or corrected)"
    EVENT = "event", "One answer for a whole capture event"
    EMPTY_CHECK = "empty_check", "Box drawn on an image the detector called empty"
    IMPORTED = "imported", "Imported with the images (a Camtrap DP package)"


class Label(models.Model):
    """A human label. Rows are only ever added: a crop's label is its latest row."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="labels")
    # RESTRICT: deleting a labelled crop (or its image) fails; only deleting the whole project
    # removes its labels.
    crop = models.ForeignKey(Crop, on_delete=models.RESTRICT, related_name="labels")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    kind = models.CharField(max_length=20, choices=LabelKind.choices)
    species = models.ForeignKey(
        Species, null=True, blank=True, on_delete=models.PROTECT, related_name="labels"
    )
    round = models.ForeignKey(
        Round, null=True, blank=True, on_delete=models.SET_NULL, related_name="labels"
    )
    # An admin's decision on a crop the volunteers disagreed on: it overrides their votes.
    is_review = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    # Undo keeps the row (labels are never lost) and stops it counting as a vote.
    undone_at = models.DateTimeField(null=True, blank=True)
    # The client's idempotency key (``<key>:<crop id>``): a retried or double-clicked submission
    # with the same key stores nothing new.
    client_key = models.CharField(max_length=230, blank=True)
    # Ids of the project's attributes ticked yes; null where none were recorded (labels made
    # before attributes existed, or a client that does not send them), [] for all no.
    attributes = models.JSONField(null=True, blank=True)
    # Provenance: the act that made it, and the decision it belongs to (labels made by one act on
    # many crops, an event's answer or a bulk check, share it and are undone together).
    origin = models.CharField(max_length=20, choices=LabelOrigin.choices, default=LabelOrigin.VOTE)
    decision = models.UUIDField(null=True, blank=True, db_index=True)
    # What the label page showed and how long the person looked: the species ids suggested, in
    # order (null where the client did not say), the 1-based rank picked (null: not among them)
    # and the seconds from showing the crop to answering.
    suggestions = models.JSONField(null=True, blank=True)
    suggestion_rank = models.PositiveSmallIntegerField(null=True, blank=True)
    seconds = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(
                condition=(Q(kind="species") & Q(species__isnull=False))
                | (~Q(kind="species") & Q(species__isnull=True)),
                name="label_species_iff_kind_species",
            ),
            models.UniqueConstraint(
                fields=["user", "client_key"],
                condition=~Q(client_key=""),
                name="label_unique_client_key",
            ),
        ]
        indexes = [
            models.Index(fields=["crop", "-id"]),
            models.Index(fields=["user", "-created_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.kind} on crop {self.crop_id}"


class Consensus(models.Model):
    """A crop's human label as its votes decide it: one row per crop with any vote.

    Derived from the crop's labels (each volunteer's latest label not undone is one vote; an
    admin's review label decides) by the label services, never edited by hand. Everything that
    needs "the human label" (training, selection, progress, exports) reads it here.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting for more votes"
        DONE = "done", "Done"
        REVIEW = "review", "Disagreement: waiting for an admin"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="consensus")
    crop = models.OneToOneField(Crop, on_delete=models.CASCADE, related_name="consensus")
    status = models.CharField(max_length=10, choices=Status.choices)
    # The plurality (so far): its kind and species.
    kind = models.CharField(max_length=20, choices=LabelKind.choices)
    species = models.ForeignKey(
        Species, null=True, blank=True, on_delete=models.PROTECT, related_name="consensus"
    )
    votes = models.PositiveIntegerField()
    # The plurality's share of the votes (1.0 for a single vote or a review).
    agreement = models.FloatField()
    reviewed = models.BooleanField(default=False)
    # The newest label counted: the export's "labelled by / at" and retraining's change check.
    label = models.ForeignKey(Label, on_delete=models.PROTECT, related_name="+")
    # Attribute ids decided yes (each by a majority of the votes recording attributes), or
    # null when no vote recorded any.
    attributes = models.JSONField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [
            models.Index(fields=["project", "status"]),
            # The explore page's human labels in agreement order, read a page at a time
            # (activelearn.selectors_explore._explore_parts).
            models.Index(
                fields=["project", "status", "agreement", "crop"],
                name="consensus_status_agreement",
            ),
        ]

    def __str__(self) -> str:
        return f"crop {self.crop_id}: {self.kind} ({self.status})"


class CropClaim(models.Model):
    """A volunteer holds a crop of the open round for a while, so no one else is served it."""

    round = models.ForeignKey(Round, on_delete=models.CASCADE, related_name="claims")
    crop = models.ForeignKey(Crop, on_delete=models.CASCADE, related_name="claims")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    expires_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["round", "crop", "user"], name="claim_unique"),
        ]
        indexes = [models.Index(fields=["round", "crop", "expires_at"])]

    def __str__(self) -> str:
        return f"crop {self.crop_id} claimed by {self.user_id}"


class ClassifierVersion(models.Model):
    class Status(models.TextChoices):
        READY = "ready"
        FAILED = "failed"
        # Worse than its parent on the parent's audit labels (``gate``): the parent stays live.
        REJECTED = "rejected"

    project = models.ForeignKey(
        Project, on_delete=models.CASCADE, related_name="classifier_versions"
    )
    number = models.PositiveIntegerField()
    embedding_version = models.ForeignKey(
        EmbeddingVersion, on_delete=models.PROTECT, related_name="classifiers"
    )
    # The last closed round when it was trained, and the newest label it saw: a retrain with
    # nothing new is skipped, which makes the task safe to run twice.
    round = models.ForeignKey(
        Round, null=True, blank=True, on_delete=models.SET_NULL, related_name="classifiers"
    )
    last_label_id = models.BigIntegerField()
    # SHA-256 of the (crop, species) pairs it was trained on: an undo, a review or a species
    # merge changes the training set without a new label id, and must trigger a retrain.
    labels_digest = models.CharField(max_length=64, blank=True)
    n_labels = models.PositiveIntegerField()
    n_classes = models.PositiveIntegerField()
    algorithm = models.CharField(max_length=100, default="PyTorch MLP (150, 100)")
    seed = models.PositiveIntegerField()
    path = models.CharField(
        max_length=500, help_text="A name in the data store (projects.storage)."
    )
    # Calibration: probabilities are softened (> 1) or sharpened (< 1) by this temperature,
    # fitted on the held-out predictions of the cross-validation.
    temperature = models.FloatField(default=1.0)
    # Stored crop probabilities = (1 - w) * the crop's own + w * its capture event's mean
    # (activelearn.events); 0 for versions made before events were combined.
    event_weight = models.FloatField(default=0.0)
    # Why this classifier: each candidate's held-out scores and the one kept ("chosen").
    candidates = models.JSONField(default=dict, blank=True)
    # Whether it replaced the live classifier (its parent), and why: a paired comparison on
    # the audit labels of the parent (activelearn.audit.paired_gate), or the reason there was
    # none ("decision", "reason", "parent", "n", "parent_correct", "child_correct").
    gate = models.JSONField(default=dict, blank=True)
    train_seconds = models.FloatField(default=0.0)
    predict_seconds = models.FloatField(default=0.0)
    n_iter = models.PositiveIntegerField(default=0)
    converged = models.BooleanField(default=True)
    # Cross-validated on the labelled crops, folds grouped by capture event (null: too few
    # labels). One point of the learning curve per version.
    cv_accuracy = models.FloatField(null=True, blank=True)
    cv_top5_accuracy = models.FloatField(null=True, blank=True)
    cv_n_splits = models.PositiveIntegerField(default=0)
    cv_seconds = models.FloatField(default=0.0)
    # Confidence thresholding (PNAS): the lowest confidence at which cross-validated machine
    # labels reach ``target_accuracy``; null when no threshold does.
    target_accuracy = models.FloatField(null=True, blank=True)
    threshold = models.FloatField(null=True, blank=True)
    threshold_accuracy = models.FloatField(null=True, blank=True)
    # Per species {species id: threshold}: the lowest confidence at which that species' machine
    # labels reach ``target_accuracy`` on the audit labels pooled with the cross-validation
    # (activelearn.thresholds); species missing here use ``threshold``. Null: none computed.
    thresholds_per_species = models.JSONField(null=True, blank=True)
    # Share of the crops without a human label whose confidence is at or above the threshold.
    auto_accept_share = models.FloatField(null=True, blank=True)
    n_unlabelled = models.PositiveIntegerField(default=0)
    # How it was trained: class balance and the number of versions averaged (1 = itself).
    class_balance = models.CharField(max_length=20, default="none")
    ensemble_size = models.PositiveSmallIntegerField(default=1)
    # activelearn.metrics on the cross-validated predictions: the scalar summary, and per
    # species {species id: [accuracy or null, support]}.
    cv_metrics = models.JSONField(null=True, blank=True)
    cv_per_species = models.JSONField(null=True, blank=True)
    # The attribute head: attribute ids in output order, and its cross-validated scores.
    attribute_ids = models.JSONField(null=True, blank=True)
    attribute_metrics = models.JSONField(null=True, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.READY)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["project_id", "number"]
        constraints = [
            models.UniqueConstraint(fields=["project", "number"], name="classifier_unique"),
        ]

    def __str__(self) -> str:
        return f"classifier v{self.number}"


class Prediction(models.Model):
    """A machine label for one crop by one classifier version."""

    crop = models.ForeignKey(Crop, on_delete=models.CASCADE, related_name="predictions")
    classifier = models.ForeignKey(
        ClassifierVersion, on_delete=models.CASCADE, related_name="predictions"
    )
    species = models.ForeignKey(Species, on_delete=models.CASCADE, related_name="+")
    confidence = models.FloatField()
    # [[species_id, probability], ...] best first, up to five.
    top = models.JSONField(default=list)
    # {attribute id: probability of yes} from the attribute head; null without one.
    attributes = models.JSONField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["classifier", "crop"], name="prediction_unique"),
        ]
        # The explore page's "verify species X": one species' machine labels in confidence
        # order, read from the index a page at a time (activelearn.selectors_explore).
        indexes = [
            models.Index(
                fields=["classifier", "species", "confidence", "crop"],
                name="prediction_species_conf",
            ),
            # Every species' machine labels in confidence order (the explore page sorted or
            # filtered by confidence without a species).
            models.Index(fields=["classifier", "confidence", "crop"], name="prediction_conf"),
        ]

    def __str__(self) -> str:
        return f"crop {self.crop_id}: species {self.species_id} ({self.confidence:.2f})"


class EventPrediction(models.Model):
    """A capture event's machine label: the mean of its crops' probabilities (the paper's S.3).

    ``event`` is the images' sequence id, or ``image-<pk>`` for an image without one.
    """

    classifier = models.ForeignKey(
        ClassifierVersion, on_delete=models.CASCADE, related_name="event_predictions"
    )
    event = models.CharField(max_length=220)
    species = models.ForeignKey(Species, on_delete=models.CASCADE, related_name="+")
    confidence = models.FloatField()
    top = models.JSONField(default=list)
    n_crops = models.PositiveIntegerField()
    # {attribute id: mean probability of yes over the event's crops}; null without a head.
    attributes = models.JSONField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["classifier", "event"], name="event_prediction_unique"),
        ]

    def __str__(self) -> str:
        return f"event {self.event}: species {self.species_id} ({self.confidence:.2f})"


class AuditPrediction(models.Model):
    """The live classifier's machine label for an audit crop, stored once, when the crop is
    first offered: compared with the crop's human label it is an unbiased test of the model
    that was live (``activelearn.audit``). Made by the machine, so it records the model
    version, the round and the round's strategy."""

    round = models.ForeignKey(Round, on_delete=models.CASCADE, related_name="audit_predictions")
    crop = models.ForeignKey(Crop, on_delete=models.CASCADE, related_name="audit_predictions")
    classifier = models.ForeignKey(
        ClassifierVersion, on_delete=models.CASCADE, related_name="audit_predictions"
    )
    strategy = models.CharField(max_length=30)
    species = models.ForeignKey(Species, on_delete=models.CASCADE, related_name="+")
    confidence = models.FloatField()
    # The auto-accept threshold for that species at that moment, and whether the machine
    # label reached it (it would have been auto-accepted had no one labelled the crop).
    threshold = models.FloatField(null=True, blank=True)
    auto_accepted = models.BooleanField()
    offered_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["round", "crop"], name="audit_prediction_unique"),
        ]
        indexes = [models.Index(fields=["classifier"])]

    def __str__(self) -> str:
        return f"audit of crop {self.crop_id} by classifier {self.classifier_id}"


class EmptyCheck(models.Model):
    """One detector-empty image of a check sample, and a volunteer's answer: is there an animal?

    A sample is drawn by an admin (stratified by camera, ``activelearn.empties``); each image
    is checked once. ``has_animal`` is None until answered; True means the detector missed an
    animal (the volunteer then draws its box, ``detector.services.box_draw``).
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="empty_checks")
    image = models.OneToOneField(Image, on_delete=models.CASCADE, related_name="empty_check")
    # The image's camera when drawn (its stratum) and the seed of the draw, for the record.
    camera = models.CharField(max_length=300, blank=True)
    seed = models.PositiveIntegerField()
    drawn_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    drawn_at = models.DateTimeField(auto_now_add=True)
    has_animal = models.BooleanField(null=True)
    answered_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    answered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"empty check of image {self.image_id}: {self.has_animal}"


class CountCorrection(models.Model):
    """An admin's count of one species in one capture event, replacing the count derived from
    the crops' labels in the exports (which say it was corrected). The latest one holds."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="count_corrections")
    # The capture event as the exports name it (``annotator.exports.crop_event``).
    event = models.CharField(max_length=300)
    species = models.ForeignKey(Species, on_delete=models.CASCADE, related_name="+")
    count = models.PositiveIntegerField()
    # The derived count it replaced when it was made.
    previous = models.PositiveIntegerField(null=True, blank=True)
    corrected_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    corrected_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "event", "species"], name="count_correction_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.count} {self.species_id} in {self.event}"
