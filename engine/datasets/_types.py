"""What :func:`~engine.load_dataset` returns."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from .._preprocessing import Preprocessing

__all__ = ["Dataset", "Split"]


@dataclass(frozen=True, slots=True)
class Split:
    """One split of a dataset.

    Attributes:
        x: Features ``(n, features)``, C-contiguous, in the dtype asked of :func:`load_dataset`.
        t: Class indices ``(n,)`` as int64.
    """

    x: NDArray[np.floating]
    t: NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class Dataset:
    """A classification dataset split into train, validation and test rows.

    Attributes:
        name: Short name for reports (the kind, or the file name for npz/csv).
        train: Rows to fit on (normalization statistics come from these only).
        val: Rows to score hyperparameters on.
        test: Held-out rows (possibly empty), fixed for a given seed and ``test_fraction``.
        num_classes: Number of distinct labels in the whole loaded data.
        preprocessing: How the features were normalized (the train split's statistics) and the
            label of each class index: what a network trained on it needs to predict new rows.
    """

    name: str
    train: Split
    val: Split
    test: Split
    num_classes: int
    preprocessing: Preprocessing | None = None

    @property
    def input_size(self) -> int:
        """Number of features per row."""
        return int(self.train.x.shape[1])
