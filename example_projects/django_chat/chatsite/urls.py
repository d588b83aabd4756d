from django.contrib.auth import views as auth_views
from django.urls import path

from chat import views

urlpatterns = [
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("chat/<int:conversation_id>/", views.chat, name="chat"),
    path("health/", views.health, name="health"),
]
