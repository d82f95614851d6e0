r"""Removal-based explainers: what happens to the class score when parts of the image are removed?

Agarwal & Nguyen ("Explaining image classifiers by removing input features using generative models",
ACCV 2020) plug a removal operator — gray, blur, or a generative inpainter — into three perturbation
methods; we add RISE, which removes by random masks. Every explainer here takes that operator as
``filler`` (any spec of :func:`pl_saliency.perturbation.get_filler`: ``"zeros"``, ``"blur"``, a number,
``"telea"``, ``InpainterFill(module)``, ...):

* :class:`SlidingPatchOcclusion` — SP / SP-G (Zeiler & Fergus 2014): slide a ``patch_size`` square with
  ``stride`` over the image; every pixel gets the mean score drop of the windows covering it.
* :class:`Lime` — LIME / LIME-G (Ribeiro et al. 2016) over SLIC superpixels (or a square grid): a
  kernel-weighted ridge regression of the score on random on/off superpixel patterns.
* :class:`MeaningfulPerturbation` — MP / MP-G (Fong & Vedaldi 2017): optimize a smooth low-resolution
  mask whose deletion kills the class score, with L1 and total-variation penalties.
* :class:`RISE` — Petsiuk, Das & Saenko (BMVC 2018): the Monte-Carlo average of the score of randomly
  masked images, weighted by the masks.

``X.generative(inpainter=None, **kwargs)`` builds the "-G" variant of each: the filler is
:class:`~pl_saliency.perturbation.imputation.InpainterFill` of the given module (bring your own
weights; nothing is downloaded) or, without one, OpenCV's Telea inpainting (``"telea"``), the classical
stand-in; the explainer is named ``"<name>_g"``.

Shared conventions (see :mod:`pl_saliency.explainers.base`): the model is called in eval mode and its
mode restored; perturbed images go through it in chunks of at most ``chunk_size``; scores are the
target's softmax probability (``score="probability"``, the seed code's choice) or its logit; random
draws come from ``generator`` when given (its state advances), else from a fresh generator seeded with
``seed`` at every call (the same masks every epoch); the global RNG is never used. Random patterns
(RISE masks, LIME on/off samples, the MP initial mask and jitter) are shared by all images of a call and
drawn so that they do not depend on the batch size, so with a deterministic filler a sample's map does
not depend on which other samples are explained with it, nor on ``chunk_size`` (random fillers draw
their noise per call or per chunk). Only :class:`MeaningfulPerturbation` takes gradients, with
``torch.autograd.grad`` on its mask alone (never into model parameters, whose ``.grad`` is untouched).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from pl_saliency.explainers.base import Explainer
from pl_saliency.perturbation.fillers import Blur, Filler, get_filler
from pl_saliency.utils import SCORES, check_choice, check_positive_int, class_scores

SEGMENTATIONS: tuple[str, ...] = ("slic", "grid")
UPSAMPLINGS: tuple[str, ...] = ("nearest", "bilinear")
INITS: tuple[str, ...] = ("uniform", "ones")


# --------------------------------------------------------------------------------------------------
# Argument checks and shared pieces
# --------------------------------------------------------------------------------------------------


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


def _check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"Argument `seed` must be an int, but got {type(seed).__name__} {seed!r}.")
    return seed


def _check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"Argument `{name}` must be a bool, but got {type(value).__name__} {value!r}.")
    return value


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
        self.seed = _check_seed(seed)
        self.generator = _check_generator(generator)

    @classmethod
    def generative(cls, inpainter: Callable[[Tensor, Tensor], Tensor] | None = None, **kwargs: Any) -> RemovalExplainer:
        """The "-G" variant (Agarwal & Nguyen): removal by ``InpainterFill(inpainter)``, or by OpenCV's
        Telea inpainting when no inpainter is given; named ``"<default name>_g"`` unless ``name`` is given."""
        if "filler" in kwargs:
            raise ValueError("Argument `filler` is set by `generative()`; pass `inpainter=` instead, or build the class directly.")
        if inpainter is None:
            filler: Any = "telea"
        else:
            from pl_saliency.perturbation.imputation import InpainterFill

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


# --------------------------------------------------------------------------------------------------
# Sliding-patch occlusion
# --------------------------------------------------------------------------------------------------


def window_starts(size: int, patch: int, stride: int) -> Tensor:
    """Start offsets of the sliding windows along one side, as Captum's ``Occlusion``:
    ``ceil((size - patch) / stride) + 1`` windows at ``0, stride, 2 stride, ...``; the last one may
    run past the border and is cut there, so every position is covered."""
    count = math.ceil((size - patch) / stride) + 1
    return torch.arange(count) * stride


class SlidingPatchOcclusion(RemovalExplainer):
    r"""Sliding-patch occlusion, SP / SP-G (Zeiler & Fergus 2014; Agarwal & Nguyen 2020).

    For every window :math:`W_k` (``patch_size``, moved by ``stride``, all channels), the score drop
    :math:`d_k = s_c(x) - s_c(x_{W_k \leftarrow \text{filler}})`; the map at pixel p is the mean of
    :math:`d_k` over the windows covering p — Captum's ``Occlusion`` with ``sliding_window_shapes=(C, P,
    P)``, ``strides=S`` and a constant baseline gives the same map (windows at ``0, S, 2S, ...``, the
    last cut at the border). Higher = removing it hurts the class more. Signed; ``abs=False``.

    Defaults: ``patch_size=29`` (the paper's figure; the seed code's default is 77, its demo 41, for
    224² inputs), ``stride=3``, ``filler="zeros"`` (0 in the model's normalized input space, i.e. the
    dataset-mean gray of the seed code), ``score="probability"``. :meth:`generative` gives SP-G.

    Where we differ from the seed code: its map stays at window resolution, one value per window
    position ((224 − P) // S + 1 per side, no averaging of overlaps); ours is at pixel resolution with
    overlaps averaged (Captum's rule).

    Cost: ``N · (1 + windows)`` model evaluations, ``chunk_size`` per call; every window of a chunk goes
    in one call.

    Example:
        >>> import torch
        >>> from pl_saliency.explainers.removal import SlidingPatchOcclusion
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3))
        >>> x, y = torch.rand(2, 1, 8, 8), torch.tensor([0, 2])
        >>> SlidingPatchOcclusion(patch_size=4, stride=2)(model, x, y).shape
        torch.Size([2, 1, 8, 8])
    """

    default_name = "occlusion"

    def __init__(self, patch_size: int | tuple[int, int] = 29, stride: int | tuple[int, int] = 3, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.patch_size = _check_pair("patch_size", patch_size)
        self.stride = _check_pair("stride", stride)
        if self.stride[0] > self.patch_size[0] or self.stride[1] > self.patch_size[1]:
            raise ValueError(
                f"Argument `stride` {self.stride} must not exceed `patch_size` {self.patch_size} "
                "(larger strides leave pixels that no window covers), but it does."
            )

    def _repr_items(self) -> str:
        return f"patch_size={self.patch_size}, stride={self.stride}, {super()._repr_items()}"

    def _attribute(self, model: Any, forward: Callable[[Tensor], Tensor], inputs: Tensor, target: Tensor) -> Tensor:
        x = inputs.detach()
        n, _, h, w = x.shape
        (ph, pw), (sh, sw) = self.patch_size, self.stride
        _check_fits("patch_size", (ph, pw), (h, w))
        g = self._generator(x)
        rows0 = window_starts(h, ph, sh).to(x.device)
        cols0 = window_starts(w, pw, sw).to(x.device)
        num = len(rows0) * len(cols0)
        r = torch.arange(h, device=x.device)
        c = torch.arange(w, device=x.device)
        covers_r = (r[None, :] >= rows0[:, None]) & (r[None, :] < rows0[:, None] + ph)  # (Wr, H)
        covers_c = (c[None, :] >= cols0[:, None]) & (c[None, :] < cols0[:, None] + pw)  # (Wc, W)
        count = covers_r.sum(0).double()[:, None] * covers_c.sum(0).double()[None, :]  # windows per pixel
        with torch.no_grad():
            substrate = self._substrate(x, g)
            base = self._base_scores(forward, x, target)
            total = torch.zeros(n, 1, h, w, dtype=torch.float64, device=x.device)
            for start in range(0, n * num, self.chunk_size):
                idx = torch.arange(start, min(start + self.chunk_size, n * num), device=x.device)
                i, k = idx // num, idx % num
                removed = (covers_r[k // len(cols0)][:, :, None] & covers_c[k % len(cols0)][:, None, :]).unsqueeze(1)
                xk = self._remove(x[i], removed, None if substrate is None else substrate[i], g)
                drop = base[i] - self._scores(forward, xk, target[i])
                total.index_add_(0, i, drop.view(-1, 1, 1, 1) * removed)
        return (total / count).to(x.dtype)


# --------------------------------------------------------------------------------------------------
# LIME
# --------------------------------------------------------------------------------------------------


def grid_segments(height: int, width: int, grid_size: int | tuple[int, int], device: torch.device | None = None) -> Tensor:
    """Square-grid segmentation (H, W) long: ``grid_size`` cells per side (rows, columns), each of
    ``ceil(H / rows)`` × ``ceil(W / columns)`` pixels (the last ones may be smaller), row-major labels."""
    gh, gw = _check_pair("grid_size", grid_size)
    if gh > height or gw > width:
        raise ValueError(f"Argument `grid_size` ({gh}, {gw}) must be at most the image size ({height}, {width}), but it is not.")
    ch, cw = math.ceil(height / gh), math.ceil(width / gw)
    rows = torch.arange(height, device=device) // ch
    cols = torch.arange(width, device=device) // cw
    return rows[:, None] * math.ceil(width / cw) + cols[None, :]


def slic_segments(
    inputs: Tensor,
    n_segments: int = 50,
    compactness: float = 30.0,
    sigma: float = 3.0,
    image_fn: Callable[[Tensor], Tensor] | None = None,
) -> Tensor:
    """SLIC superpixels (scikit-image) of each image: (N, H, W) long, labels 0 … F_n − 1 per image.

    SLIC's compactness is relative to the colour range, so each image is first brought to a fixed
    range: ``image_fn(inputs)`` when given (e.g. un-normalize to RGB in [0, 1]), else a per-image min–max
    scaling to [0, 1]. Three-channel images are then segmented in CIELAB (scikit-image's default, as
    LIME on RGB images); other channel counts are scaled to [0, 100] (the range of CIELAB lightness)
    and segmented as they are. Defaults are the seed code's (``n_segments=50, compactness=30,
    sigma=3``).
    """
    try:
        from skimage.segmentation import slic
    except ImportError as err:  # pragma: no cover - scikit-image comes with the test extras
        raise ModuleNotFoundError("LIME's SLIC superpixels need scikit-image: `pip install scikit-image`.") from err
    imgs = inputs.detach() if image_fn is None else image_fn(inputs.detach())
    if not isinstance(imgs, Tensor) or imgs.ndim != 4 or imgs.shape[0] != inputs.shape[0] or imgs.shape[-2:] != inputs.shape[-2:]:
        got = tuple(imgs.shape) if isinstance(imgs, Tensor) else type(imgs).__name__
        raise ValueError(f"Argument `slic_image` must return (N, C, H, W) images of the inputs' size, but returned {got}.")
    arr = imgs.to("cpu", torch.float64)
    if image_fn is None:
        lo = arr.amin(dim=(1, 2, 3), keepdim=True)
        span = arr.amax(dim=(1, 2, 3), keepdim=True) - lo
        arr = (arr - lo) / torch.where(span > 0, span, torch.ones_like(span))
    out = []
    c = arr.shape[1]
    for img in arr.numpy():
        if c == 3:
            seg = slic(np.moveaxis(img, 0, -1), n_segments=n_segments, compactness=compactness, sigma=sigma,
                       start_label=0, channel_axis=-1)  # fmt: skip
        elif c == 1:
            seg = slic(img[0] * 100.0, n_segments=n_segments, compactness=compactness, sigma=sigma, start_label=0, channel_axis=None)
        else:
            seg = slic(np.moveaxis(img, 0, -1) * 100.0, n_segments=n_segments, compactness=compactness, sigma=sigma,
                       start_label=0, channel_axis=-1, convert2lab=False)  # fmt: skip
        out.append(torch.from_numpy(np.unique(seg, return_inverse=True)[1].reshape(seg.shape)))
    return torch.stack(out).long().to(inputs.device)


def lime_samples(num_samples: int, num_features: int, generator: torch.Generator, like: Tensor | None = None) -> Tensor:
    """LIME's on/off patterns (S, F) float64: row 0 all on (the image itself), the others i.i.d.
    Bernoulli(1/2) per feature. Drawn column by column, so column f is the same for any F > f."""
    like = like if like is not None else torch.empty(0)
    z = (_uniform((num_features, num_samples), generator, like).T < 0.5).double()
    z[0] = 1.0
    return z


def lime_kernel_weights(samples: Tensor, num_features: Tensor, kernel_width: float = 0.25) -> Tensor:
    """LIME's sample weights (N, S): ``sqrt(exp(-d² / w²))`` of the cosine distance ``d`` between each
    pattern and the all-on one, ``d = 1 - sqrt(k / F)`` for ``k`` of the image's ``F`` features on (1 for
    the all-off pattern, sklearn's value for a zero vector). ``samples`` is (N, S, F_max), zero beyond
    each image's ``num_features`` (N,)."""
    on = samples.sum(-1)
    d = 1.0 - torch.sqrt(on / num_features.to(samples).view(-1, 1))
    return torch.sqrt(torch.exp(-(d**2) / kernel_width**2))


def weighted_ridge(samples: Tensor, scores: Tensor, weights: Tensor, alpha: float) -> tuple[Tensor, Tensor]:
    r"""Batched weighted ridge regression with an unpenalized intercept (scikit-learn's ``Ridge(alpha,
    fit_intercept=True).fit(Z, y, sample_weight=w)``), float64.

    ``samples`` (N, S, F), ``scores`` (N, S), ``weights`` (N, S). Centers Z and y by their weighted
    means, then solves :math:`(Z_c^\top W Z_c + \alpha I)\beta = Z_c^\top W y_c`; the intercept is
    :math:`\bar y - \bar z^\top \beta`. Columns that are zero in every sample get :math:`\beta = 0`.
    Returns ``(coef (N, F), intercept (N,))``.
    """
    z, y, wt = samples.double(), scores.double(), weights.double()
    wsum = wt.sum(1, keepdim=True)
    zm = (wt.unsqueeze(-1) * z).sum(1, keepdim=True) / wsum.unsqueeze(-1)  # (N, 1, F)
    ym = (wt * y).sum(1, keepdim=True) / wsum  # (N, 1)
    zc, yc = z - zm, y - ym
    a = zc.transpose(1, 2) @ (wt.unsqueeze(-1) * zc)
    a = a + alpha * torch.eye(z.shape[-1], dtype=z.dtype, device=z.device)
    b = zc.transpose(1, 2) @ (wt * yc).unsqueeze(-1)
    coef = torch.linalg.solve(a, b).squeeze(-1)
    intercept = ym.squeeze(1) - (zm.squeeze(1) * coef).sum(-1)
    return coef, intercept


class LimeFit(NamedTuple):
    """What :meth:`Lime.fit` computed: per-image superpixel weights and everything they came from.

    ``coef`` (N, F_max) and ``intercept`` (N,) of the surrogate; ``segments`` (N, H, W) labels;
    ``num_features`` (N,) superpixels per image (columns beyond are 0); ``samples`` (N, S, F_max) the
    on/off patterns (1 = kept); ``scores`` (N, S) the model's scores of the patterns; ``weights`` (N, S)
    the kernel weights.
    """

    coef: Tensor
    intercept: Tensor
    segments: Tensor
    num_features: Tensor
    samples: Tensor
    scores: Tensor
    weights: Tensor


class Lime(RemovalExplainer):
    r"""LIME over superpixels, LIME / LIME-G (Ribeiro, Singh & Guestrin 2016; Agarwal & Nguyen 2020).

    Each image is cut into superpixels (``segmentation="slic"``: :func:`slic_segments`; ``"grid"``: a
    ``grid_size`` square grid; or a function ``inputs -> (N, H, W)`` integer labels). ``num_samples``
    on/off patterns :math:`z \in \{0,1\}^F` are drawn (the first: all on), each scored with its "off"
    superpixels removed by the ``filler``; a ridge regression of the score on :math:`z` with weights
    :math:`\pi(z) = \sqrt{\exp(-d(z, \mathbf 1)^2 / w^2)}` (``d`` the cosine distance, ``w`` =
    ``kernel_width``) and penalty ``alpha`` gives one coefficient per superpixel: the map paints it on
    the superpixel. Signed; higher = the superpixel supports the class.

    Defaults are the seed code's: ``num_samples=500``, SLIC ``n_segments=50, compactness=30, sigma=3``,
    ``kernel_width=0.25`` (lime_image's), ``alpha=1`` (LIME's ``Ridge(alpha=1)``), ``filler="zeros"``
    (the seed code fills with the ImageNet mean colour, i.e. 0 in normalized space),
    ``score="probability"``. :meth:`generative` gives LIME-G. :meth:`fit` returns the coefficients,
    patterns and scores.

    Where we differ from LIME's code: the patterns come from ``generator``/``seed`` (one set shared by
    every image of the call) instead of NumPy's global RNG; LIME's ``feature_selection="auto"`` keeps
    every feature at the default ``num_features=100000``, so we skip it; SLIC runs on a min–max scaled
    copy of the model's input (see :func:`slic_segments`) rather than on the uint8 image.

    Cost: ``N · num_samples`` model evaluations, ``chunk_size`` per call.

    Example:
        >>> import torch
        >>> from pl_saliency.explainers.removal import Lime
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3))
        >>> x, y = torch.rand(2, 1, 8, 8), torch.tensor([0, 2])
        >>> Lime(segmentation="grid", grid_size=4, num_samples=50)(model, x, y).shape
        torch.Size([2, 1, 8, 8])
    """

    default_name = "lime"

    def __init__(
        self,
        num_samples: int = 500,
        segmentation: str | Callable[[Tensor], Tensor] = "slic",
        *,
        n_segments: int = 50,
        compactness: float = 30.0,
        sigma: float = 3.0,
        grid_size: int | tuple[int, int] = 8,
        slic_image: Callable[[Tensor], Tensor] | None = None,
        kernel_width: float = 0.25,
        alpha: float = 1.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.num_samples = check_positive_int("num_samples", num_samples, minimum=2)
        if not callable(segmentation):
            check_choice("segmentation", segmentation, SEGMENTATIONS)
        self.segmentation = segmentation
        self.n_segments = check_positive_int("n_segments", n_segments)
        self.compactness = _check_float("compactness", compactness, 0.0, low_open=True)
        self.sigma = _check_float("sigma", sigma, 0.0)
        self.grid_size = _check_pair("grid_size", grid_size)
        if slic_image is not None and not callable(slic_image):
            raise TypeError(f"Argument `slic_image` must be a function inputs -> images or None, but got {type(slic_image).__name__}.")
        self.slic_image = slic_image
        self.kernel_width = _check_float("kernel_width", kernel_width, 0.0, low_open=True)
        self.alpha = _check_float("alpha", alpha, 0.0, low_open=True)

    def _repr_items(self) -> str:
        seg = self.segmentation if isinstance(self.segmentation, str) else getattr(self.segmentation, "__name__", "function")
        return f"num_samples={self.num_samples}, segmentation={seg!r}, {super()._repr_items()}"

    def segments(self, inputs: Tensor) -> Tensor:
        """Superpixel labels (N, H, W) long, 0 … F_n − 1 per image."""
        n, _, h, w = inputs.shape
        if self.segmentation == "slic":
            return slic_segments(inputs, self.n_segments, self.compactness, self.sigma, self.slic_image)
        if self.segmentation == "grid":
            return grid_segments(h, w, self.grid_size, inputs.device).expand(n, h, w).clone()
        seg = self.segmentation(inputs.detach())  # type: ignore[operator]
        if not isinstance(seg, Tensor) or seg.shape not in ((n, h, w), (n, 1, h, w)) or seg.is_floating_point() or seg.dtype == torch.bool:
            got = f"{tuple(seg.shape)} {seg.dtype}" if isinstance(seg, Tensor) else type(seg).__name__
            raise ValueError(f"Argument `segmentation` must return integer labels of shape ({n}, {h}, {w}), but returned {got}.")
        seg = seg.reshape(n, h, w).to(inputs.device)
        return torch.stack([torch.unique(s, return_inverse=True)[1] for s in seg]).long()  # relabel 0 … F − 1

    def fit(self, model: Callable[[Tensor], Any], inputs: Tensor, target: Tensor) -> LimeFit:
        """Run LIME and return the surrogate's coefficients with the patterns, scores and weights
        (:class:`LimeFit`); the map of ``__call__`` paints ``coef`` on ``segments``."""
        holder: dict[str, LimeFit] = {}

        def _keep(forward: Callable[[Tensor], Tensor], x: Tensor, t: Tensor) -> Tensor:
            holder["fit"] = self._fit(forward, x, t)
            return torch.zeros(x.shape[0], 1, *x.shape[-2:], dtype=x.dtype, device=x.device)

        from pl_saliency.explainers.base import FunctionExplainer

        FunctionExplainer(_keep, output_transform=self.output_transform)(model, inputs, target)
        return holder["fit"]

    def _fit(self, forward: Callable[[Tensor], Tensor], inputs: Tensor, target: Tensor) -> LimeFit:
        x = inputs.detach()
        n, _, h, w = x.shape
        seg = self.segments(x)  # (N, H, W)
        nfeat = seg.flatten(1).amax(1) + 1  # (N,)
        fmax = int(nfeat.max())
        g = self._generator(x)
        z = lime_samples(self.num_samples, fmax, g, x)  # (S, Fmax), shared by the images
        s = self.num_samples
        zn = z.unsqueeze(0).expand(n, s, fmax) * (torch.arange(fmax, device=x.device)[None, :] < nfeat[:, None]).unsqueeze(1)
        scores = torch.empty(n * s, dtype=torch.float64, device=x.device)
        with torch.no_grad():
            substrate = self._substrate(x, g)
            flat_seg = seg.reshape(n, -1)
            for start in range(0, n * s, self.chunk_size):
                idx = torch.arange(start, min(start + self.chunk_size, n * s), device=x.device)
                i, j = idx // s, idx % s
                kept = torch.gather(z[j], 1, flat_seg[i])  # (B, H*W): the pattern painted on the segments
                removed = (kept < 0.5).view(-1, 1, h, w)
                xk = self._remove(x[i], removed, None if substrate is None else substrate[i], g)
                scores[idx] = self._scores(forward, xk, target[i])
        scores = scores.view(n, s)
        weights = lime_kernel_weights(zn, nfeat, self.kernel_width)
        coef, intercept = weighted_ridge(zn, scores, weights, self.alpha)
        return LimeFit(coef, intercept, seg, nfeat, zn, scores, weights)

    def _attribute(self, model: Any, forward: Callable[[Tensor], Tensor], inputs: Tensor, target: Tensor) -> Tensor:
        fit = self._fit(forward, inputs, target)
        n, _, h, w = inputs.shape
        return torch.gather(fit.coef, 1, fit.segments.reshape(n, -1)).view(n, 1, h, w).to(inputs.dtype)


# --------------------------------------------------------------------------------------------------
# Meaningful perturbation
# --------------------------------------------------------------------------------------------------


def tv_norm(mask: Tensor, beta: float = 3.0) -> Tensor:
    r"""Total variation of (N, 1, h, w) masks as the seed code's ``tv_norm``, per mask (N,):
    :math:`\sum |m_{i,j} - m_{i+1,j}|^\beta + \sum |m_{i,j} - m_{i,j+1}|^\beta`."""
    rows = (mask[..., :-1, :] - mask[..., 1:, :]).abs().pow(beta).flatten(1).sum(1)
    cols = (mask[..., :, :-1] - mask[..., :, 1:]).abs().pow(beta).flatten(1).sum(1)
    return rows + cols


def binarize_threshold(mask: Tensor) -> Tensor:
    """The seed code's binarization level per mask (N, 1, 1, 1): ``max(0.5, 0.5 (max + min))``."""
    flat = mask.detach().flatten(1)
    level = 0.5 * (flat.amax(1) + flat.amin(1))
    return level.clamp(min=0.5).view(-1, 1, 1, 1)


class MeaningfulPerturbation(RemovalExplainer):
    r"""Meaningful perturbation, MP / MP-G (Fong & Vedaldi, ICCV 2017; Agarwal & Nguyen 2020).

    A mask :math:`m \in [0,1]^{h \times w}` (1 = keep) is upsampled to the image (``upsample``), and the
    image with the unkept part deleted, :math:`x' = x \odot m + b \odot (1 - m)`, is scored. Adam
    (``lr``) minimizes, for ``iterations`` steps,

    .. math:: \lambda_1 \lVert 1 - m \rVert_1 + \lambda_{TV} \sum (|\nabla_r m|^\beta + |\nabla_c m|^\beta) + s_c(x'),

    clamping :math:`m` to [0, 1] after each step; the map is :math:`1 - m` (at mask resolution,
    upsampled bilinearly to the input by the explainer's rule). Higher = deleting it kills the class.

    The deletion ``b``: a mask-independent ``filler`` gives its substrate (default: Gaussian blur with
    ``sigma=10``, the seed code's PIL blur radius 10); a mask-dependent one (an inpainter, ``"telea"``)
    is called at every step on the mask binarized at ``max(0.5, (max + min) / 2)`` (its holes are the
    positions below). With ``perturb_binary`` (default: on for mask-dependent fillers, off otherwise, as
    the seed code's MP-G / MP) the composite uses that binary mask in the forward pass and the soft
    mask's gradient (straight-through), as the seed code does by overwriting the mask's data.

    Jitter (``jitter`` = 4, seed code): at every step the image (and substrate) are padded by
    ``jitter`` pixels at the bottom/right (border replicated) and cropped at a random offset in
    ``[0, jitter)²``, the same offset for all images of the call.

    Defaults (seed code): ``mask_size`` = ``H // 8`` × ``W // 8`` (28 × 28 at 224²), nearest
    upsampling, ``init="uniform"`` (U(0, 1), the same draw for every image, as the seed code reseeds per
    image; ``"ones"``: keep everything), ``iterations=300``, ``lr=0.1``, ``l1_coeff=1e-4``,
    ``tv_coeff=1e-2``, ``tv_beta=3``, ``score="probability"``. :meth:`generative` gives MP-G.

    Gradients come from ``torch.autograd.grad`` with respect to the mask only; the model's parameters
    and their ``.grad`` are never touched. ``chunk_size`` images are optimized together (each has its
    own mask and loss, so the result does not depend on ``chunk_size``).

    Where we differ from the seed code: the blur is our separable Gaussian (reflect padding) rather than
    PIL's; jitter pads the given image instead of re-cropping a larger resize of the original photo;
    the seed code's "circular" initialization is not offered.

    Cost: ``iterations`` forward + backward passes per chunk (plus, with a mask-dependent filler,
    ``iterations`` filler calls per chunk).

    Example:
        >>> import torch
        >>> from pl_saliency.explainers.removal import MeaningfulPerturbation
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3))
        >>> x, y = torch.rand(2, 1, 8, 8), torch.tensor([0, 2])
        >>> MeaningfulPerturbation(mask_size=4, iterations=5)(model, x, y).shape
        torch.Size([2, 1, 8, 8])
    """

    default_name = "meaningful_perturbation"

    def __init__(
        self,
        mask_size: int | tuple[int, int] | None = None,
        *,
        iterations: int = 300,
        lr: float = 0.1,
        l1_coeff: float = 1e-4,
        tv_coeff: float = 1e-2,
        tv_beta: float = 3.0,
        jitter: int = 4,
        upsample: str = "nearest",
        init: str = "uniform",
        perturb_binary: bool | None = None,
        **kwargs: Any,
    ) -> None:
        if kwargs.get("filler") is None:
            kwargs["filler"] = Blur(sigma=10.0, kernel_size=None)
        super().__init__(**kwargs)
        self.mask_size = None if mask_size is None else _check_pair("mask_size", mask_size)
        self.iterations = check_positive_int("iterations", iterations)
        self.lr = _check_float("lr", lr, 0.0, low_open=True)
        self.l1_coeff = _check_float("l1_coeff", l1_coeff, 0.0)
        self.tv_coeff = _check_float("tv_coeff", tv_coeff, 0.0)
        self.tv_beta = _check_float("tv_beta", tv_beta, 1.0)
        self.jitter = check_positive_int("jitter", jitter, minimum=0)
        check_choice("upsample", upsample, UPSAMPLINGS)
        check_choice("init", init, INITS)
        self.upsample, self.init = upsample, init
        if perturb_binary is None:
            perturb_binary = self.filler.mask_dependent
        self.perturb_binary = _check_bool("perturb_binary", perturb_binary)

    def _repr_items(self) -> str:
        return f"mask_size={self.mask_size}, iterations={self.iterations}, {super()._repr_items()}"

    def _mask_shape(self, h: int, w: int) -> tuple[int, int]:
        if self.mask_size is None:
            return max(1, h // 8), max(1, w // 8)
        _check_fits("mask_size", self.mask_size, (h, w))
        return self.mask_size

    def _upsampled(self, mask: Tensor, size: tuple[int, int]) -> Tensor:
        if self.upsample == "nearest":
            return F.interpolate(mask, size=size, mode="nearest")
        return F.interpolate(mask, size=size, mode="bilinear", align_corners=False)

    def _attribute(self, model: Any, forward: Callable[[Tensor], Tensor], inputs: Tensor, target: Tensor) -> Tensor:
        x = inputs.detach()
        n, _, h, w = x.shape
        mh, mw = self._mask_shape(h, w)
        g = self._generator(x)
        if self.init == "uniform":
            init = _uniform((mh, mw), g, x).to(x.dtype)
        else:
            init = torch.ones(mh, mw, dtype=x.dtype, device=x.device)
        j = self.jitter
        offsets = _randint(j, (self.iterations, 2), g, x).tolist() if j > 0 else [[0, 0]] * self.iterations
        with torch.no_grad():
            padded = F.pad(x, (0, j, 0, j), mode="replicate") if j > 0 else x
            substrate = self._substrate(padded, g)
        out = []
        for start in range(0, n, self.chunk_size):
            sl = slice(start, start + self.chunk_size)
            out.append(self._optimize(forward, padded[sl], None if substrate is None else substrate[sl], target[sl], init, offsets, (h, w), g))
        return 1.0 - torch.cat(out)

    def _optimize(
        self,
        forward: Callable[[Tensor], Tensor],
        padded: Tensor,
        substrate: Tensor | None,
        target: Tensor,
        init: Tensor,
        offsets: list[list[int]],
        size: tuple[int, int],
        g: torch.Generator,
    ) -> Tensor:
        h, w = size
        mask = init.expand(padded.shape[0], 1, *init.shape).clone().requires_grad_(True)
        optimizer = torch.optim.Adam([mask], lr=self.lr)
        for j1, j2 in offsets:
            img = padded[..., j1 : j1 + h, j2 : j2 + w]
            up = self._upsampled(mask, (h, w))
            if self.filler.mask_dependent or self.perturb_binary:
                binary = (up.detach() > binarize_threshold(up)).to(up.dtype)
            if self.filler.mask_dependent:
                with torch.no_grad():
                    base = self.filler(img, binary < 0.5, g)
            else:
                base = substrate[..., j1 : j1 + h, j2 : j2 + w]  # type: ignore[index]
            comp = up + (binary - up).detach() if self.perturb_binary else up
            perturbed = img * comp + base * (1 - comp)
            loss = (
                self.l1_coeff * (1 - mask).abs().flatten(1).sum(1)
                + self.tv_coeff * tv_norm(mask, self.tv_beta)
                + class_scores(forward(perturbed), target, self.score)
            ).sum()
            (grad,) = torch.autograd.grad(loss, [mask])
            mask.grad = grad
            optimizer.step()
            with torch.no_grad():
                mask.clamp_(0, 1)
        return mask.detach()


# --------------------------------------------------------------------------------------------------
# RISE
# --------------------------------------------------------------------------------------------------


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


class RiseMasks:
    """RISE's random masks (Petsiuk et al. 2018), drawn once and rendered on demand.

    ``num_masks`` binary grids of ``cells`` × ``cells`` (1 = keep with probability ``p``) are upsampled
    linearly to ``(cells + 1) · ceil(H / cells)`` × ``(cells + 1) · ceil(W / cells)`` exactly as the RISE
    code's ``skimage.transform.resize(grid, up_size, order=1, mode="reflect", anti_aliasing=False)``
    (mirrored borders, :func:`mirror_interpolation`), and cropped to H × W at a random shift in
    ``[0, ceil(H / cells)) × [0, ceil(W / cells))``. Each mask comes from its own row of ``cells² + 2``
    uniforms drawn from ``generator`` (grid values, then the two shifts), so mask i is the same whatever
    ``num_masks`` (> i) is. ``masks(idx)`` renders any subset as (B, 1, H, W) float (only the cropped
    rows and columns are computed).
    """

    def __init__(self, num_masks: int, size: tuple[int, int], cells: int, p: float, generator: torch.Generator, device: torch.device | None = None) -> None:
        like = torch.empty(0, device=device)
        self.size, self.cells = size, cells
        h, w = size
        self.cell = (math.ceil(h / cells), math.ceil(w / cells))
        u = _uniform((num_masks, cells * cells + 2), generator, like)
        self.grids = (u[:, : cells * cells] < p).double().view(num_masks, cells, cells)
        self.shift_r = (u[:, -2] * self.cell[0]).long().clamp(max=self.cell[0] - 1)
        self.shift_c = (u[:, -1] * self.cell[1]).long().clamp(max=self.cell[1] - 1)
        self.interp_r = mirror_interpolation(cells, (cells + 1) * self.cell[0], like.device)
        self.interp_c = mirror_interpolation(cells, (cells + 1) * self.cell[1], like.device)

    def __len__(self) -> int:
        return len(self.grids)

    def masks(self, idx: Tensor) -> Tensor:
        h, w = self.size
        rows = self.shift_r[idx][:, None] + torch.arange(h, device=self.grids.device)  # (B, H)
        cols = self.shift_c[idx][:, None] + torch.arange(w, device=self.grids.device)  # (B, W)
        out = self.interp_r[rows] @ self.grids[idx] @ self.interp_c[cols].transpose(1, 2)  # (B, H, W)
        return out.float().unsqueeze(1)


def rise_masks(
    num_masks: int, size: tuple[int, int], cells: int = 7, p: float = 0.5, generator: torch.Generator | None = None
) -> Tensor:
    """All of RISE's masks (num_masks, 1, H, W) at once, as :class:`RISE` draws them (see
    :class:`RiseMasks`); for inspection and tests — :class:`RISE` renders them chunk by chunk."""
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    ms = RiseMasks(check_positive_int("num_masks", num_masks), size, check_positive_int("cells", cells), _check_float("p", p, 0.0, 1.0, low_open=True), g)
    return ms.masks(torch.arange(num_masks))


class RISE(RemovalExplainer):
    r"""RISE: randomized input sampling for explanation (Petsiuk, Das & Saenko, BMVC 2018).

    With ``num_masks`` random smooth masks :math:`M_i \in [0,1]^{H \times W}` (:class:`RiseMasks`:
    binary ``cells`` × ``cells`` grids kept with probability ``p``, bilinearly upsampled and randomly
    shifted), the map is the Monte-Carlo estimate

    .. math:: S(p) = \frac{1}{N p} \sum_{i=1}^{N} s_c(x \odot M_i + b \odot (1 - M_i))\, M_i(p)

    of :math:`E[s_c(\tilde x) M(p)] / p` (the score's expectation given that p is kept). ``b`` is the
    ``filler``'s substrate (default ``"zeros"``: RISE's :math:`x \odot M`); a mask-dependent filler
    is called with the positions where :math:`M < 1/2` removed. Non-negative for probabilities; higher =
    the class score is high when the pixel is kept.

    Defaults: ``num_masks=4000``, ``cells=7``, ``p=0.5`` (the paper's ResNet-50 setting, as we recall
    it; the authors' notebook uses 6000, 8, 0.1), ``score="probability"``. The same masks serve every
    image of a call (as RISE does), drawn from ``generator`` or a fresh generator seeded ``seed``.

    Cost: ``N · num_masks`` model evaluations, ``chunk_size`` per call; masks are rendered per chunk, so
    memory does not grow with ``num_masks``.

    Example:
        >>> import torch
        >>> from pl_saliency.explainers.removal import RISE
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3))
        >>> x, y = torch.rand(2, 1, 8, 8), torch.tensor([0, 2])
        >>> RISE(num_masks=100, cells=4)(model, x, y).shape
        torch.Size([2, 1, 8, 8])
    """

    default_name = "rise"

    def __init__(self, num_masks: int = 4000, cells: int = 7, p: float = 0.5, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.num_masks = check_positive_int("num_masks", num_masks)
        self.cells = check_positive_int("cells", cells)
        self.p = _check_float("p", p, 0.0, 1.0, low_open=True)

    def _repr_items(self) -> str:
        return f"num_masks={self.num_masks}, cells={self.cells}, p={self.p:g}, {super()._repr_items()}"

    def _attribute(self, model: Any, forward: Callable[[Tensor], Tensor], inputs: Tensor, target: Tensor) -> Tensor:
        x = inputs.detach()
        n, _, h, w = x.shape
        if self.cells > min(h, w):
            raise ValueError(f"Argument `cells` must be at most the image side {min(h, w)}, but got {self.cells}.")
        g = self._generator(x)
        masks = RiseMasks(self.num_masks, (h, w), self.cells, self.p, g, x.device)
        m = self.num_masks
        total = torch.zeros(n, 1, h, w, dtype=torch.float64, device=x.device)
        with torch.no_grad():
            substrate = self._substrate(x, g)
            for start in range(0, n * m, self.chunk_size):
                idx = torch.arange(start, min(start + self.chunk_size, n * m), device=x.device)
                i, k = idx // m, idx % m
                mk = masks.masks(k).to(x.dtype)
                xi = x[i]
                if substrate is None:
                    base = self.filler(xi, mk < 0.5, g)
                else:
                    base = substrate[i]
                s = self._scores(forward, xi * mk + base * (1 - mk), target[i])
                total.index_add_(0, i, s.view(-1, 1, 1, 1) * mk.double())
        return (total / (m * self.p)).to(x.dtype)


__all__ = [
    "MeaningfulPerturbation",
    "RISE",
    "Lime",
    "LimeFit",
    "RemovalExplainer",
    "RiseMasks",
    "SlidingPatchOcclusion",
    "binarize_threshold",
    "grid_segments",
    "lime_kernel_weights",
    "lime_samples",
    "mirror_interpolation",
    "rise_masks",
    "slic_segments",
    "tv_norm",
    "weighted_ridge",
    "window_starts",
]
