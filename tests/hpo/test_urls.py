"""Database and broker URLs: every malformed one is bad input, and no password is ever shown."""

from __future__ import annotations

import string
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from hpo import SpecError
from hpo._urls import (
    DATABASE_FORMS,
    InvalidURLError,
    check_broker_url,
    check_database_url,
    check_sqlite_file,
    redact_url,
)
from hpo.storage import Storage, optuna_storage

SECRET = "s3cr3t-pw"

BAD_DATABASE_URLS = [
    ("notaurl", "not a URL"),
    ("", "not a URL"),
    ("postgresql+psycopg:/u@h/db", "not a URL"),
    (" sqlite:///hpo.db", "not a URL"),
    ("postgresql+psycopg://u@h:abc/db", "the port is not a number"),
    (f"postgresql+psycopg://u@h:{SECRET}/db", "the port is not a number"),  # a URL missing its '@'
    ("postgresql+psycopg://u@h:5432#x/db", "the port is not a number"),  # SQLAlchemy's port
    ("postgresql+psycopg://u@h:99999/db", "port 99999 is not in 1..65535"),
    ("postgresql+psycopg://u@h:0/db", "port 0 is not in 1..65535"),
    ("postgresql+asyncpg://u@h/db", "unsupported driver 'asyncpg'"),
    ("postgresql+psycopg2://u@h/db", "unsupported driver 'psycopg2'"),
    ("sqlite+aiosqlite:///hpo.db", "unsupported driver 'aiosqlite'"),
    ("mysql://u@h/db", "unsupported database 'mysql'"),
    ("oracle+oracledb://u@h/db", "unsupported database 'oracle+oracledb'"),
    ("sqlite://", "in-memory"),
    ("sqlite:///:memory:", "in-memory"),
    ("sqlite:///file:x?mode=memory&uri=true", "in-memory"),
    ("sqlite://?mode=memory", "in-memory"),
    ("sqlite:///file::memory:?cache=shared&uri=true", "in-memory"),
    ("sqlite://host/hpo.db", "a SQLite URL has no host or user"),
    ("sqlite://#x", "a SQLite URL has no host or user"),
    (f"sqlite://u:{SECRET}@/hpo.db", "a SQLite URL has no host or user"),
    (f"postgresql+psycopg://u:{SECRET}/x@h/db", "the password contains '/'"),
    (f"postgresql+psycopg://u:{SECRET}@x@h/db", "the password contains '@'"),
    (f"postgresql+psycopg://u:{SECRET}#x@h/db", "the password contains '#'"),
    (f"postgresql+psycopg://u:{SECRET}?x@h/db", "the password contains '?'"),
    (f"postgresql+psycopg://u:{SECRET}[x@h/db", "the password contains '['"),
    (f"postgresql+psycopg://u:{SECRET}\nx@h/db", "the password contains '\\n'"),
    (f"postgresql+psycopg://us@er:{SECRET}@h/db", "the user contains '@'"),
]
GOOD_DATABASE_URLS = [
    ("sqlite:///hpo.db", "sqlite:///hpo.db"),
    ("sqlite:////abs/dir/hpo@1.db", "sqlite:////abs/dir/hpo@1.db"),
    ("sqlite:///a#b.db?timeout=5", "sqlite:///a#b.db?timeout=5"),
    ("sqlite+pysqlite:///hpo.db", "sqlite+pysqlite:///hpo.db"),
    ("postgresql+psycopg://u:p%40ss@h:5432/db", "postgresql+psycopg://u:p%40ss@h:5432/db"),
    ("postgresql+psycopg://u:pa:ss%zz@h/db", "postgresql+psycopg://u:pa:ss%zz@h/db"),  # read alike
    ("postgresql+psycopg://u@[::1]:5432/db", "postgresql+psycopg://u@[::1]:5432/db"),
    ("postgresql+psycopg:///db?host=/run/postgresql", "postgresql+psycopg:///db?host=/run/postgresql"),
    ("postgresql://u:pw@h:5432/db", "postgresql+psycopg://u:pw@h:5432/db"),
    ("postgres://u@h/db", "postgresql+psycopg://u@h/db"),
]
BAD_BROKER_URLS = [
    ("foo://x", "unsupported broker 'foo'"),
    ("amqp://guest@h//", "unsupported broker 'amqp'"),
    ("redis+socket:///tmp/redis.sock", "unsupported broker 'redis+socket'"),
    ("localhost:6379", "not a URL"),
    ("", "not a URL"),
    ("redis:///0", "no host"),
    (f"redis://:{SECRET}", "no host"),
    ("redis://h:abc/0", "the port is not a number"),
    (f"redis://h:{SECRET}/0", "the port is not a number"),
    ("redis://h:70000/0", "port 70000 is not in 1..65535"),
    ("redis://h:6379/abc", "Redis database 'abc' is not a number in 0..2147483647"),
    ("redis://h:6379/-1", "Redis database '-1'"),
    ("redis://h:6379/99999999999", "Redis database '99999999999'"),
    ("redis://h:6379/2147483648", "Redis database '2147483648'"),
    ("redis://h:6379/0/1", "Redis database '0/1'"),
    (f"redis://:{SECRET}@x@h:6379/0", "the password contains '@'"),
    (f"redis://:{SECRET}/x@h:6379/0", "the password contains '/'"),
    (f"redis://:{SECRET}#x@h:6379/0", "the password contains '#'"),
    (f"redis://:{SECRET}?x@h:6379/0", "the password contains '?'"),
    (f"rediss://user:{SECRET}]x@h:6380/0", "the password contains ']'"),
]
GOOD_BROKER_URLS = [
    "redis://127.0.0.1:6379/0",
    "redis://h",
    "redis://h/",
    "redis://h:6379/2147483647",
    "redis://[::1]:6379/15",
    "redis://:p%40ss%2Fw@h:6379/3",
    "rediss://user:pw@h:6380/1?ssl_cert_reqs=none",
]


def _check_error(exc: InvalidURLError, option: str, expected: str) -> None:
    message = str(exc)
    assert isinstance(exc, SpecError)  # the CLI maps it to exit code 2
    assert message.startswith(f"{option}: "), message
    assert expected in message, message
    assert "\n" not in message
    assert SECRET not in message
    assert exc.field == option


@pytest.mark.parametrize(("url", "expected"), BAD_DATABASE_URLS)
def test_bad_database_urls(url: str, expected: str) -> None:
    with pytest.raises(InvalidURLError) as info:
        check_database_url(url, option="--db")
    _check_error(info.value, "--db", expected)


@pytest.mark.parametrize(("url", "expected"), GOOD_DATABASE_URLS)
def test_good_database_urls_are_normalized(url: str, expected: str) -> None:
    assert check_database_url(url) == expected
    assert sa.engine.make_url(expected).get_dialect().driver in ("psycopg", "pysqlite")


@pytest.mark.parametrize(("url", "expected"), BAD_BROKER_URLS)
def test_bad_broker_urls(url: str, expected: str) -> None:
    with pytest.raises(InvalidURLError) as info:
        check_broker_url(url, option="HPO_BROKER_URL")
    _check_error(info.value, "HPO_BROKER_URL", expected)


@pytest.mark.parametrize("url", GOOD_BROKER_URLS)
def test_good_broker_urls_are_kept(url: str) -> None:
    assert check_broker_url(url) == url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("notaurl", "not a URL"),
        ("mysql://u@h/db", "unsupported database 'mysql'"),
        ("postgresql+psycopg://u@h:abc/db", "the port is not a number"),
        (f"postgresql+psycopg://u:{SECRET}@x@h/db", "the password contains '@'"),
        ("sqlite://", "in-memory"),
        ("sqlite:///:memory:", "in-memory"),
    ],
)
def test_storage_refuses_bad_urls_and_opens_nothing(
    url: str, expected: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InvalidURLError) as info:
        Storage(url)
    _check_error(info.value, "database URL", expected)
    assert list(tmp_path.iterdir()) == []


def test_storage_upgrade_command_refuses_a_bad_url(capsys: pytest.CaptureFixture[str]) -> None:
    from hpo.storage.__main__ import main

    assert main(["upgrade", "notaurl"]) == 2
    assert capsys.readouterr().err == f"error: database URL: not a URL: use {DATABASE_FORMS}\n"


def test_plain_postgresql_url_is_read_as_psycopg(postgres_url: str) -> None:
    plain = postgres_url.replace("postgresql+psycopg://", "postgresql://")
    storage = Storage(plain)
    assert storage.url == postgres_url  # hpo's engine and Optuna's storage get the same URL
    storage.upgrade()
    storage.check_schema()
    assert optuna_storage(storage.url).engine.dialect.driver == "psycopg"


def test_sqlite_files(tmp_path: Path) -> None:
    existing = tmp_path / "hpo.db"
    existing.touch()
    check_sqlite_file(f"sqlite:///{existing}", exists=True)
    check_sqlite_file(f"sqlite:///{tmp_path / 'new.db'}", exists=False)
    check_sqlite_file("postgresql+psycopg://u@h/db", exists=True)
    check_sqlite_file(f"sqlite:///file:{tmp_path / 'x.db'}?mode=ro&uri=true", exists=True)  # SQLite's own
    with pytest.raises(InvalidURLError, match=r"--db: no SQLite database .*new\.db"):
        check_sqlite_file(f"sqlite:///{tmp_path / 'new.db'}", option="--db", exists=True)
    with pytest.raises(InvalidURLError, match=r"directory of the SQLite file .*nodir"):
        check_sqlite_file(f"sqlite:///{tmp_path / 'nodir' / 'x.db'}", exists=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hpo.db"]


@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        ("redis://:pw@h:6379/0", "redis://:***@h:6379/0"),
        ("rediss://user:pw@host:6380/0?x=1", "rediss://user:***@host:6380/0?x=1"),
        ("postgresql+psycopg://u:pa@ss@h/db", "postgresql+psycopg://u:***@h/db"),
        ("postgresql+psycopg://u:pa/ss@h/db", "postgresql+psycopg://u:***@h/db"),
        ("redis://:pa/ss@h:6379/0", "redis://:***@h:6379/0"),  # urllib sees no password here
        ("redis://:pa#ss@h:6379/0", "redis://:***@h:6379/0"),
        ("redis://:pw@h:abc/0", "redis://:***@h:abc/0"),  # urllib raises on this port
        ("redis://us@er:pw@h", "redis://us@er:***@h"),
        ("u:pw@h/db", "u:***@h/db"),
        ("postgresql+psycopg:/u:pw@h/db", "postgresql+psycopg:***@h/db"),
        ("redis://h:6379/0?password=pw&x=1", "redis://h:6379/0?password=***&x=1"),
        (
            "postgresql+psycopg://h:5432/db?x=a@b",
            "postgresql+psycopg://h:***@b",
        ),  # too much, never too little
        ("notaurl", "notaurl"),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        (
            "postgresql+psycopg://postgres@127.0.0.1:5432/db",
            "postgresql+psycopg://postgres@127.0.0.1:5432/db",
        ),
        ("sqlite:///dir/x@y.db", "sqlite:///dir/x@y.db"),
    ],
)
def test_redact_url(url: str, redacted: str) -> None:
    assert redact_url(url) == redacted


TEMPLATES = [
    "postgresql+psycopg://user:{}@db.example:5432/hpo",
    "postgresql+psycopg://user:{}@/hpo?host=/run/postgresql",
    "redis://:{}@cache.example:6379/0",
    "rediss://user:{}@cache.example:6380/1?ssl_cert_reqs=none",
    "user:{}@db.example/hpo",  # no scheme
    "postgresql+psycopg:/user:{}@db.example/hpo",  # a slash missing
]
PASSWORDS = st.text(alphabet=string.printable, min_size=4, max_size=24) | st.builds(
    "".join, st.lists(st.sampled_from("/@#?:%[]ab"), min_size=4, max_size=12)
)


def _hidden(template: str, password: str) -> bool:
    # A password that is part of the rest of the URL cannot be told apart from it; nor can one
    # starting with '//' after a bare 'user:', which reads as the URL user://NAME@HOST.
    return password not in template.format("***") and not template.format(password).startswith("user://")


@settings(max_examples=300, deadline=None)
@given(template=st.sampled_from(TEMPLATES), password=PASSWORDS)
def test_redaction_never_shows_a_password(template: str, password: str) -> None:
    if not _hidden(template, password):
        return
    assert password not in redact_url(template.format(password))
    encoded = redact_url(template.format(quote(password, safe="")))
    assert password not in encoded and quote(password, safe="") not in encoded
    if "://" in template or template.startswith("user"):  # well formed: exactly the password
        assert encoded == template.format("***")


@settings(max_examples=300, deadline=None)
@given(template=st.sampled_from(TEMPLATES[:4]), password=PASSWORDS)
def test_checks_never_show_a_password_and_accept_it_encoded(template: str, password: str) -> None:
    check = check_broker_url if template.startswith("redis") else check_database_url
    if _hidden(template, password):
        try:
            check(template.format(password))
        except InvalidURLError as exc:
            assert password not in str(exc) and "\n" not in str(exc)
    url = check(template.format(quote(password, safe="")))
    # Every reader gets the password back: SQLAlchemy for databases, urllib for kombu and redis-py.
    if check is check_database_url:
        assert sa.engine.make_url(url).password == password
    else:
        assert unquote(urlsplit(url).password or "") == password


@settings(max_examples=300, deadline=None)
@given(
    text=st.text(max_size=60) | st.builds("{}://{}".format, st.sampled_from(["redis", "sqlite"]), st.text())
)
def test_checks_raise_only_invalid_url_errors(text: str) -> None:
    for check in (check_database_url, check_broker_url):
        try:
            check(text)
        except InvalidURLError as exc:
            assert "\n" not in str(exc)
