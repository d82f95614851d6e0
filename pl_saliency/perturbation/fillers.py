"""Fillers: how a removed pixel is replaced.

A filler maps ``(inputs (N, C, H, W), mask (N, 1, H, W) bool)`` to the images with the masked
positions replaced; ``True`` in the mask means *removed*. Fillers whose replacement values do not
depend on the mask (zeros, a constant, the image mean, a blurred copy) expose ``substrate(inputs)``,
which the engine computes once per batch and reuses for every curve point.

Every filler has a ``key``: a string that identifies it with its settings, used to share curves
between metrics that ask for the same one.

Random fillers draw from the ``generator`` argument (a ``torch.Generator``; on the generator's
device, then moved to the inputs' device), never from the global RNG. Without one they use a fresh
generator seeded with 0, so results are reproducible either way.

The mask-dependent imputations (``noisy_linear``, ``telea``, generative inpainters) live in
:mod:`pl_saliency.perturbation.imputation`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from pl_saliency._keywords import keyword_only
from pl_saliency.perturbation.filler_base import Filler
from pl_saliency.perturbation.filler_base import _check_number
from pl_saliency.perturbation.filler_base import check_mask
from pl_saliency.perturbation.filler_base import draw
from pl_saliency.perturbation.imputation import NoisyLinear
from pl_saliency.perturbation.imputation import Telea

# the base and its helpers are defined in filler_base and re-exported here (their historical home)
__all__ = [
    "FILLER_NAMES",
    "Blur",
    "Constant",
    "Filler",
    "FunctionFiller",
    "GaussianNoise",
    "Mean",
    "NoisyLinear",
    "Telea",
    "UniformNoise",
    "Zeros",
    "check_mask",
    "draw",
    "gaussian_kernel1d",
    "get_filler",
]


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

    @keyword_only
    def __init__(self, *, sigma: float = 5.0, kernel_size: int | None = 11) -> None:
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

    @keyword_only
    def __init__(self, fn: Callable[[Tensor], Tensor], *, name: str | None = None) -> None:
        self.fn = fn
        self.name = name or getattr(fn, "__name__", "function")

    def substrate(self, inputs: Tensor, generator: torch.Generator | None = None) -> Tensor:
        out = self.fn(inputs)
        if not isinstance(out, Tensor) or out.shape != inputs.shape:
            got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise ValueError(f"Argument `filler` must return a tensor of shape {tuple(inputs.shape)}, but returned {got}.")
        return out


def _check_additive(additive: Any) -> bool:
    if not isinstance(additive, bool):
        raise TypeError(f"Argument `additive` must be a bool, but got {type(additive).__name__}.")
    return additive


class _NoiseFiller(Filler):
    """What the noise fillers share: the substrate ``offset + scale · ε`` with ε drawn once per batch
    from ``distribution`` (``"uniform"`` U[0, 1) or ``"normal"`` N(0, 1), :func:`draw`), added to the
    image when ``additive``; the key ``<_key_name>(a,b[,add])`` of the two values of :meth:`_key_values`."""

    _key_name: str = "noise"
    distribution: str = "uniform"
    additive: bool = False

    def _affine(self) -> tuple[float, float]:
        """``(offset, scale)`` of the noise."""
        raise NotImplementedError

    def _key_values(self) -> tuple[float, float]:
        raise NotImplementedError

    @property
    def key(self) -> str:
        a, b = self._key_values()
        return f"{self._key_name}({a:g},{b:g}{',add' if self.additive else ''})"

    def substrate(self, inputs: Tensor, generator: torch.Generator | None = None) -> Tensor:
        offset, scale = self._affine()
        noise = offset + scale * draw(self.distribution, tuple(inputs.shape), generator, inputs)
        return inputs + noise if self.additive else noise


class UniformNoise(_NoiseFiller):
    """Replace removed pixels by samples of the uniform distribution U[``low``, ``high``).

    This is Samek et al.'s region perturbation ("replace by samples from a uniform distribution",
    IEEE TNNLS 2017) and Quantus' ``perturb_baseline="uniform"`` (``uniform_low=0``,
    ``uniform_high=1``); the defaults suit images in [0, 1]. Every channel of every pixel gets its own
    sample. With ``additive=True`` the removed pixels become ``x + u`` instead (Quantus'
    ``uniform_noise`` perturbation function, e.g. ``low=-0.02, high=0.02``), which perturbs rather
    than removes.

    The noise image is drawn **once per batch** (a substrate): a pixel keeps the same noise value at
    every curve point, as in Samek's cumulative perturbation ``x^{(k)} = g(x^{(k-1)}, r_k)``, and the
    curve does not depend on ``chunk_size``.

    Example:
        >>> import torch
        >>> fill = UniformNoise(low=-1.0, high=1.0)
        >>> fill.key
        'uniform_noise(-1,1)'
        >>> x = torch.zeros(2, 3, 4, 4)
        >>> out = fill.substrate(x, torch.Generator().manual_seed(0))
        >>> bool((out >= -1).all() and (out < 1).all()), tuple(out.shape)
        (True, (2, 3, 4, 4))
    """

    _key_name = "uniform_noise"
    distribution = "uniform"

    @keyword_only
    def __init__(self, *, low: float = 0.0, high: float = 1.0, additive: bool = False) -> None:
        low, high = _check_number("low", low), _check_number("high", high)
        if not low < high:
            raise ValueError(f"Argument `high` must be greater than `low` ({low:g}), but got {high:g}.")
        self.low, self.high, self.additive = low, high, _check_additive(additive)

    def _affine(self) -> tuple[float, float]:
        return self.low, self.high - self.low

    def _key_values(self) -> tuple[float, float]:
        return self.low, self.high


class GaussianNoise(_NoiseFiller):
    """Replace removed pixels by samples of the normal distribution N(``mean``, ``std``²).

    The defaults (0, 1) are the marginal distribution of standardized inputs (per-channel
    mean/std normalization), so the removed pixels look like unstructured data-scale noise. Every
    channel of every pixel gets its own sample. With ``additive=True`` the removed pixels become
    ``x + mean + std · ε`` (Quantus' ``gaussian_noise`` perturbation function, default std 0.01),
    which perturbs rather than removes.

    Drawn **once per batch** (a substrate), like :class:`UniformNoise`.

    Example:
        >>> import torch
        >>> fill = GaussianNoise(std=0.5)
        >>> fill.key
        'gaussian_noise(0,0.5)'
        >>> x, mask = torch.ones(1, 1, 3, 3), torch.zeros(1, 1, 3, 3, dtype=torch.bool)
        >>> mask[0, 0, 1, 1] = True
        >>> out = fill(x, mask, torch.Generator().manual_seed(0))
        >>> int((out != 1).sum())
        1
    """

    _key_name = "gaussian_noise"
    distribution = "normal"

    @keyword_only
    def __init__(self, *, std: float = 1.0, mean: float = 0.0, additive: bool = False) -> None:
        std, mean = _check_number("std", std), _check_number("mean", mean)
        if not std > 0:
            raise ValueError(f"Argument `std` must be a positive number, but got {std:g}.")
        self.std, self.mean, self.additive = std, mean, _check_additive(additive)

    def _affine(self) -> tuple[float, float]:
        return self.mean, self.std

    def _key_values(self) -> tuple[float, float]:
        return self.mean, self.std


_NAMED: dict[str, Callable[[], Filler]] = {
    "zeros": Zeros,
    "zero": Zeros,
    "black": Zeros,
    "mean": Mean,
    "blur": Blur,
    "uniform_noise": UniformNoise,
    "gaussian_noise": GaussianNoise,
    "noisy_linear": NoisyLinear,
    "telea": Telea,
}
FILLER_NAMES: tuple[str, ...] = ("zeros", "mean", "blur", "uniform_noise", "gaussian_noise", "noisy_linear", "telea")


def get_filler(filler: Any) -> Filler:
    """Resolve ``filler``: a name (one of :data:`FILLER_NAMES`, with default settings), a number
    (constant), a :class:`Filler`, or a function ``inputs -> substrate``."""
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
