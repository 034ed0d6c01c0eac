from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest
from django.utils import timezone

from projects.models import Image, Membership, Project, Species, WorkerHeartbeat


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 1


class SpeciesInline(admin.TabularInline):
    model = Species
    extra = 1


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "backbone", "round_size", "created_at"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [MembershipInline, SpeciesInline]
    # Changing these must re-derive (and for the geometry recut and re-embed) the crops, which the
    # project page's thresholds form queues; saved here they would leave the crops out of date.
    derived_fields = ("detection_threshold", "min_box_pixels", "crop_padding", "crop_shape")

    def get_readonly_fields(self, request: HttpRequest, obj: Project | None = None) -> list[str]:
        extra = list(self.derived_fields) if obj is not None else []
        return [*super().get_readonly_fields(request, obj), *extra]


@admin.register(Image)
class ImageAdmin(admin.ModelAdmin):
    list_display = ["file_name", "project", "seq_id", "frame_num", "is_empty", "count"]
    list_filter = ["project", "is_empty"]
    search_fields = ["file_name", "seq_id"]


@admin.register(WorkerHeartbeat)
class WorkerHeartbeatAdmin(admin.ModelAdmin):
    """The running workers, for operators: a heartbeat older than
    ``TRAPWISE_WORKER_LOST_SECONDS`` is a worker gone, whose tasks the others queue again.
    Written by the workers only."""

    list_display = ["node", "queues", "seen_at", "age", "started_at", "pid"]

    @admin.display(description="last beat")
    def age(self, obj: WorkerHeartbeat) -> str:
        return f"{max((timezone.now() - obj.seen_at).total_seconds(), 0):.0f} s ago"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
