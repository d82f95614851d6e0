"""Fillers: how a removed pixel is replaced.

A filler maps ``(inputs (N, C, H, W), mask (N, 1, H, W) bool)`` to the images with the masked
positions replaced; ``True`` in the mask means *removed*. Fillers whose replacement values do not
depend on the mask (zeros, a constant, the image mean, a blurred copy) expose ``substrate(inputs)``,
which the engine computes once per batch and reuses for every curve point.

Every filler has a ``key``: a string that identifies it with its settings, used to share curves
between metrics that ask for the same one.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor


class Filler:
    """Base class of removal strategies.

    Subclasses either implement ``substrate(inputs)`` (mask-independent replacement, the common case)
    or override ``__call__`` and set ``mask_dependent = True``.
    """

    mask_dependent: bool = False
    name: str = "filler"

    @property
    def key(self) -> str:
        return self.name

    def substrate(self, inputs: Tensor, generator: torch.Generator | None = None) -> Tensor:
        raise NotImplementedError

    def __call__(self, inputs: Tensor, mask: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return torch.where(mask, self.substrate(inputs, generator), inputs)

    def __repr__(self) -> str:
        return self.key


class Zeros(Filler):
    """Replace removed pixels by 0 (black for inputs in [0, 1]; the mean for standardized inputs)."""

    name = "zeros"

    def substrate(self, inputs: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return torch.zeros_like(inputs)


class Constant(Filler):
    """Replace removed pixels by a constant ``value`` in every channel."""

    def __init__(self, value: float) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"Argument `value` must be a finite number, but got {value!r}.")
        self.value = float(value)

    @property
    def key(self) -> str:
        return f"constant({self.value:g})"

    def substrate(self, inputs: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return torch.full_like(inputs, self.value)


class Mean(Filler):
    """Replace removed pixels by the per-image, per-channel mean of the image."""

    name = "mean"

    def substrate(self, inputs: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return inputs.mean(dim=(-2, -1), keepdim=True).expand_as(inputs)


def gaussian_kernel1d(sigma: float, kernel_size: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """Normalized 1-D Gaussian kernel of odd length ``kernel_size``."""
    x = torch.arange(kernel_size, device=device, dtype=torch.float64) - (kernel_size - 1) / 2
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return (k / k.sum()).to(dtype)


class Blur(Filler):
    """Replace removed pixels by a Gaussian-blurred copy of the image.

    Defaults follow RISE's insertion substrate (``sigma=5``, ``kernel_size=11``). The blur is
    separable, per channel, with reflection padding (replicate when the image is smaller than the
    kernel's half width), so image borders are not darkened.
    """

    def __init__(self, sigma: float = 5.0, kernel_size: int | None = 11) -> None:
        if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not sigma > 0:
            raise ValueError(f"Argument `sigma` must be a positive number, but got {sigma!r}.")
        if kernel_size is None:
            kernel_size = 2 * math.ceil(3 * sigma) + 1
        if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"Argument `kernel_size` must be a positive odd int, but got {kernel_size!r}.")
        self.sigma = float(sigma)
        self.kernel_size = kernel_size

    @property
    def key(self) -> str:
        return f"blur({self.sigma:g},{self.kernel_size})"

    def substrate(self, inputs: Tensor, generator: torch.Generator | None = None) -> Tensor:
        n, c, h, w = inputs.shape
        k = gaussian_kernel1d(self.sigma, self.kernel_size, inputs.device, inputs.dtype)
        pad = self.kernel_size // 2
        x = inputs.reshape(n * c, 1, h, w)
        mode = "reflect" if pad < min(h, w) else "replicate"
        x = F.pad(x, (pad, pad, pad, pad), mode=mode)
        x = F.conv2d(x, k.view(1, 1, 1, -1))
        x = F.conv2d(x, k.view(1, 1, -1, 1))
        return x.reshape(n, c, h, w)


class FunctionFiller(Filler):
    """Wrap a plain function ``fn(inputs) -> substrate`` (same shape) as a mask-independent filler."""

    def __init__(self, fn: Callable[[Tensor], Tensor], name: str | None = None) -> None:
        self.fn = fn
        self.name = name or getattr(fn, "__name__", "function")

    def substrate(self, inputs: Tensor, generator: torch.Generator | None = None) -> Tensor:
        out = self.fn(inputs)
        if not isinstance(out, Tensor) or out.shape != inputs.shape:
            got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise ValueError(f"Argument `filler` must return a tensor of shape {tuple(inputs.shape)}, but returned {got}.")
        return out


_NAMED: dict[str, Callable[[], Filler]] = {"zeros": Zeros, "zero": Zeros, "black": Zeros, "mean": Mean, "blur": Blur}
FILLER_NAMES: tuple[str, ...] = ("zeros", "mean", "blur")


def get_filler(filler: Any) -> Filler:
    """Resolve ``filler``: a name (``"zeros"``, ``"mean"``, ``"blur"``), a number (constant), a
    :class:`Filler`, or a function ``inputs -> substrate``."""
    if isinstance(filler, Filler):
        return filler
    if isinstance(filler, str):
        if filler not in _NAMED:
            raise ValueError(
                f"Argument `filler` must be one of {FILLER_NAMES}, a number, a Filler or a function, but got {filler!r}."
            )
        return _NAMED[filler]()
    if isinstance(filler, (int, float)) and not isinstance(filler, bool):
        return Constant(filler)
    if callable(filler):
        return FunctionFiller(filler)
    raise TypeError(
        f"Argument `filler` must be one of {FILLER_NAMES}, a number, a Filler or a function, but got {type(filler).__name__}."
    )
