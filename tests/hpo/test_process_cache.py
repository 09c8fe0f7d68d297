"""hpo._process_cache.ProcessCache: get-or-create, dispose, thread safety, empty in a forked child."""

from __future__ import annotations

import os
import threading
from unittest import mock

import pytest

from hpo._process_cache import ProcessCache


class Resource:
    def __init__(self, key: str) -> None:
        self.key = key
        self.closed = 0
        self.abandoned = 0


def _cache() -> ProcessCache[str, Resource]:
    def close(r: Resource) -> None:
        r.closed += 1

    def abandon(r: Resource) -> None:
        r.abandoned += 1

    return ProcessCache(close=close, abandon=abandon)


def test_get_or_create_makes_one_value_per_key() -> None:
    cache = _cache()
    made: list[str] = []

    def make(key: str) -> Resource:
        made.append(key)
        return Resource(key)

    a = cache.get_or_create("a", lambda: make("a"))
    assert cache.get_or_create("a", lambda: make("a")) is a
    b = cache.get_or_create("b", lambda: make("b"))
    assert b is not a and made == ["a", "b"] and len(cache) == 2


def test_a_failed_create_stores_nothing() -> None:
    cache = _cache()

    def fail() -> Resource:
        raise RuntimeError("no")

    with pytest.raises(RuntimeError):
        cache.get_or_create("a", fail)
    assert len(cache) == 0
    assert cache.get_or_create("a", lambda: Resource("a")).key == "a"


def test_dispose_closes_one_and_dispose_all_closes_the_rest() -> None:
    cache = _cache()
    a = cache.get_or_create("a", lambda: Resource("a"))
    b = cache.get_or_create("b", lambda: Resource("b"))
    c = cache.get_or_create("c", lambda: Resource("c"))
    cache.dispose("a")
    cache.dispose("a")  # gone already: nothing to do
    cache.dispose("missing")
    assert (a.closed, b.closed, c.closed) == (1, 0, 0) and len(cache) == 2
    assert cache.get_or_create("a", lambda: Resource("a")) is not a  # the next use makes a new one
    cache.dispose_all()
    assert (a.closed, b.closed, c.closed) == (1, 1, 1) and len(cache) == 0
    assert a.abandoned == b.abandoned == c.abandoned == 0


def test_threads_racing_on_a_key_share_one_value() -> None:
    cache = _cache()
    made: list[Resource] = []
    start = threading.Barrier(8)
    got: list[Resource] = []

    def make() -> Resource:
        made.append(Resource("k"))
        return made[-1]

    def worker() -> None:
        start.wait()
        got.append(cache.get_or_create("k", make))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(made) == 1 and all(r is made[0] for r in got) and len(got) == 8


def test_the_fork_hook_is_registered_at_first_use_only() -> None:
    with mock.patch.object(os, "register_at_fork") as register:
        cache = _cache()
        assert register.call_count == 0  # making a cache (at import) does no work
        cache.get_or_create("a", lambda: Resource("a"))
        cache.get_or_create("b", lambda: Resource("b"))
        assert register.call_count == 1


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_starts_empty_and_leaves_the_parents_values_open() -> None:
    cache = _cache()
    a = cache.get_or_create("a", lambda: Resource("a"))
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, and leave without running pytest's teardown
        try:
            fresh = cache.get_or_create("a", lambda: Resource("child"))
            ok = len(cache) == 1 and fresh is not a and fresh.key == "child"
            ok = ok and a.abandoned == 1 and a.closed == 0
            os.write(write, b"ok" if ok else f"{len(cache)} {a.abandoned} {a.closed}".encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        report = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert report == b"ok"
    # The parent keeps its value, untouched by the child's hook.
    assert cache.get_or_create("a", lambda: Resource("other")) is a
    assert (a.abandoned, a.closed) == (0, 0)
