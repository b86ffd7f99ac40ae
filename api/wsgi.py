"""WSGI entry point: `gunicorn 'api.wsgi:app'`."""

from api.app import create_app
from editqueue import logs
from editqueue.config import get_settings

_settings = get_settings()
logs.configure(_settings.log_level, json_logs=_settings.log_format == "json")
app = create_app(_settings)
