"""The HTTP API: a Flask app factory, one blueprint per resource."""

from api.app import create_app

__all__ = ["create_app"]
