"""The base of the fillers and what every filler module shares: the :class:`Filler` protocol, seeded
random draws and the removal-mask check.

Split from :mod:`pl_saliency.perturbation.fillers` so that the imputations of
:mod:`pl_saliency.perturbation.imputation` build on it without importing the module that names them
(``fillers`` resolves ``"noisy_linear"`` / ``"telea"`` to imputations: the two imported each other).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from pl_saliency.utils import check_inputs


class Filler:
    """Base class of removal strategies.

    Subclasses either implement ``substrate(inputs)`` (mask-independent replacement, the common case)
    or set ``mask_dependent = True`` and implement :meth:`fill` (a replacement computed from the kept
    pixels, e.g. an imputation): their ``__call__`` checks the inputs and the mask once and calls
    ``fill``; the curve engine calls ``fill`` directly on its chunks, which it built from inputs it
    checked itself (a filler of the 0.1 protocol, which overrides ``__call__`` instead, still works).
    """

    mask_dependent: bool = False
    name: str = "filler"

    @property
    def key(self) -> str:
        return self.name

    def substrate(self, inputs: Tensor, generator: torch.Generator | None = None) -> Tensor:
        raise NotImplementedError

    def fill(self, inputs: Tensor, mask: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """``inputs`` (N, C, H, W) with the pixels of ``mask`` (bool (N, 1, H, W) on their device,
        ``True`` = removed) replaced; both already checked."""
        return torch.where(mask, self.substrate(inputs, generator), inputs)

    def __call__(self, inputs: Tensor, mask: Tensor, generator: torch.Generator | None = None) -> Tensor:
        if self.mask_dependent:
            inputs = check_inputs(inputs)
            mask = check_mask(mask, inputs)
        return self.fill(inputs, mask, generator)

    def filling(self) -> Any:
        """What the engine calls per chunk for a mask-dependent filler: :meth:`fill` when the class
        implements it (no second check of the engine's own chunks), else ``__call__``."""
        return self.fill if type(self).fill is not Filler.fill else self

    def __repr__(self) -> str:
        return self.key


def _check_number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"Argument `{name}` must be a finite number, but got {value!r}.")
    return float(value)


def _generator(generator: torch.Generator | None) -> torch.Generator:
    """The caller's generator, or a fresh one seeded with 0 (the global RNG is never used)."""
    if generator is None:
        return torch.Generator().manual_seed(0)
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"Argument `generator` must be a torch.Generator or None, but got {type(generator).__name__}.")
    return generator


def draw(kind: str, shape: tuple[int, ...], generator: torch.Generator | None, like: Tensor) -> Tensor:
    """``"uniform"`` U[0, 1) or ``"normal"`` N(0, 1) samples of ``shape`` drawn from ``generator`` (on its
    device), returned on ``like``'s device and dtype."""
    g = _generator(generator)
    fn = torch.rand if kind == "uniform" else torch.randn
    dtype = like.dtype if like.dtype in (torch.float32, torch.float64) else torch.float32
    return fn(shape, generator=g, device=g.device, dtype=dtype).to(device=like.device, dtype=like.dtype)


def check_mask(mask: Any, inputs: Tensor) -> Tensor:
    """Check a removal mask against ``inputs`` (N, C, H, W): bool or 0/1 of shape (N, 1, H, W) (or
    (N, H, W)); ``True`` = removed. Returns a bool (N, 1, H, W) tensor on the inputs' device."""
    n, _, h, w = inputs.shape
    if not isinstance(mask, Tensor):
        raise TypeError(f"Argument `mask` must be a bool tensor of shape ({n}, 1, {h}, {w}), but got {type(mask).__name__}.")
    if mask.ndim == 3:
        mask = mask.unsqueeze(1)
    if mask.shape != (n, 1, h, w):
        raise ValueError(f"Argument `mask` must have shape ({n}, 1, {h}, {w}) to match `inputs`, but got {tuple(mask.shape)}.")
    if mask.dtype != torch.bool:
        if not ((mask == 0) | (mask == 1)).all():
            raise ValueError("Argument `mask` must be bool or hold only 0 and 1 (1 = removed), but got other values.")
        mask = mask != 0
    return mask.to(inputs.device)
