"""WSGI entry point for gunicorn: `gunicorn search_api.wsgi:app`.

It refuses to load (so gunicorn stops with "Worker failed to boot", exit code 3) when this process
listens on a non-loopback address while API_KEYS is unset and ALLOW_OPEN_BIND is not true: the same
rule as `clipsearch serve` and `clipsearch up`, for anyone who starts gunicorn by hand.
"""

import sys

from indexer.errors import StartupError
from indexer.settings import Settings
from search_api.app import create_app
from search_api.guard import check_bind, listening_addresses
from search_api.services import EXTENSION_KEY

settings = Settings()
try:
    for _address in listening_addresses():
        check_bind(_address, settings)
except StartupError as exc:
    print(f"error: {exc.message}", file=sys.stderr, flush=True)
    raise

app = create_app(settings)
# The Weaviate schema is ensured once here, at start-up, not per request (indexer/services/backends.py).
app.extensions[EXTENSION_KEY].start()
