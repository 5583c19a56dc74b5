"""Application services: the use cases between the transports (HTTP, Celery) and the core.

Built once per process from the settings; routes and tasks call them and nothing else.
"""
