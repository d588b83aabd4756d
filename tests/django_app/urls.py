from django.urls import path

from . import views

urlpatterns = [
    path("hello/", views.hello),
    path("items/<int:pk>/", views.item),
    path("me/", views.me),
    path("async-me/", views.async_me),
    path("fan-out/", views.fan_out),
    path("download/", views.download),
    path("boom/", views.boom),
    path("unavailable/", views.unavailable),
    path("kept/", views.kept),
    path("stream/", views.stream),
    path("work/", views.work),
    path("stream-work/", views.stream_work),
]
