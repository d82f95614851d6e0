r"""ROAD: RemOve And Debias (Rong, Leemann, Borisov, Kasneci & Kasneci, ICML 2022).

For each percentage q of the given ``percentages``, the ``round(q/100 · F)`` most relevant (MoRF)
or least relevant (LeRF) of the F features are removed and *imputed* by noisy linear imputation
(``filler="noisy_linear"``: each removed pixel is the weighted mean of its 8 neighbours, 1/6 for
direct and 1/12 for diagonal ones, solved jointly as a sparse linear system, plus Gaussian noise of
std 0.01), and the target class's score ``f_c`` is recorded:

.. math::

    \mathrm{ROAD}(x) = \frac{1}{|Q|} \sum_{q \in Q} f_c\big(x^{(q)}\big)

per image, averaged over images, with ``f_c`` the softmax probability (``score="probability"``,
default) or logit. The curve also holds the unperturbed point (q = 0) first.

* **ROAD MoRF**: removing the most relevant pixels should destroy the prediction: **lower is better**.
* **ROAD LeRF**: removing the least relevant pixels should keep it: **higher is better**.

The imputation removes the "mask shape leaks the class" shortcut of plain masking; Rong et al.
recommend reporting both orders (their combined score is the LeRF − MoRF gap).

Where we differ:

* Rong et al. (and Quantus) report the *accuracy* of the model at each percentage; we report the
  target class's probability per image (a finer, per-sample number that our per-sample states can
  average and sync). pytorch-grad-cam's ROAD reports the probability *change* ``f_c(x^{(q)}) - f_c(x)``:
  subtract the curve's first point from ours to get it.
* pytorch-grad-cam's ``percentile`` is the percentage of pixels *kept* (``ROADMostRelevantFirst(80)``
  removes the top 20 %), chosen by ``np.percentile`` thresholding, which removes ``1 + floor(q (F-1))``
  pixels for a removed fraction q (one pixel even at q = 0) and every pixel tied at the threshold;
  ours are percentages *removed*, ``floor(q F + 1/2)`` features, ties broken by a seeded permutation.
  The two counts agree for most q (e.g. 20–80 % of 144 pixels), not all (10 %, 90 % of 144).
* Quantus 0.6 ``ROAD`` fails on RGB inputs and averages the first batch only; ours handles any C and
  every batch.
* Features may be ``patch_size`` squares (ROAD uses pixels, ``patch_size=1``, the default).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any
from typing import Literal
from typing import Unpack
from typing import overload

import torch
from torch import Tensor

from pl_saliency._keywords import declared_options
from pl_saliency.functional.deletion import Model
from pl_saliency.functional.deletion import curve_metric
from pl_saliency.functional.deletion import spec_and_curves
from pl_saliency.options import ROADKeywords
from pl_saliency.spec import OPTION_DEFAULTS
from pl_saliency.utils import check_choice

DEFAULT_PERCENTAGES: tuple[int, ...] = (10, 20, 30, 40, 50, 60, 70, 80, 90)
ROAD_ORDERS: tuple[str, ...] = ("morf", "lerf")


def check_percentages(percentages: Any, name: str = "percentages") -> tuple[float, ...]:
    """Check removal percentages: a non-empty, strictly increasing sequence of numbers in (0, 100)."""
    if isinstance(percentages, Tensor):
        percentages = percentages.detach().cpu().reshape(-1).tolist() if percentages.ndim <= 1 else None
    if not isinstance(percentages, (list, tuple, range)) or not all(
        isinstance(p, (int, float)) and not isinstance(p, bool) for p in percentages
    ):
        raise TypeError(
            f"Argument `{name}` must be a sequence of percentages in (0, 100), but got {type(percentages).__name__}."
        )
    values = tuple(float(p) for p in percentages)
    if not values:
        raise ValueError(f"Argument `{name}` must hold at least one percentage in (0, 100), but got an empty sequence.")
    bad = [p for p in values if not 0 < p < 100]
    if bad:
        raise ValueError(
            f"Argument `{name}` must hold percentages of features removed in the open interval (0, 100), "
            f"but got {bad[0]:g}."
        )
    if any(b <= a for a, b in zip(values, values[1:])):
        raise ValueError(f"Argument `{name}` must be strictly increasing, but got {tuple(percentages)}.")
    if max(values) <= 1:
        warnings.warn(
            f"Every value of `{name}` is <= 1: they are read as percentages (10 means 10 %), not as fractions.",
            UserWarning,
            stacklevel=3,
        )
    return values


def road_fractions(percentages: Sequence[float]) -> Tensor:
    """Curve positions (1 + len(percentages),): the unperturbed point, then the removed fractions."""
    return torch.tensor([0.0, *(p / 100.0 for p in percentages)], dtype=torch.float64)


def _road_update(
    model: Model, inputs: Tensor, saliency: Tensor, target: Tensor, *, order: str, percentages: Any, **settings: Any
) -> tuple[Tensor, Tensor]:
    """Per-sample mean score over the percentages (N,) and the curves (N, 1 + len(percentages)) of
    :func:`road`'s arguments; ``settings`` are the other keywords of
    :func:`~pl_saliency.perturbation.perturbation_curves` but ``mode``, ``steps`` and ``fractions``."""
    check_choice("order", order, ROAD_ORDERS)
    fractions = road_fractions(check_percentages(percentages))
    curves, _ = spec_and_curves(model, inputs, saliency, target, order=order, fractions=fractions, **settings)
    return curves[:, 1:].mean(dim=1), curves


@overload
def road(
    model: Model, inputs: Tensor, saliency: Tensor, target: Tensor, *, return_curves: Literal[False] = ...,
    **settings: Unpack[ROADKeywords],
) -> Tensor: ...
@overload
def road(
    model: Model, inputs: Tensor, saliency: Tensor, target: Tensor, *, return_curves: Literal[True],
    **settings: Unpack[ROADKeywords],
) -> tuple[Tensor, Tensor]: ...
@overload
def road(
    model: Model, inputs: Tensor, saliency: Tensor, target: Tensor, *, return_curves: bool,
    **settings: Unpack[ROADKeywords],
) -> Tensor | tuple[Tensor, Tensor]: ...
@declared_options(
    ROADKeywords, OPTION_DEFAULTS, leading=("order", "percentages"), percentages=DEFAULT_PERCENTAGES, filler="noisy_linear"
)
def road(
    model: Model, inputs: Tensor, saliency: Tensor, target: Tensor, *, return_curves: bool = False,
    **settings: Unpack[ROADKeywords],
) -> Tensor | tuple[Tensor, Tensor]:
    """ROAD (Rong et al. 2022): the target score averaged over removal ``percentages`` with noisy
    linear imputation; ``order="morf"`` (**lower is better**) or ``"lerf"`` (**higher is better**).

    Args:
        percentages: percentages of features *removed*, strictly increasing, each in (0, 100).
        generator: CPU ``torch.Generator`` for the imputation noise (reproducible results).
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (per-sample (N,)).
        return_curves: also return the curves (N, 1 + len(percentages)): the unperturbed score, then
            the score at each percentage.
        Others: see :func:`pl_saliency.perturbation.perturbation_curves`.

    Example:
        >>> import torch
        >>> from pl_saliency.functional import road
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 4))
        >>> g = torch.Generator().manual_seed(0)
        >>> x, s = torch.rand(2, 3, 8, 8, generator=g), torch.rand(2, 1, 8, 8, generator=g)
        >>> value, curves = road(model, x, s, torch.tensor([0, 3]), percentages=(20, 50, 80),
        ...                      generator=g, return_curves=True)
        >>> value.shape, curves.shape
        (torch.Size([]), torch.Size([2, 4]))
    """
    return curve_metric(_road_update, locals())
