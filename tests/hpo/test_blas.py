"""BLAS settings for training processes."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from hpo import _blas


@pytest.mark.parametrize("avx512", [True, False])
def test_threads_forced_and_best_kernel_chosen(monkeypatch: pytest.MonkeyPatch, avx512: bool) -> None:
    monkeypatch.setattr(_blas, "cpu_has_avx512", lambda: avx512)
    env = _blas.blas_environ(
        environ={"OPENBLAS_NUM_THREADS": "8", "OPENBLAS_CORETYPE": "Haswell", "KEEP": "x"}
    )
    assert all(env[var] == "1" for var in _blas.THREAD_VARS)  # a worker never oversubscribes
    assert env["KEEP"] == "x"
    # auto: AVX-512 kernels when the CPU has them; otherwise OpenBLAS detects by itself
    assert env.get("OPENBLAS_CORETYPE") == ("SkylakeX" if avx512 else None)


def test_inherit_and_explicit_choices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_blas, "cpu_has_avx512", lambda: True)
    base = {"OPENBLAS_CORETYPE": "Haswell"}
    assert (
        _blas.blas_environ(environ={**base, "HPO_BLAS_CORETYPE": "inherit"})["OPENBLAS_CORETYPE"] == "Haswell"
    )
    assert _blas.blas_environ(environ={**base, "HPO_BLAS_CORETYPE": "Zen"})["OPENBLAS_CORETYPE"] == "Zen"
    assert "OPENBLAS_CORETYPE" not in _blas.blas_environ(environ={"HPO_BLAS_CORETYPE": "inherit"})


def test_configure_keeps_user_thread_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    # configure_blas writes os.environ: register every variable it may touch with monkeypatch,
    # so they are restored (worker processes started by later tests inherit this environment).
    for var in (*_blas.THREAD_VARS, "OPENBLAS_CORETYPE"):
        if var in os.environ:
            monkeypatch.setenv(var, os.environ[var])
        else:
            monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "4")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    _blas.configure_blas()
    assert os.environ["OPENBLAS_NUM_THREADS"] == "4"
    assert os.environ["OMP_NUM_THREADS"] == "1"


def test_cli_entry_point_configures_blas_before_numpy_loads() -> None:
    """`hpo` sets BLAS up before NumPy loads, so OpenBLAS really runs one thread with the chosen kernel."""
    code = (
        "import sys; from hpo.cli import main; import hpo._blas as b; b.configure_blas();"
        "import numpy, threadpoolctl; info = threadpoolctl.threadpool_info()[0];"
        "print(info['num_threads'], info.get('architecture'))"
    )
    env = {k: v for k, v in os.environ.items() if k not in _blas.THREAD_VARS}
    env["OPENBLAS_CORETYPE"] = "Haswell"  # as this machine's environment sets it
    env.pop("HPO_BLAS_CORETYPE", None)  # the default (auto), not the test suite's inherit
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    threads, arch = proc.stdout.split()
    assert threads == "1"
    expected = "SkylakeX" if _blas.cpu_has_avx512() else "Haswell"
    assert arch.lower() == expected.lower()
