r"""Average Drop and Increase in Confidence (Chattopadhay, Sarkar, Howlader & Balasubramanian, WACV 2018,
"Grad-CAM++"), as Vandersmissen & Oramas compute them (``saliency_methods/evaluate.py``
``average_drop_confidence_increase``, l. 58-84, in ``Benjamin-Vandersmissen/quantitative-evaluation``).

Per sample, with :math:`Y_c` the softmax probability of the target on the image and :math:`O_c` its
probability on the image "explained" by the map :math:`s \in [0, 1]^{H \times W}`,

.. math::
    x' = s \odot x + (1 - s) \odot b, \qquad
    \mathrm{drop} = \frac{\max(0, Y_c - O_c)}{Y_c}, \qquad
    \mathrm{increase} = \mathbb 1[O_c > Y_c]

with ``b`` the ``filler``'s substrate (default ``"zeros"``: :math:`x' = s \odot x`, the authors'
``images * saliency``, l. 77; 0 in a normalized input space is the dataset-mean gray). **Average Drop**
is the mean drop (**lower is better**, in [0, 1]; the paper reports it ×100 as a percentage);
**Increase in Confidence** the mean of the indicator (**higher is better**, in [0, 1]).

The map, before use (``normalize``):

* ``"positive_minmax"`` (default, the authors' ``utils.normalize``, ``main.py`` l. 98): negative values
  to 0, then ``(s − min) / max(max − min, 5e-6)`` per map;
* ``"minmax"``: min–max only; ``"none"``: the map as given (it must lie in [0, 1]).

Binarized variant (``percentile=q``): the normalized map is replaced by ``1[s >= t]`` with ``t`` its
``q``-th percentile (NumPy's linear rule), so about the top ``100 − q`` % of positions are kept and the
rest removed (the authors' ``threshold`` branch, l. 73-76: ``saliency >= threshold → 1``, else 0). The
authors store the binarized results under ``drop_binary/90`` (``reliability.py`` l. 22); we read that as
the 90th percentile of each map (their calling script is not in the repository). When the percentile
falls on a tie (e.g. a map that is 0 on more than 90 % of the image), every position at or above it is
kept. With a binary mask, a mask-dependent ``filler`` (``"telea"``, an inpainter) may be used; the
continuous variant needs a mask-independent one.

Where we differ from the authors' code: a sample with :math:`Y_c = 0` has no defined drop (NaN, left out
of means; the authors' ``make_increase.py`` l. 25 drops NaN, ``reliability.py`` l. 27-28 sets it to 0);
images go through the model in chunks of ``chunk_size``; the model is restored to its mode afterwards.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from pl_saliency.functional.transforms import map_percentile
from pl_saliency.functional.transforms import minmax_normalize
from pl_saliency.functional.transforms import normalize_maps
from pl_saliency.perturbation.fillers import get_filler
from pl_saliency.utils import check_choice
from pl_saliency.utils import check_inputs
from pl_saliency.utils import check_model
from pl_saliency.utils import check_positive_int
from pl_saliency.utils import check_saliency
from pl_saliency.utils import check_target
from pl_saliency.utils import class_scores
from pl_saliency.utils import eval_mode
from pl_saliency.utils import model_logits
from pl_saliency.utils import reduce_scores

NORMALIZATIONS: tuple[str, ...] = ("positive_minmax", "minmax", "none")
#: average drop and increase in confidence are defined as means over the samples (Chattopadhay et al.): no "sum"
CONFIDENCE_REDUCTIONS: tuple[str, ...] = ("mean", "none")


def check_percentile(percentile: Any) -> float | None:
    """None (continuous) or a percentile in [0, 100)."""
    if percentile is None:
        return None
    if isinstance(percentile, bool) or not isinstance(percentile, (int, float)) or not math.isfinite(percentile) or not 0 <= percentile < 100:
        raise ValueError(f"Argument `percentile` must be None or a number in [0, 100), but got {percentile!r}.")
    return float(percentile)


def explanation_maps(saliency: Tensor, normalize: str = "positive_minmax", percentile: float | None = None) -> Tensor:
    """The maps that multiply the image: normalized by ``normalize``, then binarized at the per-map
    ``percentile`` when given. (N, 1, H, W) float in [0, 1]."""
    check_choice("normalize", normalize, NORMALIZATIONS)
    percentile = check_percentile(percentile)
    if normalize == "positive_minmax":
        s = normalize_maps(saliency)
    elif normalize == "minmax":
        s = minmax_normalize(saliency)
    else:
        s = saliency.detach().float()
        if s.numel() and (s.min() < 0 or s.max() > 1):
            raise ValueError(
                f"Argument `saliency` must lie in [0, 1] with `normalize='none'`, but spans [{float(s.min()):.4g}, {float(s.max()):.4g}]."
            )
    if percentile is not None:
        t = map_percentile(s, percentile).view(-1, 1, 1, 1)
        s = (s >= t).to(s.dtype)
    return s


def _reduce(values: Tensor, reduction: str) -> Tensor:
    """The package's one reduction rule (:func:`pl_saliency.utils.reduce_scores`)."""
    return reduce_scores(values, reduction, choices=CONFIDENCE_REDUCTIONS)


def _confidence_function(value: str, doc: str) -> Callable[..., Tensor]:
    """The public function of one per-sample ``value``: ``"drop"`` (the relative drop, NaN where the base
    probability is 0) or ``"increase"`` (the indicator 1.0 / 0.0), float64 (N,) before the reduction: one
    implementation for :func:`average_drop` and :func:`increase_in_confidence`."""

    def confidence(
        model: Callable[[Tensor], Any],
        inputs: Tensor,
        saliency: Tensor,
        target: Tensor,
        *,
        percentile: float | None = None,
        normalize: str = "positive_minmax",
        filler: Any = "zeros",
        reduction: str = "mean",
        chunk_size: int = 64,
        output_transform: Callable[[Any], Tensor] | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        check_model(model)
        inputs = check_inputs(inputs)
        target = check_target(target, inputs.shape[0]).to(inputs.device)
        saliency = check_saliency(saliency, inputs)
        chunk_size = check_positive_int("chunk_size", chunk_size)
        fill = get_filler(filler)
        s = explanation_maps(saliency, normalize, percentile).to(inputs.dtype)
        if fill.mask_dependent and percentile is None:
            raise ValueError(
                f"Argument `filler` {fill.key!r} fills binary holes only: pass a mask-independent filler for the "
                "continuous variant, or binarize with `percentile=`."
            )
        base, explained = [], []
        with torch.no_grad(), eval_mode(model):
            for start in range(0, inputs.shape[0], chunk_size):
                x, t, m = inputs[start : start + chunk_size], target[start : start + chunk_size], s[start : start + chunk_size]
                if fill.mask_dependent:
                    xe = fill(x, m < 0.5, generator)
                else:
                    xe = m * x + (1 - m) * fill.substrate(x, generator)
                base.append(class_scores(model_logits(model, x, output_transform), t, "probability").double())
                explained.append(class_scores(model_logits(model, xe, output_transform), t, "probability").double())
        y, o = torch.cat(base), torch.cat(explained)
        if value == "drop":
            values = torch.where(y > 0, (y - o).clamp(min=0) / torch.where(y > 0, y, torch.ones_like(y)), torch.full_like(y, math.nan))
        else:
            values = (o > y).double()
        return _reduce(values, reduction)

    confidence.__name__ = confidence.__qualname__ = "average_drop" if value == "drop" else "increase_in_confidence"
    confidence.__doc__ = doc
    return confidence


average_drop = _confidence_function(
    "drop",
    r"""Average Drop (Chattopadhay et al. 2018): mean of :math:`\max(0, Y_c - O_c) / Y_c`; **lower is
    better**, in [0, 1]. ``reduction="none"`` gives the (N,) per-sample drops (NaN where :math:`Y_c = 0`).
    See the module docstring for the map's normalization, ``percentile`` (binarized variant) and ``filler``.

    Example:
        >>> import torch
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
        >>> x, y = torch.ones(1, 1, 2, 2), torch.tensor([0])
        >>> bool(average_drop(model, x, torch.ones(1, 1, 2, 2), y, normalize="none") == 0)  # nothing removed
        True
    """,
)

increase_in_confidence = _confidence_function(
    "increase",
    r"""Increase in Confidence (Chattopadhay et al. 2018): share of samples with :math:`O_c > Y_c`;
    **higher is better**, in [0, 1]. ``reduction="none"`` gives the (N,) indicators (1.0 / 0.0).""",
)


__all__ = [
    "NORMALIZATIONS",
    "average_drop",
    "check_percentile",
    "explanation_maps",
    "increase_in_confidence",
]
