"""The tasks and methods of bench/search_quality.py: what is searched, in which boxes, by whom.

A task is a study (data, network, training) with a trial epoch budget ``E`` (the epochs of one
full trial) and a compute budget of ``K`` full trials (``K * E`` epochs), searched from two
boxes: the one a user would write, and one placed too low (good learning rates two decades above
its top). Every method gets the same epochs; budgets are reported at a quarter, a half and all of
``K * E``.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MNIST = (ROOT.parent / "shared" / "data" / "mnist").resolve()

LR_LOW_BOX = {"type": "float", "low": 1e-7, "high": 1e-3, "log": True}
WD = {"type": "float", "low": 1e-8, "high": 1e-4, "log": True}


@dataclass(frozen=True)
class Task:
    """One searched study.

    Attributes:
        name: The ``--task`` name.
        title: One line for tables and figures.
        base: The study file as a dict, without ``search`` (data paths filled in at run time).
        epochs: Epochs of one full trial (``E``).
        trials: The full budget in full trials (``K``): ``K * E`` epochs.
        boxes: ``search.parameters`` per box name (``user``, ``low``).
        continuous: Every parameter is a float (CMA-ES applies).
    """

    name: str
    title: str
    base: dict[str, Any]
    epochs: int
    trials: int
    boxes: dict[str, dict[str, Any]]
    continuous: bool = True
    files: tuple[str, ...] = field(default=())

    @property
    def budget(self) -> int:
        """The full budget in epochs."""
        return self.epochs * self.trials

    def budgets(self) -> list[int]:
        """The three budgets reported, in epochs: a quarter, a half and all of the full one."""
        return [self.budget // 4, self.budget // 2, self.budget]

    def study(self, box: str, data_dir: Path, name: str, seed: int) -> dict[str, Any]:
        """The study file (a dict) of this task in ``box``, without its stages and sampler."""
        spec = copy.deepcopy(self.base)
        spec["name"], spec["seed"] = name, seed
        if spec["dataset"].get("path") == "@mnist":
            spec["dataset"]["path"] = str(MNIST)
        elif "path" in spec["dataset"]:
            spec["dataset"]["path"] = str(data_dir / spec["dataset"]["path"])
        spec["training"]["epochs"] = self.epochs
        spec["search"] = {"parameters": copy.deepcopy(self.boxes[box])}
        spec["objective"] = {"metric": "val_acc", "reduce": "final"}
        spec["limits"] = {"max_failed_trials": 100_000}
        return spec


def _mnist(subset: int, val_fraction: float) -> dict[str, Any]:
    return {
        "dataset": {"kind": "mnist", "path": "@mnist", "subset": subset, "val_fraction": val_fraction},
        "model": {"hidden_sizes": [100] * 6, "activation": "relu", "weight_init": "he"},
        "training": {"optimizer": "sgd", "batch_size": 100},
    }


_BOOK_BOX = {"lr": {"type": "float", "low": 1e-6, "high": 1e-2, "log": True}, "weight_decay": WD}

TASKS: dict[str, Task] = {
    t.name: t
    for t in [
        Task(
            "book",
            "the book's protocol: MNIST 400 train / 100 validation, 784-[100]x6-10, SGD",
            _mnist(500, 0.2),
            epochs=50,
            trials=100,
            boxes={"user": _BOOK_BOX, "low": {"lr": LR_LOW_BOX, "weight_decay": WD}},
        ),
        Task(
            "mnist",
            "MNIST 2000 train / 1000 validation, 784-[100]x6-10, SGD",
            _mnist(3000, 1 / 3),
            epochs=20,
            trials=40,
            boxes={"user": _BOOK_BOX, "low": {"lr": LR_LOW_BOX, "weight_decay": WD}},
        ),
        Task(
            "digits",
            "scikit-learn digits (1797 8x8 images), 64-[64, 64]-10, SGD",
            {
                "dataset": {"kind": "digits"},
                "model": {"hidden_sizes": [64, 64], "activation": "relu", "weight_init": "he"},
                "training": {"optimizer": "sgd", "batch_size": 32},
            },
            epochs=30,
            trials=100,
            boxes={
                "user": {
                    "lr": {"type": "float", "low": 1e-4, "high": 1.0, "log": True},
                    "weight_decay": {"type": "float", "low": 1e-8, "high": 1e-2, "log": True},
                },
                "low": {
                    "lr": LR_LOW_BOX,
                    "weight_decay": {"type": "float", "low": 1e-8, "high": 1e-2, "log": True},
                },
            },
        ),
        Task(
            "breast-cancer",
            "breast-cancer CSV (569 rows, 30 features): lr, weight decay, optimizer, width",
            {
                "dataset": {"kind": "csv", "path": "breast-cancer.csv", "label_column": "label"},
                "model": {"hidden_sizes": [32], "activation": "relu", "weight_init": "he"},
                "training": {"optimizer": "sgd", "batch_size": 32},
            },
            epochs=30,
            trials=100,
            boxes={
                box: {
                    "lr": lr,
                    "weight_decay": {"type": "float", "low": 1e-8, "high": 1e-2, "log": True},
                    "optimizer": {"type": "categorical", "choices": ["sgd", "momentum", "rmsprop", "adam"]},
                    "width": {"type": "int", "low": 4, "high": 256, "log": True},
                }
                for box, lr in [
                    ("user", {"type": "float", "low": 1e-5, "high": 1.0, "log": True}),
                    ("low", {"type": "float", "low": 1e-9, "high": 1e-4, "log": True}),
                ]
            },
            continuous=False,
            files=("breast-cancer.csv",),
        ),
        Task(
            "wine",
            "wine NPZ (178 rows, 13 features): activation, depth, width (and lr)",
            {
                "dataset": {"kind": "npz", "path": "wine.npz"},
                "model": {"hidden_sizes": [32, 32], "activation": "relu", "weight_init": "he"},
                "training": {"optimizer": "sgd", "batch_size": 16},
            },
            epochs=40,
            trials=100,
            boxes={
                box: {
                    "lr": lr,
                    "activation": {"type": "categorical", "choices": ["relu", "sigmoid", "tanh"]},
                    "depth": {"type": "int", "low": 1, "high": 4},
                    "width": {"type": "int", "low": 4, "high": 128, "log": True},
                }
                for box, lr in [
                    ("user", {"type": "float", "low": 1e-4, "high": 1.0, "log": True}),
                    ("low", LR_LOW_BOX),
                ]
            },
            continuous=False,
            files=("wine.npz",),
        ),
    ]
}


def task_of(job: dict[str, Any]) -> Task:
    """The task of a job, with the job's budget in full trials (``--trials`` may shrink it)."""
    task = TASKS[job["task"]]
    return dataclasses.replace(task, trials=job.get("trials", task.trials))


def write_data_files(data_dir: Path) -> None:
    """The CSV and NPZ tasks' files, from scikit-learn's bundled copies (no download)."""
    import numpy as np
    from sklearn.datasets import load_breast_cancer, load_wine

    data_dir.mkdir(parents=True, exist_ok=True)
    cancer = load_breast_cancer()
    header = ",".join([f"f{i}" for i in range(cancer.data.shape[1])] + ["label"])
    rows = np.column_stack([cancer.data, cancer.target])
    np.savetxt(data_dir / "breast-cancer.csv", rows, delimiter=",", header=header, comments="", fmt="%.6g")
    wine = load_wine()
    np.savez(data_dir / "wine.npz", x=wine.data.astype(np.float32), y=wine.target.astype(np.int64))


# ---------------------------------------------------------------------------------------------
# Methods

OPTUNA_METHODS = ("random", "qmc", "tpe", "tpe-hyperband", "random-sha", "cmaes")
"""Optuna's samplers (and pruners) a user would pick instead, at the same epochs."""

NARROWING_METHODS: dict[str, dict[str, Any]] = {
    # hpo's search as it was before issue 13: N trials in 4 equal stages of full trials, random
    # draws, every pan margin x width, the whole top quarter.
    "narrowing-before": {
        "schedule": "default",
        "narrowing": {"pan_growth": 1.0, "top_cut": 0.0, "sampling": "random"},
    },
    # hpo's defaults now: `search.trials: N` (4 equal stages), pan_growth 2, top_cut 0.5, Sobol.
    "narrowing": {"schedule": "default"},
}
"""hpo's narrowing variants: how a budget is split into stages, and rule overrides."""

METHODS = (*OPTUNA_METHODS, *NARROWING_METHODS)


SCHEDULES = {"equal": (1, 1, 1, 1), "halving": (1 / 8, 1 / 4, 1 / 2, 1), "ramp": (1 / 4, 1 / 2, 1, 1)}
"""Named stage shapes: each stage's epochs as a fraction of a full trial's."""


def stages_for(budget: int, epochs: int, schedule: str | Sequence[float]) -> list[dict[str, int]]:
    """Stages of the shape ``schedule`` (epoch fractions, or a name in :data:`SCHEDULES`), each
    taking an equal share of ``budget`` epochs (trials rounded down, at least 2 each)."""
    fractions = SCHEDULES[schedule] if isinstance(schedule, str) else tuple(schedule)
    out = []
    for f in fractions:
        e = max(1, round(epochs * f))
        out.append({"trials": max(2, (budget // len(fractions)) // e), "epochs": e})
    return out
