r"""Localization: does the saliency map point at the annotated object? Needs no model.

Ground truth is a binary mask (N, 1, H, W) (or (N, H, W); bool or 0/1 values) or one box per sample
(N, 4) as ``(x0, y0, x1, y1)`` in pixel coordinates with an **exclusive** end: pixel (row v, column
u) is inside when its centre lies in the box, ``x0 <= u + 0.5 < x1`` and ``y0 <= v + 0.5 < y1``;
for integer boxes that is ``mask[y0:y1, x0:x1]``, as Python slicing (torchvision's
``masks_to_boxes`` returns the *inclusive* last index: add 1 to its x1 and y1). A sample whose
ground truth is empty has no defined score: NaN, excluded from every mean (never a hit, never 0).

* **Pointing game** (Zhang, Bargal, Lin, Brandt, Shen & Sclaroff, ECCV 2016 / IJCV 2018,
  "Top-down neural attention by excitation backprop"): the maximum point of the map is a hit when it
  lies in the mask or closer than ``tolerance`` pixels to it (Euclidean):

  .. math::

      \mathrm{hit}(p) = [\,p \in G\,] \lor [\,\min_{g \in G} \lVert p - g\rVert_2 < \tau\,]

  which is TorchRay's test ``(du^2 + dv^2) < tolerance^2`` (strict), plus "inside the mask" so
  that ``tolerance=0`` means exactly inside. Default ``tolerance=15`` px, as the paper and TorchRay
  (for images of about 224 px; scale it with the image size). When several positions share the
  maximum: ``ties="mean"`` (default) scores the share of maximal positions that hit, the expected
  hit under uniform random tie-breaking (a constant map scores the chance level, not 1);
  ``ties="any"`` is Quantus's rule (a hit if any maximal position hits). **Higher is better.**
* **Energy-based pointing game** (Wang et al., CVPR-W 2020, "Score-CAM"): the share of the map's
  positive energy inside the ground truth, ``sum_{G} a+ / sum a+`` with ``a+ = max(a, 0)``; NaN
  when the map has no positive value. **Higher is better.**
* **Relevance mass accuracy** (Arras, Osman & Samek, Information Fusion 2022, "CLEVR-XAI"):
  ``sum_{G} r / sum r``; and **relevance rank accuracy**: the share of the ``K = |G|`` highest
  relevance positions that fall in G. ``r`` is ``|a|`` (``relevance="abs"``, default),
  ``max(a, 0)`` (``"positive"``) or ``a`` (``"signed"``, Quantus's default ``abs=False``; not
  bounded to [0, 1]). Ties at the K-th rank are scored by their expectation under uniform random
  tie-breaking. **Higher is better.**

Where we differ: TorchRay averages the pointing game per class, then over classes; our metrics
average over samples (keep per-sample scores with ``keep_per_sample=True`` to group by class).
Quantus 0.6 counts an empty mask as a hit (its NaN is written into a bool array); we return NaN.
Arras et al. pool C-channel heatmaps to a non-negative map (their poolings "max-norm", "sum,abs",
"l1/l2-norm", "sum,pos"); our maps are already one channel, for which all of those but "sum,pos"
(``relevance="positive"``) are ``|a|``. Score-CAM's maps are non-negative; we take the positive
part of signed maps and do not min-max normalize (which would change the ratio).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from pl_saliency.functional.complexity import _check_maps
from pl_saliency.functional.complexity import _reduce
from pl_saliency.utils import SCORE_REDUCTIONS
from pl_saliency.utils import check_choice

TIES: tuple[str, ...] = ("mean", "any")
RELEVANCE: tuple[str, ...] = ("abs", "positive", "signed")


def check_tolerance(tolerance: Any) -> float:
    """A finite number of pixels >= 0."""
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)):
        raise TypeError(f"Argument `tolerance` must be a number of pixels >= 0, but got {type(tolerance).__name__} {tolerance!r}.")
    if not math.isfinite(tolerance) or tolerance < 0:
        raise ValueError(f"Argument `tolerance` must be >= 0, but got {tolerance}.")
    return float(tolerance)


def check_masks(masks: Any, batch_size: int, size: tuple[int, int] | None = None, name: str = "masks") -> Tensor:
    """Binary ground-truth masks (N, 1, H, W) or (N, H, W), bool or 0/1 values → bool (N, 1, H, W)."""
    if not isinstance(masks, Tensor):
        raise TypeError(f"Argument `{name}` must be a torch.Tensor of shape (N, 1, H, W), but got {type(masks).__name__}.")
    if masks.ndim == 3:
        masks = masks.unsqueeze(1)
    if masks.ndim != 4 or masks.shape[1] != 1:
        raise ValueError(f"Argument `{name}` must have shape (N, 1, H, W) or (N, H, W), but got shape {tuple(masks.shape)}.")
    if masks.shape[0] != batch_size:
        raise ValueError(f"Argument `{name}` must have the batch size of `saliency` ({batch_size}), but got shape {tuple(masks.shape)}.")
    if size is not None and tuple(masks.shape[-2:]) != tuple(size):
        raise ValueError(f"Argument `{name}` must have the image size {tuple(size)}, but got shape {tuple(masks.shape)}.")
    if masks.is_complex():
        raise TypeError(f"Argument `{name}` must be bool or hold 0/1 values, but got dtype {masks.dtype}.")
    if masks.dtype != torch.bool:
        if masks.numel() and not ((masks == 0) | (masks == 1)).all():
            lo, hi = masks.min().item(), masks.max().item()
            raise ValueError(f"Argument `{name}` must be binary (bool, or 0/1 values), but got values in [{lo}, {hi}].")
        masks = masks != 0
    return masks


def boxes_to_masks(boxes: Any, batch_size: int, size: tuple[int, int], name: str = "boxes") -> Tensor:
    """Boxes (N, 4) ``(x0, y0, x1, y1)``, exclusive end, in pixels of an (H, W) image → bool (N, 1, H, W)."""
    h, w = size
    if not isinstance(boxes, Tensor):
        raise TypeError(f"Argument `{name}` must be a torch.Tensor of shape ({batch_size}, 4), but got {type(boxes).__name__}.")
    if boxes.shape != (batch_size, 4):
        raise ValueError(
            f"Argument `{name}` must have shape ({batch_size}, 4) as (x0, y0, x1, y1) per sample, but got shape {tuple(boxes.shape)}."
        )
    if boxes.dtype == torch.bool or boxes.is_complex():
        raise TypeError(f"Argument `{name}` must hold pixel coordinates (int or float), but got dtype {boxes.dtype}.")
    b = boxes.double()
    if not torch.isfinite(b).all():
        raise ValueError(f"Argument `{name}` must be finite, but it contains NaN or Inf values.")
    x0, y0, x1, y1 = b.unbind(1)
    flipped = (x1 < x0) | (y1 < y0)
    if flipped.any():
        i = int(flipped.nonzero()[0])
        raise ValueError(
            f"Argument `{name}` must have x0 <= x1 and y0 <= y1 in each (x0, y0, x1, y1), but box {i} is {tuple(boxes[i].tolist())}."
        )
    outside = (x0 < 0) | (y0 < 0) | (x1 > w) | (y1 > h)
    if outside.any():
        i = int(outside.nonzero()[0])
        raise ValueError(
            f"Argument `{name}` must lie inside the {h}x{w} image (0 <= x0 <= x1 <= {w}, 0 <= y0 <= y1 <= {h}), "
            f"but box {i} is {tuple(boxes[i].tolist())}."
        )
    cu = torch.arange(w, dtype=b.dtype, device=b.device) + 0.5
    cv = torch.arange(h, dtype=b.dtype, device=b.device) + 0.5
    cols = (x0[:, None] <= cu) & (cu < x1[:, None])  # (N, W)
    rows = (y0[:, None] <= cv) & (cv < y1[:, None])  # (N, H)
    return (rows[:, :, None] & cols[:, None, :]).unsqueeze(1)


def _prepare(saliency: Tensor, masks: Tensor | None, boxes: Tensor | None) -> tuple[Tensor, Tensor]:
    """Validated (N, 1, H, W) float map and bool ground truth on the map's device."""
    if masks is not None and boxes is not None:
        raise ValueError("Arguments `masks` and `boxes` are exclusive: pass one kind of ground truth, but got both.")
    if masks is None and boxes is None:
        raise ValueError("Argument `masks` or `boxes` is required: the ground truth of the localization metric is missing.")
    size = None
    if isinstance(masks, Tensor) and masks.ndim in (3, 4):
        size = tuple(masks.shape[-2:])
    sal = _check_maps(saliency, size)
    n, _, h, w = sal.shape
    gt = check_masks(masks, n, (h, w)) if masks is not None else boxes_to_masks(boxes, n, (h, w))
    return sal, gt.to(sal.device)


def _relevance(saliency: Tensor, relevance: str) -> Tensor:
    if relevance == "abs":
        return saliency.abs()
    if relevance == "positive":
        return saliency.clamp_min(0)
    return saliency


def _nan_where(values: Tensor, undefined: Tensor) -> Tensor:
    return torch.where(undefined, torch.full_like(values, float("nan")), values)


def _hit_region(gt: Tensor, tolerance: float) -> Tensor:
    """Positions in the mask or closer than ``tolerance`` pixels to it (dilation by an open disk).

    Exact and O(r·H·W): for each row offset ``dy`` with ``dy^2 < tolerance^2`` a position hits when
    row ``v + dy`` of the mask has a pixel within the half-width ``k`` (the largest integer with
    ``dy^2 + k^2 < tolerance^2``), counted from prefix sums along the row.
    """
    if tolerance == 0:
        return gt
    h, w = gt.shape[-2:]
    prefix = F.pad(gt.to(torch.int32).cumsum(dim=-1), (1, 0))  # (N, 1, H, W + 1)
    cols = torch.arange(w, device=gt.device)
    out = torch.zeros_like(gt)
    reach = min(math.ceil(tolerance) - 1, h - 1)  # |dy| < tolerance; farther rows never meet the image
    for dy in range(-reach, reach + 1):
        rest = tolerance * tolerance - dy * dy
        if rest <= 0:
            continue
        k = math.ceil(math.sqrt(rest)) - 1
        while k > 0 and k * k >= rest:  # guard the float square root both ways
            k -= 1
        while (k + 1) ** 2 < rest:
            k += 1
        k = min(k, w - 1)
        hi, lo = (cols + k + 1).clamp(max=w), (cols - k).clamp(min=0)
        row_hit = (prefix[..., hi] - prefix[..., lo]) > 0  # (N, 1, H, W): mask row v has a pixel in [u - k, u + k]
        if dy >= 0:
            out[..., : h - dy, :] |= row_hit[..., dy:, :]
        else:
            out[..., -dy:, :] |= row_hit[..., : h + dy, :]
    return out


def _pointing_game_update(saliency: Tensor, gt: Tensor, tolerance: float = 15.0, ties: str = "mean") -> Tensor:
    """Per-sample hit (N,): 1/0, or with ``ties="mean"`` the share of maximal positions that hit.

    NaN for an empty mask."""
    n = saliency.shape[0]
    flat = saliency.reshape(n, -1)
    maxima = flat == flat.amax(dim=1, keepdim=True)
    hits = maxima & _hit_region(gt, tolerance).reshape(n, -1)
    if ties == "any":
        score = hits.any(dim=1).float()
    else:
        score = hits.sum(dim=1).float() / maxima.sum(dim=1).float()
    return _nan_where(score, gt.reshape(n, -1).sum(dim=1) == 0)


def _mass_share(relevance: Tensor, gt: Tensor) -> Tensor:
    n = relevance.shape[0]
    r = relevance.reshape(n, -1).double()
    g = gt.reshape(n, -1)
    total = r.sum(dim=1)
    inside = (r * g).sum(dim=1)
    share = inside / torch.where(total == 0, torch.ones_like(total), total)
    return _nan_where(share, (total == 0) | (g.sum(dim=1) == 0)).float()


def _energy_pointing_game_update(saliency: Tensor, gt: Tensor) -> Tensor:
    """Per-sample share of positive saliency inside the ground truth (N,); NaN when undefined."""
    return _mass_share(saliency.clamp_min(0), gt)


def _relevance_mass_accuracy_update(saliency: Tensor, gt: Tensor, relevance: str = "abs") -> Tensor:
    """Per-sample share of relevance inside the ground truth (N,); NaN when undefined."""
    return _mass_share(_relevance(saliency, relevance), gt)


def _relevance_rank_accuracy_update(saliency: Tensor, gt: Tensor, relevance: str = "abs") -> Tensor:
    """Per-sample share of the K = |G| top-ranked positions inside G (N,); ties at rank K by expectation."""
    n = saliency.shape[0]
    r = _relevance(saliency, relevance).reshape(n, -1)
    g = gt.reshape(n, -1)
    k = g.sum(dim=1)
    ranked, _ = torch.sort(r, dim=1, descending=True)
    kth = ranked.gather(1, (k - 1).clamp_min(0).unsqueeze(1))  # the K-th largest value
    above, tied = r > kth, r == kth
    slots = (k - above.sum(dim=1)).double()  # places at rank K left for the tied positions (>= 1)
    hits = (above & g).sum(dim=1).double() + slots * (tied & g).sum(dim=1).double() / tied.sum(dim=1).double()
    return _nan_where((hits / k.clamp_min(1).double()).float(), k == 0)


def pointing_game(
    saliency: Tensor,
    masks: Tensor | None = None,
    boxes: Tensor | None = None,
    *,
    tolerance: float = 15.0,
    ties: str = "mean",
    reduction: str = "mean",
) -> Tensor:
    """Pointing game (Zhang et al. 2016): does the map's maximum hit the object (within ``tolerance`` px)?

    Args:
        saliency: (N, 1, H, W) maps ((N, H, W) and (N, C, H, W), summed over channels, are accepted);
            a lower resolution than ``masks`` is upsampled bilinearly.
        masks: (N, 1, H, W) binary ground truth; or
        boxes: (N, 4) ``(x0, y0, x1, y1)`` pixel boxes with exclusive end, in the map's pixels.
        tolerance: pixels (Euclidean, strict as TorchRay); 0 = the maximum must lie in the mask.
        ties: ``"mean"`` (share of maximal positions that hit) or ``"any"`` (Quantus).
        reduction: ``"mean"`` over samples with a non-empty ground truth, ``"sum"``, or ``"none"``
            (per-sample (N,), NaN for an empty ground truth).

    Example:
        >>> import torch
        >>> from pl_saliency.functional import pointing_game
        >>> sal = torch.zeros(2, 1, 8, 8)
        >>> sal[0, 0, 2, 2] = 1.0  # inside the box
        >>> sal[1, 0, 7, 7] = 1.0  # 4.2 px from the box's corner pixel (4, 4)
        >>> boxes = torch.tensor([[1, 1, 5, 5], [1, 1, 5, 5]])
        >>> pointing_game(sal, boxes=boxes, tolerance=0, reduction="none")
        tensor([1., 0.])
        >>> pointing_game(sal, boxes=boxes, tolerance=5, reduction="none")
        tensor([1., 1.])
    """
    tolerance = check_tolerance(tolerance)
    check_choice("ties", ties, TIES)
    check_choice("reduction", reduction, SCORE_REDUCTIONS)
    sal, gt = _prepare(saliency, masks, boxes)
    return _reduce(_pointing_game_update(sal, gt, tolerance, ties), reduction)


def energy_pointing_game(
    saliency: Tensor, masks: Tensor | None = None, boxes: Tensor | None = None, *, reduction: str = "mean"
) -> Tensor:
    """Energy-based pointing game (Score-CAM, Wang et al. 2020): share of positive saliency inside the object.

    Arguments as :func:`pointing_game`.

    Example:
        >>> import torch
        >>> from pl_saliency.functional import energy_pointing_game
        >>> sal = torch.tensor([[[[3.0, 1.0], [-2.0, 0.0]]]])
        >>> energy_pointing_game(sal, boxes=torch.tensor([[0, 0, 1, 1]]))  # 3 of 4 positive units
        tensor(0.7500)
    """
    check_choice("reduction", reduction, SCORE_REDUCTIONS)
    sal, gt = _prepare(saliency, masks, boxes)
    return _reduce(_energy_pointing_game_update(sal, gt), reduction)


def relevance_mass_accuracy(
    saliency: Tensor,
    masks: Tensor | None = None,
    boxes: Tensor | None = None,
    *,
    relevance: str = "abs",
    reduction: str = "mean",
) -> Tensor:
    """Relevance mass accuracy (Arras et al. 2022): share of the relevance ``r`` inside the object.

    ``relevance``: ``"abs"`` (``|a|``, default), ``"positive"`` or ``"signed"``; other arguments as
    :func:`pointing_game`.

    Example:
        >>> import torch
        >>> from pl_saliency.functional import relevance_mass_accuracy
        >>> sal = torch.tensor([[[[3.0, 1.0], [-2.0, 0.0]]]])
        >>> relevance_mass_accuracy(sal, boxes=torch.tensor([[0, 0, 1, 1]]))  # 3 of |3|+|1|+|-2|
        tensor(0.5000)
    """
    check_choice("relevance", relevance, RELEVANCE)
    check_choice("reduction", reduction, SCORE_REDUCTIONS)
    sal, gt = _prepare(saliency, masks, boxes)
    return _reduce(_relevance_mass_accuracy_update(sal, gt, relevance), reduction)


def relevance_rank_accuracy(
    saliency: Tensor,
    masks: Tensor | None = None,
    boxes: Tensor | None = None,
    *,
    relevance: str = "abs",
    reduction: str = "mean",
) -> Tensor:
    """Relevance rank accuracy (Arras et al. 2022): share of the ``|G|`` most relevant positions inside G.

    Arguments as :func:`relevance_mass_accuracy`.

    Example:
        >>> import torch
        >>> from pl_saliency.functional import relevance_rank_accuracy
        >>> sal = torch.tensor([[[[3.0, 1.0], [-2.0, 0.0]]]])
        >>> masks = torch.tensor([[[[1, 1], [0, 0]]]])  # |G| = 2: the top two are 3 and -2 (by |a|)
        >>> relevance_rank_accuracy(sal, masks)
        tensor(0.5000)
    """
    check_choice("relevance", relevance, RELEVANCE)
    check_choice("reduction", reduction, SCORE_REDUCTIONS)
    sal, gt = _prepare(saliency, masks, boxes)
    return _reduce(_relevance_rank_accuracy_update(sal, gt, relevance), reduction)
