"""A small Flask chat app: a login, a chat view that calls an LLM, a Celery task that calls it
again. It mirrors the Django example; everything that differs between the demo, the tests and
a deployment comes from the environment.
"""

import os
from pathlib import Path

from celery import Celery, Task
from flask import Flask

from respan_flask import Respan

from . import auth, views

respan = Respan()


def create_app() -> Flask:
    app = Flask(__name__)
    data_dir = Path(os.environ.get("CHAT_DATA_DIR", Path(__file__).parent.parent / ".data"))
    app.config.from_mapping(
        SECRET_KEY=os.environ.get("FLASK_SECRET_KEY", "example-only-not-secret"),
        # Without RESPAN_API_KEY (here or in the environment) traces go to the local store.
        RESPAN_ENVIRONMENT=os.environ.get("CHAT_ENVIRONMENT", "development"),
        RESPAN_METADATA={"service": "chat-api"},
        RESPAN_SERVICE_NAME="chat-api",
        RESPAN_SKIP_PATHS=["/health/"],  # static files are skipped without saying
        # "tracing", "gateway" (LLM calls through the Respan gateway) or "both".
        RESPAN_MODE=os.environ.get("RESPAN_MODE", "tracing"),
        CELERY=celery_config(data_dir),
    )
    respan.init_app(app)
    auth.login_manager.init_app(app)
    app.register_blueprint(auth.blueprint)
    app.register_blueprint(views.blueprint)
    celery_init_app(app)
    return app


def celery_config(data_dir: Path) -> dict:
    broker = os.environ.get("CELERY_BROKER_URL", "filesystem://")
    config = {
        "broker_url": broker,
        "task_ignore_result": True,
        "task_default_queue": os.environ.get("CELERY_TASK_DEFAULT_QUEUE", "celery"),
        "worker_hijack_root_logger": False,
    }
    if broker == "filesystem://":
        queue = data_dir / "broker"
        queue.mkdir(parents=True, exist_ok=True)
        config["broker_transport_options"] = {
            "data_folder_in": str(queue),
            "data_folder_out": str(queue),
            "control_folder": str(data_dir / "control"),
            "store_processed": False,
        }
    return config


def celery_init_app(app: Flask) -> Celery:
    """Flask's documented Celery pattern: tasks run inside the application context."""

    class FlaskTask(Task):
        def __call__(self, *args, **kwargs):
            with app.app_context():
                return self.run(*args, **kwargs)

    celery_app = Celery(app.name, task_cls=FlaskTask)
    celery_app.config_from_object(app.config["CELERY"])
    celery_app.set_default()
    app.extensions["celery"] = celery_app
    return celery_app
