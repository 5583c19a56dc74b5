"""WSGI entry point for gunicorn: `gunicorn search_api.wsgi:app`."""

from search_api.app import create_app

app = create_app()
