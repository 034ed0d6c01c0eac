from django.contrib import admin

from projects.models import Image, Membership, Project, Species


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


@admin.register(Image)
class ImageAdmin(admin.ModelAdmin):
    list_display = ["file_name", "project", "seq_id", "frame_num", "is_empty", "count"]
    list_filter = ["project", "is_empty"]
    search_fields = ["file_name", "seq_id"]
