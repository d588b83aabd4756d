from chat import views
from django.contrib.auth import views as auth_views
from django.urls import path

urlpatterns = [
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("chat/<int:conversation_id>/", views.chat, name="chat"),
    path("chat/<int:conversation_id>/async/", views.chat_async, name="chat-async"),
    path("chat/<int:conversation_id>/stream/", views.chat_stream, name="chat-stream"),
    path("health/", views.health, name="health"),
]
