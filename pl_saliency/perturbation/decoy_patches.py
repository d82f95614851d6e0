"""Patch layout of DANCE decoys (see :mod:`pl_saliency.perturbation.decoys`): the sliding grid with
equal coverage of every pixel, its coverage count, and the coarser tiling that meets a budget."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from pl_saliency.utils import check_choice
from pl_saliency.utils import check_positive_int

COVERAGES: tuple[str, ...] = ("equal", "flush")
PATCH_SAMPLING: tuple[str, ...] = ("coarsen", "random")


def patch_positions(
    height: int, width: int, patch_size: int = 3, stride: int | None = None, coverage: str = "equal"
) -> Tensor:
    """Top-left corners (P, 2) of the swappable patches, row-major (see the module docstring).

    ``coverage="equal"``: positions ``k * stride`` for every ``k`` whose patch meets the image
    (negative corners allowed: such patches are clipped), so every pixel lies in exactly
    ``(patch_size / stride)^2`` patches; ``stride`` must divide ``patch_size``. ``coverage="flush"``
    (before issue 17): positions from 0 and one more flush with the border when the side is not
    reached exactly (every pixel in at least one patch, some in more).

    Example:
        >>> from pl_saliency.perturbation.decoys import patch_positions
        >>> patch_positions(5, 4, 2)[:, 0].unique().tolist(), patch_positions(5, 4, 2, coverage="flush")[:, 0].unique().tolist()
        ([0, 2, 4], [0, 2, 3])
    """
    patch_size = check_positive_int("patch_size", patch_size)
    stride = patch_size if stride is None else check_positive_int("stride", stride)
    check_choice("coverage", coverage, COVERAGES)
    if patch_size > height or patch_size > width:
        raise ValueError(
            f"Argument `patch_size` must be at most the image size ({height}, {width}), but got {patch_size}."
        )
    if coverage == "equal" and patch_size % stride:
        raise ValueError(
            f"Argument `stride` must divide `patch_size` ({patch_size}) for coverage='equal' (every pixel in the same "
            f"number of patches), but got {stride}; pass coverage='flush' for the uneven layout."
        )

    def starts(n: int) -> list[int]:
        if coverage == "equal":
            return list(range(-(patch_size // stride - 1) * stride, n, stride))
        s = list(range(0, n - patch_size + 1, stride))
        if s[-1] != n - patch_size:
            s.append(n - patch_size)
        return s

    rows, cols = starts(height), starts(width)
    return torch.tensor([[r, c] for r in rows for c in cols], dtype=torch.long)


def patch_coverage(positions: Tensor, patch_size: int, height: int, width: int) -> Tensor:
    """(H, W) int64: how many of the patches (corners ``positions`` (P, 2), side ``patch_size``,
    clipped at the borders) contain each pixel."""
    cover = torch.zeros(height, width, dtype=torch.long)
    for top, left in positions.tolist():
        cover[max(top, 0) : max(top + patch_size, 0), max(left, 0) : max(left + patch_size, 0)] += 1
    return cover


def coarse_patch_size(height: int, width: int, patch_size: int, num_patches: int) -> int:
    """The smallest tile side ``t >= patch_size`` whose tiling (clipped at the borders) has at most
    ``num_patches`` tiles."""
    t = patch_size
    while math.ceil(height / t) * math.ceil(width / t) > num_patches:
        t += 1
    return t


def patch_layout(
    height: int, width: int, patch_size: int, stride: int | None, num_patches: int | None, patch_sampling: str,
    coverage: str, generator: torch.Generator | None,
) -> tuple[Tensor, int]:  # fmt: skip
    """``(positions (P, 2), patch side)`` for the settings (see the module docstring)."""
    check_choice("patch_sampling", patch_sampling, PATCH_SAMPLING)
    grid = patch_positions(height, width, patch_size, stride, coverage)
    if num_patches is None:
        return grid, patch_size
    num_patches = check_positive_int("num_patches", num_patches)
    if num_patches >= len(grid):
        return grid, patch_size
    if patch_sampling == "coarsen":
        side = coarse_patch_size(height, width, patch_size, num_patches)
        if side > min(height, width):  # clipped tiles: positions by hand (patch_positions wants side <= image)
            rows, cols = range(0, height, side), range(0, width, side)
            return torch.tensor([[r, c] for r in rows for c in cols], dtype=torch.long), side
        return patch_positions(height, width, side, side, "equal"), side
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    pick = torch.randperm(len(grid), generator=g, device=g.device)[:num_patches].cpu().sort().values
    return grid[pick], patch_size
