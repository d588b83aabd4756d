from django.urls import path

from . import views

urlpatterns = [
    path("hello/", views.hello),
    path("items/<int:pk>/", views.item),
    path("me/", views.me),
    path("boom/", views.boom),
    path("unavailable/", views.unavailable),
    path("stream/", views.stream),
    path("work/", views.work),
]
