r"""Box-based metrics of Agarwal & Nguyen (ACCV 2020): the Saliency Metric and object localization.

Both start from the **salient region** of a map: the positions whose value is at least ``threshold``
times the map's maximum, :math:`R_\alpha = \{p : a_p \ge \alpha \max_q a_q\}`, and its tightest box
(x0, y0, x1, y1) in pixels with an **exclusive** end (the region's columns are x0 … x1 − 1), the
convention of :mod:`pl_saliency.functional.localization` and torchvision's ``masks_to_boxes`` + 1. A map
with no positive value marks nothing as salient; its region is the whole image (it localizes nothing).

* **Saliency Metric** (Dabkowski & Gal, NeurIPS 2017, "Real time image saliency for black box
  classifiers"): crop the box, resize the crop (bilinear, ``align_corners=False``, as
  ``F.interpolate``) to the input size, and score it:

  .. math:: \mathrm{SM} = \log\big(\max(a, a_{\min})\big) - \log p_c(\mathrm{crop})

  with ``a`` the box area as a fraction of the image and :math:`a_{\min} = 0.05` (``area_floor``): a
  small box that keeps the class confident scores low. **Lower is better**; the minimum is
  :math:`\log 0.05 \approx -3.0` (natural logarithm). ``log p`` is taken from ``log_softmax``, so a
  vanishing probability gives a large finite score, never ``inf``.
* **Object localization error** (Fong & Vedaldi, ICCV 2017 protocol, as used by Agarwal & Nguyen): the
  map's box is correct when its IoU with a ground-truth box is at least ``iou_threshold`` (0.5); the
  error is 1 − correct, averaged over samples. **Lower is better**, in [0, 1]. Ground truth: one box
  per sample (N, 4) or several (N, B, 4) (correct if any matches; rows of NaN are padding), in pixel
  coordinates with exclusive end. A sample without a non-empty ground-truth box has no defined error
  (NaN, excluded from means). Several ``thresholds`` give one error per level.

Where we differ / what is unconfirmed: how the seed paper thresholds maps for the Saliency Metric is not
confirmed (SEEDS §4.4); we use the value threshold α · max with α = 0.5 by default, the rule
Fong & Vedaldi use for localization (they pick α on a held-out set from a grid 0 : 0.05 : 0.95; with
several ``thresholds`` the metric class reports the best level, which is optimistic when chosen on the
evaluated data — pick α on held-out data and pass that one). Dabkowski & Gal's masks are almost binary,
so their thresholding matters less than for continuous maps.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from pl_saliency.utils import SCORE_REDUCTIONS
from pl_saliency.utils import check_choice
from pl_saliency.utils import check_inputs
from pl_saliency.utils import check_model
from pl_saliency.utils import check_positive_int
from pl_saliency.utils import check_saliency
from pl_saliency.utils import check_target
from pl_saliency.utils import eval_mode
from pl_saliency.utils import model_logits

# --------------------------------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------------------------------


def check_thresholds(thresholds: Any, name: str = "thresholds") -> Tensor:
    """One level or a non-empty sequence of levels in [0, 1] → float64 (L,)."""
    values = [thresholds] if isinstance(thresholds, (int, float)) and not isinstance(thresholds, bool) else thresholds
    if isinstance(values, Tensor):
        values = values.reshape(-1).tolist()
    if not isinstance(values, (list, tuple)) or not values or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in values
    ):
        raise TypeError(f"Argument `{name}` must be a number in [0, 1] or a non-empty sequence of them, but got {thresholds!r}.")
    if not all(math.isfinite(v) and 0 <= v <= 1 for v in values):
        raise ValueError(f"Argument `{name}` must hold numbers in [0, 1], but got {list(values)}.")
    return torch.tensor([float(v) for v in values], dtype=torch.float64)


def _check_unit(name: str, value: Any, low_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise TypeError(f"Argument `{name}` must be a number in {'(' if low_open else '['}0, 1], but got {type(value).__name__} {value!r}.")
    if (value <= 0 if low_open else value < 0) or value > 1:
        raise ValueError(f"Argument `{name}` must be a number in {'(' if low_open else '['}0, 1], but got {value!r}.")
    return float(value)


def check_gt_boxes(boxes: Any, batch_size: int, size: tuple[int, int], name: str = "boxes") -> Tensor:
    """Ground-truth boxes (N, 4) or (N, B, 4) as (x0, y0, x1, y1), exclusive end, inside the (H, W)
    image; rows of NaN are padding. Returns float64 (N, B, 4)."""
    h, w = size
    if boxes is None:
        raise ValueError(
            f"Argument `{name}` is required: pass ground-truth boxes ({batch_size}, 4) as `{name}=` or in `context.extras['boxes']`."
        )
    if not isinstance(boxes, Tensor):
        raise TypeError(f"Argument `{name}` must be a torch.Tensor of shape ({batch_size}, 4), but got {type(boxes).__name__}.")
    if boxes.dtype == torch.bool or boxes.is_complex():
        raise TypeError(f"Argument `{name}` must hold pixel coordinates (int or float), but got dtype {boxes.dtype}.")
    if boxes.ndim == 2:
        boxes = boxes.unsqueeze(1)
    if boxes.ndim != 3 or boxes.shape[0] != batch_size or boxes.shape[-1] != 4:
        raise ValueError(
            f"Argument `{name}` must have shape ({batch_size}, 4) or ({batch_size}, B, 4) as (x0, y0, x1, y1), "
            f"but got shape {tuple(boxes.shape)}."
        )
    b = boxes.detach().double()
    pad = torch.isnan(b).all(-1)
    real = b[~pad]
    if not torch.isfinite(real).all():
        raise ValueError(f"Argument `{name}` must be finite (rows of NaN are padding), but it contains NaN or Inf values.")
    x0, y0, x1, y1 = real.unbind(-1)
    if ((x1 < x0) | (y1 < y0)).any():
        bad = real[(x1 < x0) | (y1 < y0)][0]
        raise ValueError(f"Argument `{name}` must have x0 <= x1 and y0 <= y1 in each (x0, y0, x1, y1), but got a box {tuple(bad.tolist())}.")
    if ((x0 < 0) | (y0 < 0) | (x1 > w) | (y1 > h)).any():
        bad = real[(x0 < 0) | (y0 < 0) | (x1 > w) | (y1 > h)][0]
        raise ValueError(
            f"Argument `{name}` must lie inside the {h}x{w} image (0 <= x0 <= x1 <= {w}, 0 <= y0 <= y1 <= {h}), "
            f"but got a box {tuple(bad.tolist())}."
        )
    return b


def _check_reduction(reduction: str) -> None:
    check_choice("reduction", reduction, SCORE_REDUCTIONS)


def _reduce(values: Tensor, reduction: str) -> Tensor:
    """NaN-excluding mean / sum over the first dimension, or the values."""
    if reduction == "none":
        return values
    finite = torch.isfinite(values)
    total = torch.where(finite, values, torch.zeros_like(values)).sum(0)
    if reduction == "sum":
        return total
    count = finite.sum(0)
    return torch.where(count > 0, total / count.clamp(min=1), torch.full_like(total, float("nan")))


# --------------------------------------------------------------------------------------------------
# Boxes
# --------------------------------------------------------------------------------------------------


def salient_region(saliency: Tensor, threshold: float | Tensor = 0.5) -> Tensor:
    """The salient region {a >= α · max a} of (N, 1, H, W) maps → bool (N, L, H, W) for L levels.

    A map with no positive value gives the whole image."""
    levels = check_thresholds(threshold).to(saliency.device)
    a = saliency.detach().double()[:, :1]  # (N, 1, H, W)
    top = a.flatten(1).amax(1).view(-1, 1, 1, 1)
    region = a >= levels.view(1, -1, 1, 1) * top
    return region | (top <= 0)


def region_boxes(region: Tensor) -> Tensor:
    """Tightest boxes (x0, y0, x1, y1), exclusive end, float64, of bool regions (..., H, W); an empty
    region gives (0, 0, 0, 0)."""
    h, w = region.shape[-2:]
    rows, cols = region.any(-1), region.any(-2)  # (..., H), (..., W)
    ar, ac = torch.arange(h, device=region.device), torch.arange(w, device=region.device)
    y0 = torch.where(rows, ar, h).amin(-1)
    y1 = torch.where(rows, ar + 1, 0).amax(-1)
    x0 = torch.where(cols, ac, w).amin(-1)
    x1 = torch.where(cols, ac + 1, 0).amax(-1)
    empty = ~rows.any(-1)
    box = torch.stack([x0, y0, x1, y1], -1).double()
    return torch.where(empty.unsqueeze(-1), torch.zeros_like(box), box)


def saliency_boxes(saliency: Tensor, threshold: float | Sequence[float] = 0.5) -> Tensor:
    """The map's box at each level: (N, 4) for one level, (N, L, 4) for a sequence (see
    :func:`salient_region`)."""
    sal = _maps(saliency)
    boxes = region_boxes(salient_region(sal, threshold))
    single = isinstance(threshold, (int, float)) and not isinstance(threshold, bool)
    return boxes[:, 0] if single else boxes


def box_iou(pred: Tensor, gt: Tensor) -> Tensor:
    """IoU of boxes (..., 4) (x0, y0, x1, y1) broadcast against each other, float64; 0 when the union
    is empty."""
    pred, gt = pred.double(), gt.double()
    iw = (torch.minimum(pred[..., 2], gt[..., 2]) - torch.maximum(pred[..., 0], gt[..., 0])).clamp(min=0)
    ih = (torch.minimum(pred[..., 3], gt[..., 3]) - torch.maximum(pred[..., 1], gt[..., 1])).clamp(min=0)
    inter = iw * ih
    area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])  # noqa: E731
    union = area(pred) + area(gt) - inter
    return torch.where(union > 0, inter / torch.where(union > 0, union, torch.ones_like(union)), torch.zeros_like(union))


def _interp_rows(start: Tensor, stop: Tensor, out_size: int, full_size: int) -> Tensor:
    """(N, out_size, full_size) matrices resizing the rows start … stop − 1 of an axis to ``out_size``
    as ``F.interpolate(..., mode="bilinear", align_corners=False)`` does (no antialiasing)."""
    length = (stop - start).double().clamp(min=1)  # (N,)
    o = torch.arange(out_size, dtype=torch.float64, device=start.device)
    src = ((o[None, :] + 0.5) * length[:, None] / out_size - 0.5).clamp(min=0)  # PyTorch clamps below at 0
    i0 = torch.floor(src)
    t = src - i0
    i0 = i0.long()
    i1 = torch.minimum(i0 + 1, (length.long() - 1)[:, None])
    i0 = torch.minimum(i0, (length.long() - 1)[:, None])
    out = torch.zeros(start.shape[0], out_size, full_size, dtype=torch.float64, device=start.device)
    out.scatter_add_(2, (start[:, None] + i0).unsqueeze(-1), (1 - t).unsqueeze(-1))
    out.scatter_add_(2, (start[:, None] + i1).unsqueeze(-1), t.unsqueeze(-1))
    return out


def crop_resize(inputs: Tensor, boxes: Tensor) -> Tensor:
    """Crop each image to its integer box (x0, y0, x1, y1), exclusive end, and resize the crop
    bilinearly (``align_corners=False``) back to (H, W): ``F.interpolate(x[..., y0:y1, x0:x1], size=(H, W),
    mode="bilinear")`` for a whole batch at once, as two batched matrix products."""
    n, c, h, w = inputs.shape
    b = boxes.round().long()
    rows = _interp_rows(b[:, 1], b[:, 3], h, h).to(inputs.dtype if inputs.dtype == torch.float64 else torch.float32)
    cols = _interp_rows(b[:, 0], b[:, 2], w, w).to(rows.dtype)
    out = rows.unsqueeze(1) @ inputs.to(rows.dtype) @ cols.transpose(1, 2).unsqueeze(1)
    return out.to(inputs.dtype)


def _maps(saliency: Tensor, inputs: Tensor | None = None) -> Tensor:
    if inputs is not None:
        return check_saliency(saliency, inputs)
    from pl_saliency.functional.complexity import _check_maps

    return _check_maps(saliency)


# --------------------------------------------------------------------------------------------------
# Saliency Metric
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _SaliencyMetricOptions:
    """The Saliency Metric's settings, validated on construction: one check and one computation for
    :func:`saliency_metric` and :class:`~pl_saliency.metrics.SaliencyMetric`."""

    threshold: float = 0.5
    area_floor: float = 0.05
    chunk_size: int = 64
    output_transform: Callable[[Any], Tensor] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "threshold", _check_unit("threshold", self.threshold))
        object.__setattr__(self, "area_floor", _check_unit("area_floor", self.area_floor, low_open=True))
        object.__setattr__(self, "chunk_size", check_positive_int("chunk_size", self.chunk_size))

    def scores(self, model: Callable[[Tensor], Any], inputs: Tensor, saliency: Tensor, target: Tensor) -> Tensor:
        """Per-sample Saliency Metric (N,) float64."""
        check_model(model)
        inputs = check_inputs(inputs)
        sal = check_saliency(saliency, inputs)
        target = check_target(target, inputs.shape[0]).to(inputs.device)
        n, _, h, w = inputs.shape
        boxes = region_boxes(salient_region(sal, self.threshold))[:, 0]  # (N, 4)
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) / (h * w)
        logp = torch.empty(n, dtype=torch.float64, device=inputs.device)
        step = self.chunk_size
        with torch.no_grad(), eval_mode(model):
            for s in range(0, n, step):
                logits = model_logits(model, crop_resize(inputs[s : s + step], boxes[s : s + step]), self.output_transform)
                logp[s : s + step] = logits.double().log_softmax(-1).gather(1, target[s : s + step, None]).squeeze(1)
        return torch.log(area.clamp(min=self.area_floor)) - logp


def saliency_metric(
    model: Callable[[Tensor], Any],
    inputs: Tensor,
    saliency: Tensor,
    target: Tensor,
    *,
    threshold: float = 0.5,
    area_floor: float = 0.05,
    chunk_size: int = 64,
    output_transform: Callable[[Any], Tensor] | None = None,
    reduction: str = "mean",
) -> Tensor:
    r"""Saliency Metric (Dabkowski & Gal 2017): :math:`\log(\max(a, 0.05)) - \log p_c(\text{crop})`;
    lower is better. See the module docstring for the box and the crop.

    Args:
        model: callable (N, C, H, W) -> logits; an ``nn.Module`` is called in eval mode (restored after).
        inputs: (N, C, H, W) float images; saliency: (N, 1, H, W) or (N, C, H, W) maps (channels
            summed); target: (N,) class indices.
        threshold: α of the salient region {a >= α · max a}, in [0, 1] (default 0.5; our choice).
        area_floor: the smallest area fraction counted (default 0.05, the paper's).
        chunk_size: most crops per model call. output_transform: picks logits from tuple outputs.
        reduction: ``"mean"`` / ``"sum"`` over samples or ``"none"`` (N,).

    Example:
        >>> import torch
        >>> from pl_saliency.functional.saliency_metric import saliency_metric
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
        >>> x, y = torch.rand(2, 1, 4, 4), torch.tensor([0, 2])
        >>> sal = torch.zeros(2, 1, 4, 4)
        >>> sal[:, :, 1:3, 1:3] = 1.0  # a 2x2 box: a = 0.25
        >>> sm = saliency_metric(model, x, sal, y, reduction="none")
        >>> sm.shape, bool((sm >= torch.log(torch.tensor(0.25))).all())
        (torch.Size([2]), True)
    """
    _check_reduction(reduction)
    options = _SaliencyMetricOptions(threshold, area_floor, chunk_size, output_transform)
    return _reduce(options.scores(model, inputs, saliency, target), reduction).float()


# --------------------------------------------------------------------------------------------------
# Object localization
# --------------------------------------------------------------------------------------------------


def _object_localization_update(
    saliency: Tensor,
    boxes: Any,
    thresholds: float | Sequence[float] = 0.5,
    iou_threshold: float = 0.5,
) -> Tensor:
    """Per-sample, per-level localization error (N, L) float64: 0 (correct) or 1; NaN where the sample
    has no non-empty ground-truth box."""
    sal = _maps(saliency)
    n, _, h, w = sal.shape
    levels = check_thresholds(thresholds)
    iou_threshold = _check_unit("iou_threshold", iou_threshold, low_open=True)
    gt = check_gt_boxes(boxes, n, (h, w)).to(sal.device)  # (N, B, 4)
    pred = region_boxes(salient_region(sal, levels))  # (N, L, 4)
    valid = ~torch.isnan(gt).all(-1) & ((gt[..., 2] - gt[..., 0]) * (gt[..., 3] - gt[..., 1]) > 0)  # (N, B)
    iou = box_iou(pred.unsqueeze(2), torch.nan_to_num(gt).unsqueeze(1))  # (N, L, B)
    hit = ((iou >= iou_threshold) & valid.unsqueeze(1)).any(-1)  # (N, L)
    err = 1.0 - hit.double()
    return torch.where(valid.any(-1, keepdim=True), err, torch.full_like(err, float("nan")))


def object_localization_error(
    saliency: Tensor,
    boxes: Tensor,
    *,
    thresholds: float | Sequence[float] = 0.5,
    iou_threshold: float = 0.5,
    reduction: str = "mean",
) -> Tensor:
    """Object localization error (Fong & Vedaldi 2017 protocol): 1 when the map's box (salient region
    {a >= α · max a}) has IoU < ``iou_threshold`` with every ground-truth box; lower is better.

    Args:
        saliency: (N, 1, H, W) maps (or (N, C, H, W), channels summed; (N, H, W)).
        boxes: ground truth (N, 4) or (N, B, 4) as (x0, y0, x1, y1) pixels, exclusive end (NaN rows pad).
        thresholds: α, one level or a sequence in [0, 1] (default 0.5).
        iou_threshold: the IoU needed for a correct box (default 0.5).
        reduction: ``"mean"`` (NaN-excluding) / ``"sum"`` over samples, or ``"none"``.

    Returns:
        For one level: a scalar (``"none"``: (N,)); for a sequence: one value per level (L,)
        (``"none"``: (N, L)).

    Example:
        >>> import torch
        >>> from pl_saliency.functional.saliency_metric import object_localization_error
        >>> sal = torch.zeros(2, 1, 8, 8)
        >>> sal[:, :, 2:6, 2:6] = 1.0  # box (2, 2, 6, 6)
        >>> gt = torch.tensor([[2.0, 2.0, 6.0, 7.0], [0.0, 0.0, 3.0, 3.0]])  # IoU 16/20 and 1/24
        >>> object_localization_error(sal, gt, reduction="none")
        tensor([0., 1.])
    """
    _check_reduction(reduction)
    err = _object_localization_update(saliency, boxes, thresholds, iou_threshold)
    single = isinstance(thresholds, (int, float)) and not isinstance(thresholds, bool)
    out = _reduce(err, reduction).float()
    return out[..., 0] if single else out


__all__ = [
    "box_iou",
    "check_gt_boxes",
    "check_thresholds",
    "crop_resize",
    "object_localization_error",
    "region_boxes",
    "salient_region",
    "saliency_boxes",
    "saliency_metric",
]
