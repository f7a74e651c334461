from django.urls import path

from forkhooks.demo.site.urls import urlpatterns as demo

from . import views

urlpatterns = [
    *demo,
    path("dirty-echo", views.dirty_echo),
    path("slow", views.slow),
    path("slow/<str:seconds>", views.slow),
    path("fork-echo", views.fork_echo),
]
