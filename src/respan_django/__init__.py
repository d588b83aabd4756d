"""Respan tracing for Django: add "respan_django" to INSTALLED_APPS and
"respan_django.middleware.RespanMiddleware" to MIDDLEWARE, after AuthenticationMiddleware.

Settings live in `settings.RESPAN` (see `respan_django.conf`).
"""
