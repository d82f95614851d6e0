r"""Complexity of a saliency map: Gini sparseness and entropy. Neither needs the model.

Both are computed over the H·W spatial positions of the (N, 1, H, W) map (a feature is a
position, see DESIGN.md), on the magnitude ``|a|``; a multi-channel map is first summed over
channels (sign kept), then the absolute value is taken.

* **Gini sparseness** (Chalasani, Chen, Chowdhury, Jha & Wu, ICML 2020, "Concise explanations of
  neural networks using adversarial training"), as Quantus ``Sparseness``. With ``v = |a| / max|a| +
  eps`` flattened to d values and sorted ascending, ``v_(1) <= ... <= v_(d)``:

  .. math::

      G(a) = \frac{\sum_{k=1}^{d} (2k - d - 1)\, v_{(k)}}{d \sum_{k=1}^{d} v_{(k)}}

  G is in [0, 1 - 1/d]: 0 for a uniform map, close to 1 when all mass is on one position.
  **Higher = sparser** (``higher_is_better=True``: a concise map is the goal of the paper).

* **Entropy complexity** (Bhatt, Weller & Moura, IJCAI 2020, "Evaluating and aggregating
  feature-based model explanations"), as Quantus ``Complexity``. With ``p = |a| / sum |a|``:

  .. math::

      H(a) = -\sum_{k=1}^{d} p_k \ln p_k \qquad (0 \ln 0 = 0)

  H is in [0, ln d] (nats): 0 when all mass is on one position, ln d for a uniform map. **Lower is
  better** (a less complex map). An all-zero map has no distribution: NaN, excluded from means.

Where we differ from Quantus 0.6: Quantus divides the whole *batch* by one global max before adding
``eps``, so its Gini of a sample depends (through ``eps``) on the other samples of the batch; we
divide each map by its own max, so a sample's score never depends on the batch (equal to Quantus
called one sample at a time). Quantus's entropy uses ``ln(p + 1e-12)``; we use ``0 ln 0 = 0``
(differences below 1e-11 per position).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from pl_saliency.utils import SCORE_REDUCTIONS
from pl_saliency.utils import check_choice
from pl_saliency.utils import check_saliency
from pl_saliency.utils import reduce_scores


def _check_maps(saliency: Any, size: tuple[int, int] | None = None, name: str = "saliency") -> Tensor:
    """Validate a batch of maps without an ``inputs`` tensor and bring them to (N, 1, H, W) float.

    ``size`` is the image size (H, W) the map must have (lower resolutions are upsampled with the
    one-time notice of :func:`~pl_saliency.utils.check_saliency`); None: the map's own size. A
    (N, C, H, W) map is summed over channels (sign kept), (N, H, W) is read as (N, 1, H, W).
    """
    if not isinstance(saliency, Tensor):
        raise TypeError(f"Argument `{name}` must be a torch.Tensor of shape (N, 1, H, W), but got {type(saliency).__name__}.")
    if saliency.ndim not in (3, 4) or saliency.shape[0] == 0:
        raise ValueError(
            f"Argument `{name}` must have shape (N, 1, H, W) with N >= 1, but got shape {tuple(saliency.shape)}."
        )
    if saliency.is_complex():
        raise TypeError(f"Argument `{name}` must hold real values, but got dtype {saliency.dtype}.")
    n = saliency.shape[0]
    c = 1 if saliency.ndim == 3 else saliency.shape[1]
    h, w = size if size is not None else tuple(saliency.shape[-2:])
    shape_only = saliency.new_zeros((), dtype=torch.float32).expand(n, c, h, w)  # no memory: only its shape is read
    return check_saliency(saliency, shape_only, name=name)


def _reduce(values: Tensor, reduction: str) -> Tensor:
    """``"mean"`` / ``"sum"`` over the finite values (NaN marks an undefined sample, counted in a
    warning), or ``"none"``: the package's one reduction rule (:func:`pl_saliency.utils.reduce_scores`)."""
    return reduce_scores(values, reduction, choices=SCORE_REDUCTIONS)


def _check_eps(eps: Any) -> float:
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not math.isfinite(eps) or eps < 0:
        raise ValueError(f"Argument `eps` must be a finite number >= 0, but got {eps!r}.")
    return float(eps)


def _gini_sparseness_update(saliency: Tensor, eps: float = 1e-7) -> Tensor:
    """Per-sample Gini index (N,) of ``|a| / max|a| + eps`` over the H·W positions (float64 math)."""
    v = saliency.reshape(saliency.shape[0], -1).abs().double()
    peak = v.amax(dim=1, keepdim=True)
    v = torch.where(peak > 0, v / torch.where(peak > 0, peak, torch.ones_like(peak)), v) + eps
    d = v.shape[1]
    v, _ = torch.sort(v, dim=1)
    k = torch.arange(1, d + 1, dtype=v.dtype, device=v.device)
    total = v.sum(dim=1)
    gini = ((2 * k - d - 1) * v).sum(dim=1) / (d * total)
    return torch.where(total > 0, gini, torch.full_like(gini, float("nan"))).float()


def _entropy_complexity_update(saliency: Tensor) -> Tensor:
    """Per-sample Shannon entropy (N,) in nats of ``|a| / sum|a|`` over the H·W positions."""
    v = saliency.reshape(saliency.shape[0], -1).abs().double()
    total = v.sum(dim=1, keepdim=True)
    p = v / torch.where(total > 0, total, torch.ones_like(total))
    entropy = torch.special.entr(p).sum(dim=1)
    return torch.where(total.squeeze(1) > 0, entropy, torch.full_like(entropy, float("nan"))).float()


def gini_sparseness(saliency: Tensor, *, eps: float = 1e-7, reduction: str = "mean") -> Tensor:
    """Gini sparseness of ``|a|`` (Chalasani et al. 2020; Quantus ``Sparseness``); higher = sparser.

    Args:
        saliency: (N, 1, H, W), (N, H, W) or (N, C, H, W) maps (channels summed, then ``abs``).
        eps: added to ``|a| / max|a|`` before the index (Quantus: 1e-7); an all-zero map scores 0.
        reduction: ``"mean"`` (over samples), ``"sum"`` or ``"none"`` (per-sample (N,)).

    Example:
        >>> import torch
        >>> from pl_saliency.functional import gini_sparseness
        >>> peaked = torch.zeros(1, 1, 4, 4)
        >>> peaked[0, 0, 1, 2] = 1.0
        >>> round(float(gini_sparseness(peaked, eps=0.0)), 4)  # 1 - 1/16
        0.9375
        >>> round(float(gini_sparseness(torch.ones(1, 1, 4, 4))), 6)  # uniform
        0.0
    """
    eps = _check_eps(eps)
    check_choice("reduction", reduction, SCORE_REDUCTIONS)
    return _reduce(_gini_sparseness_update(_check_maps(saliency), eps), reduction)


def entropy_complexity(saliency: Tensor, *, reduction: str = "mean") -> Tensor:
    """Entropy of ``|a| / sum|a|`` in nats (Bhatt et al. 2020; Quantus ``Complexity``); lower is better.

    Args:
        saliency: (N, 1, H, W), (N, H, W) or (N, C, H, W) maps (channels summed, then ``abs``).
        reduction: ``"mean"`` (over samples with a defined value), ``"sum"`` or ``"none"``.

    Example:
        >>> import math, torch
        >>> from pl_saliency.functional import entropy_complexity
        >>> math.isclose(float(entropy_complexity(torch.ones(1, 1, 4, 4))), math.log(16), rel_tol=1e-6)
        True
        >>> entropy_complexity(torch.zeros(1, 1, 4, 4))  # no mass: undefined
        tensor(nan)
    """
    check_choice("reduction", reduction, SCORE_REDUCTIONS)
    return _reduce(_entropy_complexity_update(_check_maps(saliency)), reduction)
