"""Who a Flask request is for: the default customer and thread identifiers.

Both read only what the request already has: they never load a user the request did not
load, and never start a session for a visitor without one.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid

from flask import current_app, g, has_request_context, session

THREAD_KEY = "_respan_thread"


def logged_in_user_id() -> str | None:
    """Flask-Login's current user id, once the request has loaded the user.

    Flask-Login loads the user when `current_user` is first used and keeps it in
    `g._login_user`; reading it from there never costs the request a user query.
    """
    if not has_request_context():
        return None
    user = g.get("_login_user")
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
    if not has_request_context():
        return None
    current = session._get_current_object()
    session_id = getattr(current, "sid", None)
    if isinstance(session_id, str) and session_id:
        key = str(current_app.secret_key or "").encode()
        digest = hmac.new(key, b"respan_flask.thread:" + session_id.encode(), hashlib.sha256)
        return digest.hexdigest()[:32]
    if not current:
        return None
    # dict.get, unlike the session's own, does not mark the session accessed (Vary: Cookie).
    thread = dict.get(current, THREAD_KEY)
    if not thread:
        thread = current[THREAD_KEY] = uuid.uuid4().hex
    return thread
