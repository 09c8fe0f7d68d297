"""A per-process cache of resources that a forked child must not share (engines, Optuna storages).

A database engine holds pooled connections; a child made by ``fork`` that used its parent's would
interleave its traffic with the parent's on the same sockets. So each cache forgets its values in a
forked child (``os.register_at_fork(after_in_child=...)``), without closing what the parent still
uses, and the child makes its own on first use.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["ProcessCache"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class ProcessCache(Generic[K, V]):
    """Values by key, made on first use and kept for the process; a forked child starts empty.

    Thread-safe. Making a cache does no work: the fork hook is registered at the first
    :meth:`get_or_create`.

    Args:
        close: Releases a value that this process owns (:meth:`dispose`, :meth:`dispose_all`).
        abandon: Called on each value inherited by a forked child before the cache forgets it; it
            must leave the parent's resources alone (e.g. ``engine.dispose(close=False)``).
    """

    def __init__(self, close: Callable[[V], object], abandon: Callable[[V], object] | None = None) -> None:
        self._close = close
        self._abandon = abandon
        self._lock = threading.Lock()
        self._values: dict[K, V] = {}
        self._hooked = False

    def __len__(self) -> int:
        return len(self._values)

    def get_or_create(self, key: K, create: Callable[[], V]) -> V:
        """The value for ``key``, made by ``create()`` (once, under the lock) if there is none."""
        try:
            return self._values[key]  # the common case, without the lock (a dict read is atomic)
        except KeyError:
            pass
        with self._lock:
            if not self._hooked:
                self._register_fork_hook()
            if key not in self._values:
                self._values[key] = create()
            return self._values[key]

    def dispose(self, key: K) -> None:
        """Close and forget the value for ``key``, if any (the next use makes a new one)."""
        with self._lock:
            if key not in self._values:
                return
            value = self._values.pop(key)
        self._close(value)

    def dispose_all(self) -> None:
        """Close and forget every value."""
        with self._lock:
            values = list(self._values.values())
            self._values.clear()
        for value in values:
            self._close(value)

    def _register_fork_hook(self) -> None:
        if hasattr(os, "register_at_fork"):
            # A weak reference: the hook outlives the cache (hooks cannot be unregistered).
            ref = weakref.ref(self)

            def after_in_child() -> None:
                cache = ref()
                if cache is not None:
                    cache._after_fork_in_child()

            os.register_at_fork(after_in_child=after_in_child)
        self._hooked = True

    def _after_fork_in_child(self) -> None:
        # Another thread of the parent may have held the lock at the fork: it never releases it here.
        self._lock = threading.Lock()
        values = list(self._values.values())
        self._values.clear()
        if self._abandon is not None:
            for value in values:
                self._abandon(value)
