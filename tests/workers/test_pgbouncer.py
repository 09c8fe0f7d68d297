"""Workers behind PgBouncer in transaction mode: many clients, a few server connections."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from hpo.storage import Storage
from tests.services import unavailable
from tests.workers.conftest import ConnectionPeaks, Workers, hpo, wait_for, write_synthetic_study

SERVER_POOL = 3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def pgbouncer(workers_pg_url: str, tmp_path: Path) -> Iterator[str]:
    """A PgBouncer in transaction mode in front of the workers' database, at most SERVER_POOL
    server connections; yields the URL clients use."""
    binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
    if not os.path.exists(binary):
        unavailable("pgbouncer is missing: apt-get install pgbouncer")
    url = sa.engine.make_url(workers_pg_url)
    # PgBouncer reaches the server over its Unix socket, so that the server's view of PgBouncer's
    # connections (client_addr NULL) is told apart from every TCP one: this test's monitor, and
    # any another test of this run left open.
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        sockets = str(conn.execute(sa.text("SHOW unix_socket_directories")).scalar_one())
    engine.dispose()
    socket_dir = sockets.split(",")[0].strip()
    if not socket_dir:
        unavailable("PostgreSQL listens on no Unix socket (unix_socket_directories is empty)")
    port = _free_port()
    (tmp_path / "users.txt").write_text(f'"{url.username}" ""\n')
    ini = tmp_path / "pgbouncer.ini"
    ini.write_text(
        f"[databases]\n{url.database} = host={socket_dir} port={url.port or 5432} dbname={url.database}\n"
        f"[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nauth_type = trust\n"
        f"auth_file = {tmp_path / 'users.txt'}\npool_mode = transaction\n"
        f"default_pool_size = {SERVER_POOL}\nmax_client_conn = 200\nunix_socket_dir =\n"
        "user = postgres\n"  # it will not run as root (it logs to stderr: pgbouncer.out)
    )
    out = (tmp_path / "pgbouncer.out").open("wb")
    proc = subprocess.Popen([binary, str(ini)], stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: socket.create_connection(("127.0.0.1", port), 0.5).close() or True, 10, "pgbouncer")
        yield url.set(port=port).render_as_string(hide_password=False)
    finally:
        proc.terminate()
        proc.wait(10)


def test_a_study_runs_through_pgbouncer_on_a_few_server_connections(
    tmp_path: Path, workers: Workers, storage: Storage, study_name: str, pgbouncer: str
) -> None:
    # Eight pool processes and their main process are nine clients of PgBouncer; the server sees
    # at most SERVER_POOL connections from it. Prepared statements off: a server connection
    # prepared by one transaction may serve another client's next one.
    workers.db = pgbouncer
    (w,) = workers.start(1, concurrency=8, HPO_DB_PREPARED_STATEMENTS="false")
    workers.wait_ready(w, concurrency=8)
    path = tmp_path / "s.yaml"
    write_synthetic_study(path, study_name, t0=30, t1=20)
    args = ["submit", str(path), "--broker", workers.broker, "--db", pgbouncer, "--no-progress", "--wait"]
    storage.dispose()  # this test's own pooled connections (direct, not through PgBouncer) closed
    with ConnectionPeaks(storage.url, "client_addr IS NULL AND backend_type = 'client backend'") as sampled:
        proc = hpo(*args, env={"HPO_QUEUE": workers.queue, "HPO_DB_PREPARED_STATEMENTS": "false"})
    peaks = sampled.peaks
    assert proc.returncode == 0, proc.stderr + workers.logs()[-4000:]
    study = storage.get_study(study_name)
    assert study.state == "COMPLETE", (study.state, study.reason)
    assert len(storage.trials(study.id, states=("COMPLETE",))) == 50
    # PgBouncer's server connections (the server's only Unix-socket ones), none of the nine
    # clients' own: its pool bounds them.
    assert 1 <= max(peaks) <= SERVER_POOL, max(peaks)
    log = w.text()
    assert "prepared statement" not in log and "OperationalError" not in log, log[-4000:]
