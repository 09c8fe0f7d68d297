"""Process-level BLAS settings for training processes.

They only take effect in a process that loads NumPy *after* they are set, so entry points apply
them before anything imports NumPy, and process pools pass them to the processes they start.
This module imports only the standard library, and ``import hpo`` loads nothing, so
``hpo._blas`` can be imported first thing.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import cache
from pathlib import Path

__all__ = [
    "THREAD_VARS",
    "blas_environ",
    "blas_settings",
    "configure_blas",
    "cpu_has_avx512",
    "resolve_coretype",
]

THREAD_VARS = (
    "OPENBLAS_NUM_THREADS",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)

# The AVX-512 subsets OpenBLAS's SkylakeX kernels use.
_AVX512 = frozenset({"avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"})


@cache
def cpu_has_avx512() -> bool:
    """Whether this (Linux) CPU advertises the AVX-512 subsets of Skylake-X and later."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split()) >= _AVX512
    return False


def resolve_coretype(choice: str, inherited: str | None) -> str | None:
    """The ``OPENBLAS_CORETYPE`` a training process should run with.

    Args:
        choice: ``"auto"`` (the best kernel this CPU advertises: ``SkylakeX`` with AVX-512, else
            OpenBLAS's own detection), ``"inherit"`` (whatever the environment says), or an
            OpenBLAS core name used as is.
        inherited: The value in the environment, if any.

    ``auto`` replaces an inherited value: a machine-wide ``OPENBLAS_CORETYPE=Haswell`` (as on
    the machines this project is developed on) makes the engine's GEMMs 1.7x slower on a CPU
    whose AVX-512 OpenBLAS would otherwise use. The AVX-512 check reads the CPU's own flags, so
    the choice is as safe as OpenBLAS's own detection.
    """
    if choice == "inherit":
        return inherited
    if choice != "auto":
        return choice
    return "SkylakeX" if cpu_has_avx512() else None


def blas_settings(threads: int = 1, coretype: str = "auto", inherited: str | None = None) -> dict[str, str]:
    """The environment variables that set up BLAS for a training process.

    Every BLAS and OpenMP thread count is ``threads``: training processes run one per core, and
    letting each spawn a BLAS thread per core oversubscribes the CPU (measured 3.6x slower).
    ``OPENBLAS_CORETYPE`` follows :func:`resolve_coretype`.
    """
    env = dict.fromkeys(THREAD_VARS, str(threads))
    core = resolve_coretype(coretype, inherited)
    if core:
        env["OPENBLAS_CORETYPE"] = core
    return env


def blas_environ(
    threads: int = 1, environ: Mapping[str, str] | None = None, coretype: str | None = None
) -> dict[str, str]:
    """A copy of ``environ`` (default: ``os.environ``) for a training process to start with.

    Thread counts are forced to ``threads`` (a worker process must never oversubscribe). The
    core type follows ``coretype``, by default the ``HPO_BLAS_CORETYPE`` setting.
    """
    env = dict(os.environ if environ is None else environ)
    choice = coretype if coretype is not None else env.get("HPO_BLAS_CORETYPE", "auto")
    settings = blas_settings(threads, choice, env.get("OPENBLAS_CORETYPE"))
    if "OPENBLAS_CORETYPE" not in settings:
        env.pop("OPENBLAS_CORETYPE", None)
    env.update(settings)
    return env


def configure_blas(threads: int = 1) -> None:
    """Set up BLAS in this process's own environment, before NumPy is first imported.

    Thread counts the user set are kept (an interactive command may want more); the core type
    follows ``HPO_BLAS_CORETYPE``. Entry points call this first thing.
    """
    inherited = os.environ.get("OPENBLAS_CORETYPE")
    for key, value in blas_settings(threads, os.environ.get("HPO_BLAS_CORETYPE", "auto"), inherited).items():
        if key == "OPENBLAS_CORETYPE":
            os.environ[key] = value
        else:
            os.environ.setdefault(key, value)
