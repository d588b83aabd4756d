"""Who a Flask request is for: the default customer and thread identifiers.

Both read only what the request already has: they never load a user the request did not
load, and never start a session for a visitor without one.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from typing import Any

from flask import current_app, g
from flask.globals import request_ctx

THREAD_KEY = "_respan_thread"


def logged_in_user_id() -> str | None:
    """Flask-Login's current user id, once the request has loaded the user.

    Flask-Login loads the user when `current_user` is first used and keeps it in
    `g._login_user`; reading it from there never costs the request a user query.
    """
    try:
        user = g._get_current_object().get("_login_user")  # one lookup of the proxy
    except RuntimeError:  # outside a request
        return None
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    return str(user.get_id())


def session_thread_id() -> str | None:
    """An identifier of the visitor's session, or None for a visitor without one.

    A server-side session with an id (Flask-Session's `sid`) gives a keyed digest of that id:
    the id itself is a credential. Flask's own session is a signed cookie with no id, and its
    value is a credential too, so a random thread id is kept inside sessions that already
    hold something; an empty session is never started for the sake of tracing.
    """
    current = _session_without_access()
    if current is None:
        return None
    session_id = getattr(current, "sid", None)
    if isinstance(session_id, str) and session_id:
        key = str(current_app.secret_key or "").encode()
        digest = hmac.new(key, b"respan_flask.thread:" + session_id.encode(), hashlib.sha256)
        return digest.hexdigest()[:32]
    if not current:
        return None
    thread = dict.get(current, THREAD_KEY)
    if not thread:
        thread = current[THREAD_KEY] = uuid.uuid4().hex
    return thread


def _session_without_access() -> Any:
    """The request's session, read without marking it accessed.

    Flask adds `Vary: Cookie` to responses whose session was accessed; the `flask.session`
    proxy (and, since Flask 3.1, the request context's `session` property) marks it so. A
    session's own `get` does too, hence `dict.get` above.
    """
    try:
        context = request_ctx._get_current_object()
    except RuntimeError:  # outside a request
        return None
    return context.__dict__.get("_session", context.__dict__.get("session"))
