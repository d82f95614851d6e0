"""scikit-learn's handwritten digits as tensors, and the fixed train/validation split every demo and
test uses. Nothing is downloaded: the 1,797 8 × 8 digits ship inside scikit-learn."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import TensorDataset


def digits_tensors(size: int = 32) -> tuple[Tensor, Tensor]:
    """All 1,797 digits as (N, 1, size, size) floats in [0, 1] (bilinear upsampling of the 8×8
    originals, values 0–16 scaled by 1/16) and (N,) int64 labels."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as err:
        raise ModuleNotFoundError("The digits data need scikit-learn: `pip install scikit-learn`.") from err
    if isinstance(size, bool) or not isinstance(size, int) or size < 8:
        raise ValueError(f"Argument `size` must be an int of at least 8, but got {size!r}.")
    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    if size != 8:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 1)
    return x, torch.tensor(digits.target, dtype=torch.long)


def split_indices(total: int, val_fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    """``(train, val)`` indices of a seeded permutation of ``range(total)`` (independent of the global
    RNG): the first ``round(total * val_fraction)`` are validation."""
    perm = torch.randperm(total, generator=torch.Generator().manual_seed(seed))
    n_val = int(round(total * val_fraction))
    return perm[n_val:], perm[:n_val]


def digits_datasets(size: int = 32, val_fraction: float = 0.2, seed: int = 0) -> tuple[TensorDataset, TensorDataset]:
    """A fixed train/validation split of the digits (a seeded permutation, independent of the global RNG)."""
    x, y = digits_tensors(size)
    train, val = split_indices(len(x), val_fraction, seed)
    return TensorDataset(x[train], y[train]), TensorDataset(x[val], y[val])
