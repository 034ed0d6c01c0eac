from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import path

from annotator.views import exports, files, labelling, project

urlpatterns = [
    path("", project.project_list, name="project_list"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("p/<slug:slug>/", project.project_detail, name="project_detail"),
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
    path("p/<slug:slug>/export/crops.csv", exports.export_csv, name="export_csv"),
    path("p/<slug:slug>/crops/<int:crop_id>.jpg", files.crop_file, name="crop_file"),
    path("p/<slug:slug>/images/<int:image_id>", files.image_file, name="image_file"),
]
