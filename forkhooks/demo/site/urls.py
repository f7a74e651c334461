from django.urls import path

from . import views

urlpatterns = [
    path("health", views.health),
    path("echo", views.echo),
    path("dirty-echo", views.dirty_echo),
    path("slow", views.slow),
    path("slow/<str:seconds>", views.slow),
    path("fork-echo", views.fork_echo),
]
