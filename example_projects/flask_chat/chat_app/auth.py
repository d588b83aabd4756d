"""Logging in with Flask-Login. The users live in memory: this is an example."""

import os

from flask import Blueprint, redirect, request
from flask_login import LoginManager, UserMixin, login_user
from werkzeug.security import check_password_hash, generate_password_hash

blueprint = Blueprint("auth", __name__)
login_manager = LoginManager()


class User(UserMixin):
    def __init__(self, user_id: str, username: str, password: str):
        self.id = user_id
        self.username = username
        self.password_hash = generate_password_hash(password)


USERS = {
    "1": User("1", "ada", os.environ.get("CHAT_PASSWORD", "correct-horse-battery-staple")),
}


@login_manager.user_loader
def load_user(user_id: str):
    return USERS.get(user_id)


@blueprint.route("/login/", methods=["GET", "POST"])
def login():
    if request.method == "GET":
        return '<form method="post"><input name="username"><input name="password" ' \
               'type="password"><button>Log in</button></form>'
    user = next((u for u in USERS.values() if u.username == request.form["username"]), None)
    if user is None or not check_password_hash(user.password_hash, request.form["password"]):
        return "wrong username or password", 403
    login_user(user)
    return redirect("/health/")
