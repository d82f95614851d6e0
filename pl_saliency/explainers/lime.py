r"""LIME over superpixels, LIME / LIME-G (Ribeiro, Singh & Guestrin 2016; Agarwal & Nguyen, ACCV 2020):
a kernel-weighted ridge regression of the class score on random on/off superpixel patterns, batched
(the seed code's ``formal_LIME_single_image.py`` + its modified ``lime_image.py``)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from pl_saliency._keywords import keyword_only
from pl_saliency.explainers.removal_base import RemovalExplainer
from pl_saliency.explainers.removal_base import _check_float
from pl_saliency.explainers.removal_base import _check_pair
from pl_saliency.explainers.removal_base import _uniform
from pl_saliency.utils import check_choice
from pl_saliency.utils import check_positive_int

SEGMENTATIONS: tuple[str, ...] = ("slic", "grid")


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

    Example: one for all four removal explainers, in :mod:`pl_saliency.explainers.removal`.
    """

    default_name = "lime"

    @keyword_only
    def __init__(
        self,
        *,
        num_samples: int = 500,
        segmentation: str | Callable[[Tensor], Tensor] = "slic",
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


__all__ = ["SEGMENTATIONS", "Lime", "LimeFit", "grid_segments", "lime_kernel_weights", "lime_samples", "slic_segments", "weighted_ridge"]
