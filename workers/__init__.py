"""Celery app factory and thin tasks that call into ``hpo`` (filled by the distributed-workers issue)."""
