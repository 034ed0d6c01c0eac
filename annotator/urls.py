from allauth.account import views as account_views
from django.contrib import admin
from django.urls import include, path, register_converter

from annotator.api.api import api
from annotator.numbers import IdConverter
from annotator.views import (
    deployments,
    empties,
    explore,
    exports,
    files,
    guide,
    invitations,
    label_event,
    labelling,
    manage,
    onboard,
    predictions,
    project,
    tokens,
)

# Ids in URLs are <id:...>: bounded to what the database stores (a larger one is a 404).
register_converter(IdConverter, "id")

urlpatterns = [
    path("", project.project_list, name="project_list"),
    # django-allauth's login and logout under the names the templates and tests use; the rest
    # of its account pages (sign-up, password reset by e-mail, ...) under accounts/ too.
    path("accounts/login/", account_views.login, name="login"),
    path("accounts/logout/", account_views.logout, name="logout"),
    path("accounts/", include("allauth.account.urls")),
    path("invite/<str:token>/", invitations.invitation, name="invitation"),
    path("admin/", admin.site.urls),
    path("api/v1/", api.urls),
    path("account/tokens/", tokens.api_tokens, name="api_tokens"),
    path(
        "account/tokens/<id:token_id>/revoke/",
        tokens.api_token_revoke_view,
        name="api_token_revoke",
    ),
    path("projects/new/", onboard.project_new, name="project_new"),
    path("p/<slug:slug>/import/", onboard.project_import, name="project_import"),
    path("p/<slug:slug>/import/folder/", onboard.import_folder_start, name="import_folder_start"),
    path("p/<slug:slug>/import/upload/", onboard.import_upload, name="import_upload"),
    path("p/<slug:slug>/import/bucket/", onboard.import_bucket_start, name="import_bucket_start"),
    path("p/<slug:slug>/", project.project_detail, name="project_detail"),
    path("p/<slug:slug>/rounds/", project.project_rounds, name="project_rounds"),
    path("p/<slug:slug>/model/", project.project_model, name="project_model"),
    path("p/<slug:slug>/data/", project.project_data, name="project_data"),
    path("p/<slug:slug>/predictions/", predictions.predictions, name="predictions"),
    path("p/<slug:slug>/settings/", project.project_settings, name="project_settings"),
    path("p/<slug:slug>/exports/", project.project_exports, name="project_exports"),
    path("p/<slug:slug>/status.json", project.project_status_json, name="project_status_json"),
    path("p/<slug:slug>/members/", manage.members, name="members"),
    path("p/<slug:slug>/invitations/", manage.invitation_create_view, name="invitation_create"),
    path(
        "p/<slug:slug>/invitations/<id:invitation_id>/revoke/",
        manage.invitation_revoke_view,
        name="invitation_revoke",
    ),
    path(
        "p/<slug:slug>/members/<id:membership_id>/role/",
        manage.member_role_view,
        name="member_role",
    ),
    path(
        "p/<slug:slug>/members/<id:membership_id>/remove/",
        manage.member_remove_view,
        name="member_remove",
    ),
    path("p/<slug:slug>/species/", manage.species, name="species"),
    path("p/<slug:slug>/species/add/", manage.species_add_view, name="species_add"),
    path(
        "p/<slug:slug>/species/<id:species_id>/rename/",
        manage.species_rename_view,
        name="species_rename",
    ),
    path("p/<slug:slug>/species/merge/", manage.species_merge_view, name="species_merge"),
    path(
        "p/<slug:slug>/species/<id:species_id>/taxonomy/",
        manage.species_taxonomy_view,
        name="species_taxonomy",
    ),
    path("p/<slug:slug>/species/import/", manage.species_import_view, name="species_import"),
    path("p/<slug:slug>/attributes/add/", manage.attribute_add_view, name="attribute_add"),
    path(
        "p/<slug:slug>/attributes/<id:attribute_id>/update/",
        manage.attribute_update_view,
        name="attribute_update",
    ),
    path(
        "p/<slug:slug>/attributes/<id:attribute_id>/remove/",
        manage.attribute_remove_view,
        name="attribute_remove",
    ),
    path("p/<slug:slug>/rounds/start/", project.round_start_view, name="round_start"),
    path("p/<slug:slug>/learning/", project.learning_settings_view, name="learning_settings"),
    path(
        "p/<slug:slug>/classifier/retrain/",
        project.classifier_retrain_start,
        name="classifier_retrain_start",
    ),
    path("p/<slug:slug>/detection/start/", project.detection_start, name="detection_start"),
    path("p/<slug:slug>/thresholds/", project.thresholds_update, name="thresholds_update"),
    path(
        "p/<slug:slug>/embedding/finetune/",
        project.embedding_finetune_start,
        name="embedding_finetune_start",
    ),
    path("p/<slug:slug>/label/", labelling.label, name="label"),
    path("p/<slug:slug>/label/grid/", labelling.label_grid, name="label_grid"),
    path("p/<slug:slug>/label/event/", label_event.label_event, name="label_event"),
    path("p/<slug:slug>/label/undo/", labelling.label_undo_view, name="label_undo"),
    path("p/<slug:slug>/guide/", guide.field_guide, name="field_guide"),
    path("p/<slug:slug>/review/", labelling.review, name="review"),
    path("p/<slug:slug>/consensus/", labelling.consensus_settings, name="consensus_settings"),
    path(
        "p/<slug:slug>/export/crops.csv",
        exports.export_table_csv,
        {"table": "crops"},
        name="export_csv",
    ),
    path(
        "p/<slug:slug>/export/images.csv",
        exports.export_table_csv,
        {"table": "images"},
        name="export_images_csv",
    ),
    path(
        "p/<slug:slug>/export/events.csv",
        exports.export_table_csv,
        {"table": "events"},
        name="export_events_csv",
    ),
    path("p/<slug:slug>/export/coco.json", exports.export_coco, name="export_coco"),
    path("p/<slug:slug>/export/metrics.json", exports.export_metrics, name="export_metrics"),
    path("p/<slug:slug>/exports/files/", exports.export_job_start, name="export_job_start"),
    path(
        "p/<slug:slug>/exports/files/<id:export_id>/download",
        exports.export_file_download,
        name="export_file_download",
    ),
    path(
        "p/<slug:slug>/exports/files/<id:export_id>/delete/",
        exports.export_file_delete_view,
        name="export_file_delete",
    ),
    path("p/<slug:slug>/export/camtrap-dp/", exports.camtrap_dp_form, name="camtrap_dp_form"),
    path(
        "p/<slug:slug>/export/camtrap-dp.zip", exports.export_camtrap_dp, name="export_camtrap_dp"
    ),
    path("p/<slug:slug>/empties/", empties.empties, name="empties"),
    path("p/<slug:slug>/empties/answer/", empties.empty_answer, name="empty_answer"),
    path("p/<slug:slug>/empties/sample/", empties.empty_sample_view, name="empty_sample"),
    path("p/<slug:slug>/images/<id:image_id>/boxes/", empties.image_boxes, name="image_boxes"),
    path("p/<slug:slug>/images/<id:image_id>/boxes/add/", empties.box_add_view, name="box_add"),
    path(
        "p/<slug:slug>/images/<id:image_id>/boxes/<id:detection_id>/drop/",
        empties.box_drop_view,
        name="box_drop",
    ),
    path(
        "p/<slug:slug>/images/<id:image_id>/count/",
        empties.count_correct_view,
        name="count_correct",
    ),
    path("p/<slug:slug>/deployments/", deployments.deployments, name="deployments"),
    path("p/<slug:slug>/deployments/add/", deployments.deployment_add_view, name="deployment_add"),
    path(
        "p/<slug:slug>/deployments/upload/",
        deployments.deployments_upload_view,
        name="deployments_upload",
    ),
    path(
        "p/<slug:slug>/deployments/<id:deployment_pk>/edit/",
        deployments.deployment_edit_view,
        name="deployment_edit",
    ),
    path(
        "p/<slug:slug>/deployments/<id:deployment_pk>/delete/",
        deployments.deployment_delete_view,
        name="deployment_delete",
    ),
    path("p/<slug:slug>/explore/", explore.explore, name="explore"),
    path("p/<slug:slug>/explore/verify/", explore.explore_verify, name="explore_verify"),
    path("p/<slug:slug>/explore/undo/", explore.explore_undo, name="explore_undo"),
    path("p/<slug:slug>/explore/settings/", explore.explore_settings, name="explore_settings"),
    path("p/<slug:slug>/explore/crops/<id:crop_id>/", explore.explore_crop, name="explore_crop"),
    path("p/<slug:slug>/crops/<id:crop_id>.jpg", files.crop_file, name="crop_file"),
    path("p/<slug:slug>/images/<id:image_id>", files.image_file, name="image_file"),
]
