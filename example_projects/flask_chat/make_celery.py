"""The worker's entry point: `celery -A make_celery worker`."""

from chat_app import create_app

flask_app = create_app()
celery_app = flask_app.extensions["celery"]
