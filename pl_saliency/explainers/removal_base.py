r"""Shared pieces of the removal explainers (:mod:`pl_saliency.explainers.occlusion`,
:mod:`~pl_saliency.explainers.lime`, :mod:`~pl_saliency.explainers.meaningful_perturbation`,
:mod:`~pl_saliency.explainers.rise`): argument checks, the seeded random draws, the base class
:class:`RemovalExplainer` (filler, score, chunking, seeds; the ``telea()`` and ``generative()``
variants) and scikit-image's linear resize as a matrix (:func:`mirror_interpolation`).

Conventions (every removal explainer): the model is called in eval mode and its mode restored;
perturbed images go through it in chunks of at most ``chunk_size``; scores are the target's softmax
probability (``score="probability"``, the seed code's choice) or its logit; random draws come from
``generator`` when given (its state advances), else from a fresh generator seeded with ``seed`` at
every call (the same masks every epoch); the global RNG is never used.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from pl_saliency.explainers.base import Explainer
from pl_saliency.explainers.base import _check_seed
from pl_saliency.perturbation.fillers import Filler
from pl_saliency.perturbation.fillers import get_filler
from pl_saliency.utils import SCORES
from pl_saliency.utils import check_choice
from pl_saliency.utils import check_positive_int
from pl_saliency.utils import class_scores


def _check_float(name: str, value: Any, low: float | None = None, high: float | None = None, low_open: bool = False) -> float:
    """A finite real number in [low, high] ((low, high] with ``low_open``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise TypeError(f"Argument `{name}` must be a finite number, but got {type(value).__name__} {value!r}.")
    too_low = low is not None and (value <= low if low_open else value < low)
    if too_low or (high is not None and value > high):
        lo = "-inf" if low is None else f"{low:g}"
        hi = "inf" if high is None else f"{high:g}"
        bracket = "(" if low_open or low is None else "["
        raise ValueError(f"Argument `{name}` must be a number in {bracket}{lo}, {hi}], but got {value!r}.")
    return float(value)


def _check_pair(name: str, value: Any) -> tuple[int, int]:
    """An int >= 1 or a pair of them (rows, columns)."""
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return check_positive_int(name, value[0]), check_positive_int(name, value[1])
    if isinstance(value, (tuple, list)):
        raise ValueError(f"Argument `{name}` must be an int >= 1 or a pair (rows, columns) of them, but got {value!r}.")
    v = check_positive_int(name, value)
    return v, v


def _check_generator(generator: Any) -> torch.Generator | None:
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"Argument `generator` must be a torch.Generator or None, but got {type(generator).__name__}.")
    return generator


def _check_fits(name: str, size: tuple[int, int], image: tuple[int, int]) -> None:
    if size[0] > image[0] or size[1] > image[1]:
        raise ValueError(f"Argument `{name}` {size} must fit in the {image[0]}x{image[1]} inputs, but it does not.")


def _uniform(shape: tuple[int, ...], generator: torch.Generator, like: Tensor) -> Tensor:
    """U[0, 1) float64 samples drawn on the generator's device, returned on ``like``'s device."""
    return torch.rand(shape, generator=generator, device=generator.device, dtype=torch.float64).to(like.device)


def _randint(high: int, shape: tuple[int, ...], generator: torch.Generator, like: Tensor) -> Tensor:
    return torch.randint(high, shape, generator=generator, device=generator.device).to(like.device)


class RemovalExplainer(Explainer):
    """Base of the removal explainers: holds ``filler``, ``score``, ``chunk_size``, ``seed`` and
    ``generator``, and scores chunks of perturbed images."""

    default_filler: Any = "zeros"

    def __init__(
        self,
        *,
        filler: Any = None,
        score: str = "probability",
        chunk_size: int = 64,
        seed: int = 0,
        generator: torch.Generator | None = None,
        abs: bool = False,  # noqa: A002
        reduce: str = "sum",
        name: str | None = None,
        output_transform: Callable[[Any], Tensor] | None = None,
    ) -> None:
        super().__init__(abs=abs, reduce=reduce, name=name, output_transform=output_transform)
        self.filler: Filler = get_filler(self.default_filler if filler is None else filler)
        check_choice("score", score, SCORES)
        self.score = score
        self.chunk_size = check_positive_int("chunk_size", chunk_size)
        self.seed = _check_seed("seed", seed)
        self.generator = _check_generator(generator)

    @classmethod
    def telea(cls, radius: int = 3, **kwargs: Any) -> RemovalExplainer:
        """The classical-inpainting variant: removal by OpenCV's Telea inpainting
        (:class:`~pl_saliency.perturbation.imputation.Telea` with ``radius``), named
        ``"<default name>_telea"`` unless ``name`` is given. Not generative: a stand-in for the seed
        paper's DeepFill when no inpainter weights are at hand."""
        if "filler" in kwargs:
            raise ValueError("Argument `filler` is set by `telea()`; build the class directly to choose another filler.")
        from pl_saliency.perturbation.imputation import Telea

        kwargs.setdefault("name", f"{cls.default_name}_telea")
        return cls(filler=Telea(radius=radius), **kwargs)

    @classmethod
    def generative(cls, inpainter: Callable[[Tensor, Tensor], Tensor] | Filler | None = None, **kwargs: Any) -> RemovalExplainer:
        """The "-G" variant (Agarwal & Nguyen): removal by ``InpainterFill(inpainter)`` (or ``inpainter``
        itself when it is already a :class:`~pl_saliency.perturbation.fillers.Filler`), named
        ``"<default name>_g"`` unless ``name`` is given.

        Deprecated: without ``inpainter`` (or with a ``Telea`` filler) this used to build the OpenCV-Telea
        variant under the name ``"<name>_g"``; it now warns (``DeprecationWarning``) and returns
        :meth:`telea` (named ``"<name>_telea"``), since Telea is not a generative model."""
        if "filler" in kwargs:
            raise ValueError("Argument `filler` is set by `generative()`; pass `inpainter=` instead, or build the class directly.")
        from pl_saliency.perturbation.imputation import InpainterFill
        from pl_saliency.perturbation.imputation import Telea

        if inpainter is None or isinstance(inpainter, Telea):
            warnings.warn(
                f"`{cls.__name__}.generative()` without a generative inpainter is deprecated: OpenCV's Telea "
                f"inpainting is not a generative model. Use `{cls.__name__}.telea()` (named "
                f"'{cls.default_name}_telea', formerly '{cls.default_name}_g'), or pass your inpainter module: "
                f"`{cls.__name__}.generative(inpainter)`.",
                DeprecationWarning,
                stacklevel=2,
            )
            radius = inpainter.radius if isinstance(inpainter, Telea) else 3
            return cls.telea(radius, **kwargs)
        if not callable(inpainter):
            raise TypeError(
                f"Argument `inpainter` must be a callable (inputs, mask) -> inputs or a Filler, but got {type(inpainter).__name__}."
            )
        filler = inpainter if isinstance(inpainter, Filler) else InpainterFill(inpainter)
        kwargs.setdefault("name", f"{cls.default_name}_g")
        return cls(filler=filler, **kwargs)

    def _generator(self, like: Tensor) -> torch.Generator:
        if self.generator is not None:
            return self.generator
        return torch.Generator().manual_seed(self.seed)

    def _substrate(self, inputs: Tensor, generator: torch.Generator) -> Tensor | None:
        """The filler's replacement image for mask-independent fillers (once per call), else None."""
        return None if self.filler.mask_dependent else self.filler.substrate(inputs, generator)

    def _remove(self, x: Tensor, removed: Tensor, substrate: Tensor | None, generator: torch.Generator) -> Tensor:
        """``x`` (B, C, H, W) with the ``removed`` positions (B, 1, H, W) bool filled; ``substrate`` holds
        the rows of the substrate matching ``x`` (or None for mask-dependent fillers)."""
        if substrate is None:
            return self.filler(x, removed, generator)
        return torch.where(removed, substrate, x)

    def _scores(self, forward: Callable[[Tensor], Tensor], x: Tensor, target: Tensor) -> Tensor:
        return class_scores(forward(x), target, self.score).double()

    def _base_scores(self, forward: Callable[[Tensor], Tensor], inputs: Tensor, target: Tensor) -> Tensor:
        return torch.cat(
            [self._scores(forward, inputs[s : s + self.chunk_size], target[s : s + self.chunk_size]) for s in range(0, len(inputs), self.chunk_size)]
        )

    def _repr_items(self) -> str:
        return f"filler={self.filler.key!r}, score={self.score!r}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, {self._repr_items()})"


def mirror_interpolation(size_in: int, size_out: int, device: torch.device | None = None) -> Tensor:
    """Linear-interpolation matrix (size_out, size_in) float64 of scikit-image's ``resize(order=1,
    mode="reflect", anti_aliasing=False)`` along one axis: output pixel o samples the input at
    ``(o + 1/2) · size_in / size_out − 1/2``, with positions beyond the border mirrored (NumPy's
    "reflect": the edge sample is not repeated)."""
    src = (torch.arange(size_out, dtype=torch.float64, device=device) + 0.5) * size_in / size_out - 0.5
    i0 = torch.floor(src)
    t = src - i0
    i0 = i0.long()

    def mirror(i: Tensor) -> Tensor:
        if size_in == 1:
            return torch.zeros_like(i)
        period = 2 * (size_in - 1)
        i = torch.remainder(i, period)
        return torch.where(i > size_in - 1, period - i, i)

    out = torch.zeros(size_out, size_in, dtype=torch.float64, device=device)
    rows = torch.arange(size_out, device=device)
    out.index_put_((rows, mirror(i0)), 1 - t, accumulate=True)
    out.index_put_((rows, mirror(i0 + 1)), t, accumulate=True)
    return out


__all__ = ["RemovalExplainer", "mirror_interpolation"]
