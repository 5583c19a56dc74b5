"""clipsearch core: model, images, vector store, classification and job records.

Nothing in this package imports Flask or Celery.
"""

__version__ = "0.1.0"
