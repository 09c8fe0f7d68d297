"""Celery workers for hpo: an app factory and thin tasks that call into ``hpo``.

Start one with ``hpo worker`` (or ``celery -A workers.app:app worker``). Importing this package
creates no app and opens no connection.
"""

from __future__ import annotations

__all__: list[str] = []
