"""Respan tracing for Flask.

    from respan_flask import Respan

    app = Flask(__name__)
    app.config["RESPAN_ENVIRONMENT"] = "production"
    Respan(app)                  # or: respan = Respan(); respan.init_app(app)

Settings come from `app.config` keys `RESPAN_*` (see `respan_flask.extension`).
"""

from .extension import Respan

__all__ = ["Respan"]
