"""Bad data is bad input: found by `hpo validate` and before a local `hpo submit` writes anything.

Every case: exit code 2, one line on stderr naming the field at fault with its line:column in the
study file, nothing written (no database file), the file's contents never quoted; and the fixed
file then submits (no half-made study is left under its name).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from hpo.storage import Storage
from tests.cli import run_hpo

SECRET = "hunter2-s3cr3t"

STUDY = """\
name: data
seed: 1
dataset: {dataset}
model: {{hidden_sizes: {hidden}}}
training: {{epochs: 1, batch_size: 50}}
search:
  trials: 2
  parameters:
    lr: {{type: float, low: 1.0e-3, high: 1.0, log: true}}
"""


def _csv(tmp: Path, text: str) -> str:
    (tmp / "d.csv").write_text(text)
    return f"{{kind: csv, path: {tmp / 'd.csv'}}}"


def _mnist_dir(tmp: Path, images: bytes) -> str:
    folder = tmp / "mnist"
    folder.mkdir()
    (folder / "t10k-images-idx3-ubyte").write_bytes(images)
    (folder / "t10k-labels-idx1-ubyte").write_bytes(SECRET.encode())
    return f"{{kind: mnist, path: {folder}}}"


def _npz(tmp: Path, **arrays: np.ndarray) -> str:
    np.savez(tmp / "d.npz", **arrays)  # type: ignore[arg-type]
    return f"{{kind: npz, path: {tmp / 'd.npz'}}}"


GOOD_ROWS = "".join(f"{i % 7},{i % 5},{i % 3}\n" for i in range(60))

CASES: dict[str, tuple[Callable[[Path], str], str]] = {
    "passwd-like": (lambda t: _csv(t, f"root:{SECRET}:0:0:/root:/bin/bash\n"), "dataset.path"),
    "ragged rows": (lambda t: _csv(t, "a,b,label\n1,2,0\n3,4\n" + GOOD_ROWS), "dataset.path"),
    "text cell": (lambda t: _csv(t, f"a,b,label\n1,{SECRET},0\n3,4,1\n"), "dataset.path"),
    "one class": (lambda t: _csv(t, "".join(f"{i},{i},{SECRET}\n" for i in range(30))), "dataset.path"),
    "nan": (lambda t: _csv(t, "a,b,label\n1,nan,0\n" + GOOD_ROWS), "dataset.path"),
    "inf": (lambda t: _csv(t, "a,b,label\n1,inf,0\n" + GOOD_ROWS), "dataset.path"),
    "empty file": (lambda t: _csv(t, ""), "dataset.path"),
    "a directory as csv": (lambda t: f"{{kind: csv, path: {t}}}", "dataset.path"),
    "a device as csv": (lambda t: "{kind: csv, path: /dev/null}", "dataset.path"),
    "missing csv": (lambda t: f"{{kind: csv, path: {t / 'nope.csv'}}}", "dataset.path"),
    "subset beyond the data": (lambda t: "{kind: digits, subset: 100000}", "dataset.subset"),
    "missing mnist folder": (lambda t: f"{{kind: mnist, path: {t / 'nope'}}}", "dataset.path"),
    "mnist folder without IDX": (lambda t: f"{{kind: mnist, path: {t}}}", "dataset.path"),
    "mnist files not IDX": (lambda t: _mnist_dir(t, SECRET.encode() * 10), "dataset.path"),
    "npz without x and y": (
        lambda t: _npz(t, features=np.zeros((4, 2)), labels2=np.zeros(4)),
        "dataset.path",
    ),
    "csv label column not in header": (
        lambda t: _csv(t, "a,b,c\n" + GOOD_ROWS)[:-1] + ", label_column: label}",
        "dataset.label_column",
    ),
}


def _write(tmp: Path, dataset: str, hidden: str = "[8]") -> Path:
    path = tmp / "study.yaml"
    path.write_text(STUDY.format(dataset=dataset, hidden=hidden))
    return path


def _check_refused(proc: object, field: str, db: Path) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stderr)  # type: ignore[attr-defined]
    lines = proc.stderr.strip().splitlines()  # type: ignore[attr-defined]
    assert len(lines) == 1, proc.stderr  # type: ignore[attr-defined]
    assert re.match(rf"error: .*study\.yaml:\d+:\d+: {re.escape(field)}: ", lines[0]), lines[0]
    assert SECRET not in proc.stderr + proc.stdout  # type: ignore[attr-defined]
    assert not db.exists() and not list(db.parent.glob("*.db*"))


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_data_is_refused_before_anything_is_written(tmp_path: Path, case: str) -> None:
    make, field = CASES[case]
    work = tmp_path / "work"
    work.mkdir()
    path = _write(work, make(work))
    db = tmp_path / "hpo.db"
    _check_refused(run_hpo("validate", str(path)), field, db)
    _check_refused(
        run_hpo("submit", str(path), "--db", f"sqlite:///{db}", "--no-progress", "-w", "1"), field, db
    )


def test_the_fixed_file_then_submits(tmp_path: Path) -> None:
    """The failed submit left no study behind: the fixed file is not "a different spec"."""
    db = tmp_path / "hpo.db"
    bad = _write(tmp_path, "{kind: digits, subset: 100000}")
    _check_refused(
        run_hpo("submit", str(bad), "--db", f"sqlite:///{db}", "--no-progress"), "dataset.subset", db
    )
    good = _write(tmp_path, "{kind: digits, subset: 300}")
    proc = run_hpo("submit", str(good), "--db", f"sqlite:///{db}", "--no-progress", "-w", "1")
    assert proc.returncode == 0, proc.stderr
    assert Storage(f"sqlite:///{db}").get_study("data").state == "COMPLETE"


def test_a_network_that_cannot_fit_is_refused_with_its_estimate(tmp_path: Path) -> None:
    db = tmp_path / "hpo.db"
    path = _write(
        tmp_path, "{kind: digits}", hidden="[65536, 65536, 65536, 65536, 65536, 65536, 65536, 65536]"
    )
    for proc in (run_hpo("validate", str(path)), run_hpo("submit", str(path), "--db", f"sqlite:///{db}")):
        _check_refused(proc, "model.hidden_sizes", db)
        assert re.search(r"needs at least [\d.]+ GB .* more than this machine's [\d.]+ GB", proc.stderr)


def test_a_searched_width_that_cannot_fit_names_the_parameter(tmp_path: Path) -> None:
    path = tmp_path / "study.yaml"
    path.write_text(
        STUDY.format(dataset="{kind: digits}", hidden="[8, 8, 8, 8, 8, 8, 8, 8]").replace(
            "    lr: {type: float, low: 1.0e-3, high: 1.0, log: true}",
            "    lr: {type: float, low: 1.0e-3, high: 1.0, log: true}\n"
            "    width: {type: int, low: 16, high: 65536, log: true}",
        )
    )
    _check_refused(run_hpo("validate", str(path)), "search.parameters.width", tmp_path / "hpo.db")


def test_validate_without_data_checks_the_file_only(tmp_path: Path) -> None:
    path = _write(tmp_path, f"{{kind: csv, path: {tmp_path / 'on-the-workers.csv'}}}")
    proc = run_hpo("validate", str(path), "--no-data")
    assert proc.returncode == 0, proc.stderr
    assert "ok" in proc.stderr and not os.path.exists(tmp_path / "hpo.db")
