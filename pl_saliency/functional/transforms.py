r"""Map transforms and oracle maps of Vandersmissen & Oramas ("On the coherency of quantitative evaluation
of visual explanations", arXiv 2302.10764), after their code (``Benjamin-Vandersmissen/quantitative-evaluation``).

Every transform takes maps (N, 1, H, W) or (N, C, H, W) (reduced over channels by ``reduce``, default
sum; the authors' maps are single-channel or averaged over channels, ``temp.py`` l. 11) and returns
float (N, 1, H, W), computed per map.

* :func:`positive_part` — ``sal[sal < 0] = 0`` (``utils.py`` l. 218, ``coarseness.py`` l. 71,
  ``remove_top_percentile.py`` l. 11).
* :func:`minmax_normalize` — ``(s − min) / max(max − min, 5e-6)`` (``utils.py`` ``normalize``
  l. 217-220; the scripts ``remove_top_percentile.py`` l. 14 and ``coarseness.py`` l. 72, 74 divide by
  ``max − min`` without the floor, which gives NaN for a constant map; we always keep the floor).
* :func:`normalize_maps` — the authors' ``utils.normalize``: positive part, then min–max. Every map is
  passed through it before their Average Drop / Increase and deletion / insertion (``main.py`` l. 98).
* :func:`clip_percentile` — ``remove_top_percentile.py`` l. 10-14: positive part, values at or above
  the map's ``q``-th percentile (99, ``np.nanpercentile``'s linear rule) set to it, min–max. It
  removes the few extreme gradient values that make the rest of a map look empty.
* :func:`blur_maps` — ``coarseness.py`` ``blur_saliency`` l. 61-75: positive part, min–max,
  torchvision's ``GaussianBlur(11, 5)`` (reflect padding), min–max: a coarse version of a fine map
  (the paper's coarseness experiment on IG and SmoothGrad).
* :func:`box_maps` — the ground-truth box used as an explanation (``bounding_boxes.py``
  ``make_baseline_saliency_map`` l. 107-112): 1 inside any box of the class, 0 outside; an oracle
  that localizes perfectly whatever the model does.

Higher-is-better does not apply (these are not metrics).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from pl_saliency.functional.localization import boxes_to_masks
from pl_saliency.perturbation.fillers import Blur
from pl_saliency.utils import check_choice
from pl_saliency.utils import reduce_channels

NORMALIZE_EPS: float = 5e-6
"""The authors' floor on ``max − min`` in ``utils.normalize`` (``utils.py`` l. 219)."""


def _maps(saliency: Any, reduce: str = "sum", name: str = "saliency") -> Tensor:
    if not isinstance(saliency, Tensor):
        raise TypeError(f"Argument `{name}` must be a torch.Tensor of shape (N, 1, H, W), but got {type(saliency).__name__}.")
    if saliency.ndim == 3:
        saliency = saliency.unsqueeze(1)
    if saliency.ndim != 4:
        raise ValueError(f"Argument `{name}` must have shape (N, 1, H, W) or (N, C, H, W), but got shape {tuple(saliency.shape)}.")
    s = saliency.detach()
    s = s if s.is_floating_point() else s.float()
    if not torch.isfinite(s).all():
        raise ValueError(f"Argument `{name}` must be finite, but it contains NaN or Inf values.")
    return reduce_channels(s, reduce=reduce) if s.shape[1] > 1 else s


def positive_part(saliency: Tensor, reduce: str = "sum") -> Tensor:
    """``max(s, 0)`` per position: negative evidence dropped, as the authors do before every metric."""
    return _maps(saliency, reduce).clamp(min=0)


def minmax_normalize(saliency: Tensor, eps: float = NORMALIZE_EPS, reduce: str = "sum") -> Tensor:
    """Per map ``(s − min) / max(max − min, eps)``: into [0, 1]; a constant map becomes 0."""
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps > 0:
        raise ValueError(f"Argument `eps` must be a positive number, but got {eps!r}.")
    s = _maps(saliency, reduce)
    flat = s.flatten(1)
    lo = flat.amin(1).view(-1, 1, 1, 1)
    span = (flat.amax(1) - flat.amin(1)).clamp(min=eps).view(-1, 1, 1, 1)
    return (s - lo) / span


def normalize_maps(saliency: Tensor, reduce: str = "sum") -> Tensor:
    """The authors' ``utils.normalize``: :func:`positive_part`, then :func:`minmax_normalize` (floor 5e-6)."""
    return minmax_normalize(positive_part(saliency, reduce))


def map_percentile(saliency: Tensor, q: float) -> Tensor:
    """The ``q``-th percentile (0-100) of each map's values (N,), NumPy's default linear interpolation
    (``np.percentile`` / ``np.nanpercentile``)."""
    if isinstance(q, bool) or not isinstance(q, (int, float)) or not math.isfinite(q) or not 0 <= q <= 100:
        raise ValueError(f"Argument `q` must be a percentile in [0, 100], but got {q!r}.")
    s = _maps(saliency)
    return torch.quantile(s.flatten(1).double(), q / 100.0, dim=1, interpolation="linear").to(s.dtype)


def clip_percentile(saliency: Tensor, q: float = 99.0, reduce: str = "sum") -> Tensor:
    """``remove_top_percentile.py``: positive part, values ``>= p_q`` (the map's ``q``-th percentile)
    set to ``p_q``, then min–max to [0, 1]."""
    s = positive_part(saliency, reduce)
    p = map_percentile(s, q).view(-1, 1, 1, 1)
    return minmax_normalize(torch.where(s >= p, p, s))


def blur_maps(saliency: Tensor, kernel_size: int = 11, sigma: float = 5.0, reduce: str = "sum") -> Tensor:
    """``coarseness.py`` ``blur_saliency``: positive part, min–max, Gaussian blur (``kernel_size``,
    ``sigma``; torchvision's ``GaussianBlur`` kernel and reflect padding), min–max."""
    s = normalize_maps(saliency, reduce)
    blurred = Blur(sigma=sigma, kernel_size=kernel_size).substrate(s)
    return minmax_normalize(blurred)


def box_maps(boxes: Tensor, size: tuple[int, int], dtype: torch.dtype = torch.float32) -> Tensor:
    """The ground-truth box as an explanation (``bounding_boxes.py`` l. 107-112): (N, 1, H, W), 1 inside
    any of the sample's boxes, 0 elsewhere.

    ``boxes`` (N, 4) or (N, B, 4) ``(x0, y0, x1, y1)`` in pixels, exclusive end (the convention of
    :mod:`pl_saliency.functional.localization`; rows of NaN pad (N, B, 4)); a pixel is inside when its
    centre is. Where we differ: the authors' boxes come from rescaled ImageNet XML boxes, truncated to
    ints and drawn with an inclusive end (``int(ymax) + 1``); ours are exact pixel boxes.
    """
    if not isinstance(boxes, Tensor):
        raise TypeError(f"Argument `boxes` must be a torch.Tensor of shape (N, 4) or (N, B, 4), but got {type(boxes).__name__}.")
    if boxes.ndim == 2:
        boxes = boxes.unsqueeze(1)
    if boxes.ndim != 3 or boxes.shape[-1] != 4:
        raise ValueError(f"Argument `boxes` must have shape (N, 4) or (N, B, 4) as (x0, y0, x1, y1), but got shape {tuple(boxes.shape)}.")
    n, b, _ = boxes.shape
    flat = boxes.reshape(n * b, 4).double()
    pad = torch.isnan(flat).all(-1)
    masks = boxes_to_masks(torch.where(pad[:, None], torch.zeros_like(flat), flat), n * b, size)
    masks = masks & ~pad.view(-1, 1, 1, 1)
    return masks.view(n, b, *size).any(1, keepdim=True).to(dtype)


TRANSFORMS: tuple[str, ...] = ("positive", "normalize", "clip99", "blur")


def transform_maps(saliency: Tensor, transform: str) -> Tensor:
    """One of the named transforms: ``"positive"``, ``"normalize"`` (the authors' ``utils.normalize``),
    ``"clip99"`` (:func:`clip_percentile` at 99), ``"blur"`` (:func:`blur_maps` with (11, 5))."""
    check_choice("transform", transform, TRANSFORMS)
    fns = {"positive": positive_part, "normalize": normalize_maps, "clip99": clip_percentile, "blur": blur_maps}
    return fns[transform](saliency)


__all__ = [
    "NORMALIZE_EPS",
    "TRANSFORMS",
    "blur_maps",
    "box_maps",
    "clip_percentile",
    "map_percentile",
    "minmax_normalize",
    "normalize_maps",
    "positive_part",
    "transform_maps",
]
