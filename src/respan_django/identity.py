"""Who a request is for: the default customer and thread identifiers.

Both read only what the request already has: they never load a user or a session the
application did not load, never create or save a session, and so never add `Vary: Cookie`.
"""

from __future__ import annotations

import functools
from typing import Any

from django.conf import settings
from django.utils.crypto import salted_hmac
from django.utils.functional import LazyObject, empty


def authenticated_user_id(request: Any) -> str | None:
    """The authenticated user's primary key as a string, once the request has loaded the user.

    `request.user` is lazy: until the application (a view, a decorator such as
    `login_required`, or Django REST Framework's authentication) touches it, there is no user
    to report, and forcing it would cost the request a session and a user query.
    """
    user = request.__dict__.get("user")
    if isinstance(user, LazyObject):  # read past its proxying __getattribute__, in one step
        user = object.__getattribute__(user, "_wrapped")
        user = None if user is empty else user
    if user is None:  # an async view loads it with `await request.auser()`
        user = request.__dict__.get("_acached_user")
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    return str(user.pk)


def session_thread_id(request: Any) -> str | None:
    """A keyed one-way digest of the session key, or None without a session.

    The session key is a credential, so only this digest (keyed with SECRET_KEY) leaves the
    process. Reading the key does not load the session.
    """
    session_key = getattr(getattr(request, "session", None), "session_key", None)
    if not session_key:
        return None
    return _thread_digest(session_key, settings.SECRET_KEY)


@functools.lru_cache(maxsize=1024)
def _thread_digest(session_key: str, secret: str) -> str:
    # Every span of a request asks for it: one HMAC per session rather than one per span.
    return salted_hmac("respan_django.thread_identifier", session_key, secret).hexdigest()[:32]
