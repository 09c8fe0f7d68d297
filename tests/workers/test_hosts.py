"""Two hosts, honestly: a worker on a second "host" of its own, reaching the services over a link.

The second host is a network namespace with its own UTS namespace (its own hostname), joined to
this machine by a veth pair, a /30 of 10.x.y.z that the test assigns. It has its own loopback, and
no route but the link: Redis and PostgreSQL, bound to 127.0.0.1 here, are reached through TCP
forwarders bound to this side's end of the link (``10.x.y.1``). No packet leaves this machine, yet
every byte the second host's worker exchanges with the services crosses the link, which the test
can pull like a cable.

Needs root and iproute2 (``ip netns``) and util-linux (``unshare``); without them the tests skip,
unless ``HPO_REQUIRE_SERVICES=1`` (CI, which runs them as root), which makes that a failure.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa

from hpo.storage import Storage
from tests.invariants import check_study
from tests.services import unavailable
from tests.tcp_proxy import TcpProxy

from .conftest import FAST_ENV, ROOT, Worker, Workers, wait_for, write_study, write_synthetic_study
from .test_faults import one_optuna_trial_per_trial, snapshot, submit, wait_finished

pytestmark = pytest.mark.services

_made = 0  # namespaces this process made: names and subnets stay unique within a run


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10, check=check)


def _free_subnet() -> ipaddress.IPv4Network:
    """A /30 in 10.224.0.0/11 no interface of this machine uses, picked from this process's pid (two
    sessions on the machine differ in pid) and a counter."""
    used = [
        ipaddress.ip_interface(word).network
        for line in _ip("-4", "-o", "addr").stdout.splitlines()
        for word in line.split()
        if "/" in word and word[0].isdigit()
    ]
    block = ipaddress.ip_network("10.224.0.0/11")
    for k in range(64):
        index = (os.getpid() * 64 + _made * 8 + k) % (block.num_addresses // 4)
        net = ipaddress.ip_network(f"{block.network_address + 4 * index}/30")
        if not any(net.overlaps(u) for u in used):
            return net
    raise AssertionError("no free /30 in 10.224.0.0/11")


@dataclass
class Host:
    """The second host: its namespace, hostname, link, and the forwarders that serve it."""

    hostname: str
    netns: str
    link: str  # this side's end of the veth pair
    address: str  # this side's address on the link: what the second host dials
    redis: TcpProxy
    postgres: TcpProxy

    def prefix(self, *, hide: Path | None = None) -> list[str]:
        """The command prefix that runs a program on the second host (it execs: same pid).

        ``hide`` also gives it a mount namespace with an empty tmpfs over that directory (a
        test's own, where this host keeps its files): they are not on the second host. Only it:
        the code and the interpreter, wherever the checkout is, are the second host's too.
        """
        script = 'hostname "$0" && exec "$@"'
        unshare = ["unshare", "--uts"]
        if hide is not None:
            script = f'hostname "$0" && mount -t tmpfs hpo-host2 "{hide}" && exec "$@"'
            unshare.append("--mount")  # a private copy of the mount table: the tmpfs is only there
        return ["ip", "netns", "exec", self.netns, *unshare, "sh", "-c", script, self.hostname]

    def run(
        self, *cmd: str, timeout: float = 30, hide: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, **FAST_ENV}
        argv = [*self.prefix(hide=hide), *cmd]
        return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)

    def broker_url(self, db: int) -> str:
        return f"redis://{self.address}:{self.redis.port}/{db}"

    def database_url(self, local: str) -> str:
        url = sa.engine.make_url(local).set(host=self.address, port=self.postgres.port)
        return url.render_as_string(hide_password=False)

    def unplug(self) -> None:
        """Pull the cable: this side's end of the link goes down. Packets to and from the second
        host are dropped, with no reset: its connections hang as on a dead network."""
        _ip("link", "set", self.link, "down")

    def plug(self) -> None:
        _ip("link", "set", self.link, "up")


@pytest.fixture
def host2(workers: Workers) -> Iterator[Host]:
    """A second host for this test; its processes are killed and its link and namespace deleted
    at teardown, whatever happened. (Depends on ``workers``: it is torn down first.)"""
    global _made
    if os.geteuid() != 0:
        unavailable("a second host (a network namespace) needs root")
    if not (shutil.which("ip") and shutil.which("unshare")):
        unavailable("a second host needs iproute2 (ip netns) and unshare")
    _made += 1
    tag = f"{os.getpid()}-{_made}"  # a pid has at most 7 digits
    netns, link, peer = f"hpo-t-{tag}", f"hpoh{tag}", f"hpon{tag}"  # interface names <= 15 chars
    net = _free_subnet()
    near, far = (str(a) for a in net.hosts())
    proxies: list[TcpProxy] = []
    made = _ip("netns", "add", netns, check=False)
    if made.returncode != 0:
        unavailable(f"ip netns add failed: {made.stderr.strip()}")
    try:
        _ip("link", "add", link, "type", "veth", "peer", "name", peer, "netns", netns)
        _ip("addr", "add", f"{near}/30", "dev", link)
        _ip("link", "set", link, "up")
        _ip("-n", netns, "addr", "add", f"{far}/30", "dev", peer)
        _ip("-n", netns, "link", "set", peer, "up")
        _ip("-n", netns, "link", "set", "lo", "up")
        pg = sa.engine.make_url(workers.db)
        redis_port = int(workers.broker.split(":")[2].split("/")[0])
        proxies += [TcpProxy(redis_port, listen_host=near), TcpProxy(pg.port or 5432, listen_host=near)]
        yield Host(f"hpo-h2-{tag}", netns, link, near, *proxies)
    finally:
        # Every process in the namespace is one this test started there.
        pids = _ip("netns", "pids", netns, check=False).stdout.split()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        for proxy in proxies:
            proxy.cut()
        _ip("link", "del", link, check=False)  # also deletes the peer
        _ip("netns", "del", netns, check=False)


def _reach(host: Host, address: str, port: int) -> str:
    """What connecting from the second host to ``address:port`` gives: ``ok`` or the error's name."""
    code = (
        "import socket, sys\n"
        "try:\n"
        f"    socket.create_connection(({address!r}, {port}), timeout=2).close(); print('ok')\n"
        "except OSError as exc:\n"
        "    print(type(exc).__name__)\n"
    )
    return host.run(sys.executable, "-c", code).stdout.strip()


def _hosts_of(trials: Sequence) -> set[str]:
    """The hosts whose pool processes ran trials (a claim is ``host:pid:celery``)."""
    return {t.worker.split(":")[0] for t in trials}


def _one_worker_on_each(workers: Workers, host2: Host, db_query: str = "") -> tuple[Worker, Worker]:
    """A worker of one pool process on this host and one on the second, started together (each
    takes seconds to start); the second's URLs are the link's."""
    broker = host2.broker_url(int(workers.broker.rsplit("/", 1)[1]))
    db = host2.database_url(workers.db) + db_query
    (near,) = workers.start(1, concurrency=1, wait=False)
    (far,) = workers.start(
        1, concurrency=1, wait=False, prefix=host2.prefix(), broker=broker, HPO_DATABASE_URL=db
    )
    for worker in (near, far):
        workers.wait_ready(worker, 1)
    return near, far


# ---------------------------------------------------------------------------------------------


def test_a_study_runs_on_workers_of_two_hosts(
    tmp_path: Path, workers: Workers, storage: Storage, study_name: str, host2: Host
) -> None:
    # The second host is another host as far as the services go: its own name, its own loopback
    # (nothing listens on its 127.0.0.1:6379), no route but the link.
    assert host2.run("hostname").stdout.strip() == host2.hostname != socket.gethostname()
    assert _reach(host2, "127.0.0.1", 6379) == "ConnectionRefusedError"
    routes = host2.run("ip", "-4", "route").stdout.strip().splitlines()
    link_net = str(ipaddress.ip_interface(f"{host2.address}/30").network)
    assert len(routes) == 1 and routes[0].startswith(link_net), routes
    assert _reach(host2, host2.address, host2.redis.port) == "ok"

    _near, far = _one_worker_on_each(workers, host2)
    path = write_study(tmp_path / "s.yaml", study_name, t0=6, t1=2, e0=10, epochs=15, batch_size=10)
    submit(path, workers, wait=True)

    facts = check_study(storage, study_name)
    one_optuna_trial_per_trial(storage, study_name)
    hosts = _hosts_of(facts["trials"])
    assert hosts == {socket.gethostname(), host2.hostname}, hosts
    # The second host's worker is a node of that host, and did all of its talking over the link.
    assert f"@{host2.hostname} ready." in far.text()
    assert host2.redis.accepted > 0 and host2.postgres.accepted > 0


def test_sqlite_on_the_second_host_is_refused(tmp_path: Path, workers: Workers, host2: Host) -> None:
    """The study's SQLite file is on this host; the second host has its own filesystem, where it is
    not: its worker refuses to start, with one line that names the option and says what to use."""
    db_file = tmp_path / "study.db"
    Storage(f"sqlite:///{db_file}").upgrade()
    broker = host2.broker_url(int(workers.broker.rsplit("/", 1)[1]))
    assert host2.run("test", "-e", str(db_file), hide=tmp_path).returncode == 1  # not there
    proc = host2.run(
        sys.executable, "-m", "hpo", "worker", "--broker", broker, "--db", f"sqlite:///{db_file}",
        hide=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: --db: ") and "PostgreSQL" in lines[0], lines[0]
    assert str(db_file) in lines[0], lines[0]


def _on_host(storage: Storage, name: str, hostname: str):
    study = storage.get_study(name)
    running = storage.trials(study.id, states=("RUNNING",))
    mine = [t for t in running if t.worker and t.started_at and t.worker.startswith(f"{hostname}:")]
    return mine[0] if mine else None


def test_pulling_the_second_hosts_cable_mid_trial(
    tmp_path: Path, workers: Workers, storage: Storage, study_name: str, host2: Host
) -> None:
    """The second host's cable is pulled while it trains a trial: to this host and its worker that
    is a worker lost, and the study completes as after a SIGKILL (tests/workers/test_faults.py).

    What the second host's worker does, and why that is the honest outcome: it is not killed. Its
    trial trains on (training needs no network), then cannot record its result: it retries for
    the rest of its lease and gives up with one line (recording late would be refused anyway:
    ``finish`` checks the claim's worker and attempt, and the trial is the other host's now). It
    stays up through the outage, and nothing it does, during it or after the cable is back,
    changes the finished study.

    Its database URL carries ``tcp_user_timeout`` (docs/deploy.md, "Two hosts"): a query on a
    connection whose packets vanish then fails in 3 s, not after the kernel's ~15 minutes of
    retransmissions, during which the pool process would hang rather than give up.
    """
    _near, far = _one_worker_on_each(workers, host2, db_query="?tcp_user_timeout=3000")
    # Synthetic trials of 8 s, whatever the machine's speed (a trained one of a few hundred digits
    # takes well under a second on a fast one): the cable is pulled well inside the second host's
    # first trial, and each worker, of one pool process, holds one of the first stage's two.
    path = write_synthetic_study(tmp_path / "s.yaml", study_name, t0=2, t1=1, epochs=20, epoch_seconds=0.4)
    submit(path, workers)
    victim = wait_for(lambda: _on_host(storage, study_name, host2.hostname), 30, "a trial on the second host")
    host2.unplug()
    assert _reach(host2, host2.address, host2.postgres.port) != "ok"  # the link is really dead

    wait_finished(storage, study_name, workers, timeout=90)
    facts = check_study(storage, study_name)
    one_optuna_trial_per_trial(storage, study_name)
    row = next(t for t in facts["trials"] if t.id == victim.id)
    # Taken over by this host once the lease lapsed: a second attempt, recorded by this host.
    assert row.state == "COMPLETE" and row.attempts == 2, (row.state, row.attempts)
    assert row.worker.startswith(f"{socket.gethostname()}:"), row.worker
    assert _hosts_of(facts["trials"]) == {socket.gethostname()}  # nothing of the second host's counted

    # The second host's worker gave up its trial by itself, in one line, and is still up.
    gave_up = f"trial {victim.number}: result not recorded"
    wait_for(lambda: gave_up in far.text(), 30, "the second host to give its trial up")
    assert far.text().count(gave_up) == 1
    assert far.proc.poll() is None, far.text()[-3000:]
    before = snapshot(storage, study_name)
    host2.plug()
    wait_for(lambda: _reach(host2, host2.address, host2.postgres.port) == "ok", 10, "the link back")
    time.sleep(2)  # its reaper's next passes reach the database again
    assert snapshot(storage, study_name) == before
    assert far.proc.poll() is None, far.text()[-3000:]
