from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import path

from annotator import views

urlpatterns = [
    path("", views.project_list, name="project_list"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("p/<slug:slug>/", views.project_detail, name="project_detail"),
    path("p/<slug:slug>/rounds/start/", views.round_start_view, name="round_start"),
    path("p/<slug:slug>/learning/", views.learning_settings_view, name="learning_settings"),
    path(
        "p/<slug:slug>/classifier/retrain/",
        views.classifier_retrain_start,
        name="classifier_retrain_start",
    ),
    path("p/<slug:slug>/detection/start/", views.detection_start, name="detection_start"),
    path("p/<slug:slug>/thresholds/", views.thresholds_update, name="thresholds_update"),
    path(
        "p/<slug:slug>/embedding/finetune/",
        views.embedding_finetune_start,
        name="embedding_finetune_start",
    ),
    path("p/<slug:slug>/label/", views.label, name="label"),
    path("p/<slug:slug>/export/crops.csv", views.export_csv, name="export_csv"),
    path("p/<slug:slug>/crops/<int:crop_id>.jpg", views.crop_file, name="crop_file"),
    path("p/<slug:slug>/images/<int:image_id>", views.image_file, name="image_file"),
]
