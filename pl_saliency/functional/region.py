r"""Pixel flipping (Bach et al. 2015), region perturbation (Samek et al. 2017) and selectivity
(Montavon et al. 2018): deletion curves at the granularity their papers use.

* **Pixel flipping** (Bach, Binder, Montavon, Klauschen, Müller & Samek, PLoS ONE 2015): single
  positions (``patch_size=1``) are replaced by the filler, most relevant first, and the target score
  is recorded. We report the trapezoid area under the curve over the fraction flipped, x in [0, 1]
  (**lower is better** for MoRF), exactly the number and curve of
  :func:`~pl_saliency.functional.deletion_auc` with ``patch_size=1``: with the same settings the two
  share one curve computation per batch.
* **Region perturbation** (Samek, Binder, Montavon, Lapuschkin & Müller, IEEE TNNLS 2017): the map
  is summed over non-overlapping ``patch_size`` squares; the squares are removed **one per step** in
  the map's order (``"morf"``, ``"lerf"`` or ``"random"``) for the first ``regions`` of them, and the
  summary is the AOPC of that curve,

  .. math:: \mathrm{AOPC} = \frac{1}{R + 1} \sum_{k=0}^{R} \big( f_c(x^{(0)}) - f_c(x^{(k)}) \big)

  (**higher is better** for MoRF, **lower is better** for LeRF).
* **Selectivity** (Montavon, Samek & Müller, Digital Signal Processing 2018): every square is removed
  one per step, most relevant first, until none is left; we report the trapezoid area under the
  score curve over the fraction removed (**lower is better**: a selective map makes the score fall
  fast).

Where we differ:

* Samek et al. perturb 9×9 regions *around* each location (overlapping) by uniform noise, L = 100
  steps; we use non-overlapping squares (as Quantus' ``RegionPerturbation``) and ``filler="zeros"``
  by default (pass ``filler="uniform_noise"`` for theirs). The last row/column of squares is smaller
  when the image side is not a multiple of ``patch_size`` (Quantus pads the image instead).
* Quantus' ``RegionPerturbation`` returns the drops ``f(x) - f(x^{(k)})`` for k = 1 … R and
  ``Selectivity`` the scores ``f(x^{(k)})`` for k = 1 … F, both without the unperturbed point; our
  curves are the scores ``f(x^{(k)})`` for k = 0 … R (or F), so ``curves[:, :1] - curves[:, 1:]`` is
  Quantus' region-perturbation output. Quantus orders tied squares by ``np.argsort``'s default
  (unstable) sort; we break ties by a seeded permutation (``tie_break="random"``) or by position
  (``tie_break="position"``). Quantus' "black" baseline is the image's minimum, our ``zeros`` is 0.
* Quantus' pixel flipping ranks the C·H·W channel values; we rank positions (all channels together).
* ``regions`` larger than the number of squares is an error here (Quantus silently stops early).
"""

from __future__ import annotations

from typing import Any
from typing import Literal
from typing import Unpack
from typing import overload

import torch
from torch import Tensor

from pl_saliency._keywords import declared_options
from pl_saliency.functional.aopc import _aopc_update
from pl_saliency.functional.deletion import Model
from pl_saliency.functional.deletion import _curve_auc_update
from pl_saliency.functional.deletion import curve_metric
from pl_saliency.options import FlipKeywords
from pl_saliency.options import RegionKeywords
from pl_saliency.options import SelectivityKeywords
from pl_saliency.perturbation.orders import feature_grid
from pl_saliency.spec import OPTION_DEFAULTS
from pl_saliency.utils import check_inputs
from pl_saliency.utils import check_positive_int


def num_regions(inputs: Tensor, patch_size: int) -> int:
    """Number of ``patch_size`` squares of the images ``inputs`` (N, C, H, W); raises if a square is
    larger than the image."""
    check_positive_int("patch_size", patch_size)
    h, w = check_inputs(inputs).shape[-2:]
    if patch_size > min(h, w):
        raise ValueError(f"Argument `patch_size` must be at most the image side {min(h, w)}, but got {patch_size}.")
    return feature_grid(h, w, patch_size)[1]


def region_fractions(inputs: Tensor, patch_size: int, regions: int | None) -> Tensor:
    """Curve positions (R + 1,) that remove one square per step: ``k / F`` for k = 0 … R."""
    f = num_regions(inputs, patch_size)
    if regions is None:
        regions = f
    check_positive_int("regions", regions)
    if regions > f:
        h, w = inputs.shape[-2:]
        raise ValueError(
            f"Argument `regions` must be at most the number of squares ({f} for {h}x{w} images with "
            f"patch_size={patch_size}), or None for all of them, but got {regions}."
        )
    return torch.arange(regions + 1, dtype=torch.float64) / f


def _pixel_flipping_update(
    model: Model, inputs: Tensor, saliency: Tensor, target: Tensor, **settings: Any
) -> tuple[Tensor, Tensor]:
    """Per-sample areas (N,) and curves (N, steps + 1) of flipping single positions; ``settings`` are the
    keywords of :func:`~pl_saliency.perturbation.perturbation_curves` but ``mode`` and ``patch_size``."""
    return _curve_auc_update(model, inputs, saliency, target, mode="deletion", patch_size=1, **settings)


def _region_perturbation_update(
    model: Model, inputs: Tensor, saliency: Tensor, target: Tensor, *, patch_size: int, regions: int | None,
    **settings: Any,
) -> tuple[Tensor, Tensor]:
    """Per-sample AOPC (N,) and score curves (N, R + 1), one square removed per step; ``settings`` as
    :func:`_pixel_flipping_update` but ``steps``."""
    fractions = region_fractions(inputs, patch_size, regions)
    return _aopc_update(model, inputs, saliency, target, patch_size=patch_size, fractions=fractions, **settings)


def _selectivity_update(
    model: Model, inputs: Tensor, saliency: Tensor, target: Tensor, *, patch_size: int, **settings: Any
) -> tuple[Tensor, Tensor]:
    """Per-sample areas (N,) and curves (N, F + 1): every square removed, one per step, MoRF; ``settings``
    as :func:`_region_perturbation_update` but ``order`` and ``regions``."""
    steps = num_regions(inputs, patch_size)
    return _curve_auc_update(
        model, inputs, saliency, target, mode="deletion", order="morf", steps=steps, patch_size=patch_size, **settings
    )


@overload
def pixel_flipping(
    model: Model, inputs: Tensor, saliency: Tensor, target: Tensor, *, return_curves: Literal[False] = ...,
    **settings: Unpack[FlipKeywords],
) -> Tensor: ...
@overload
def pixel_flipping(
    model: Model, inputs: Tensor, saliency: Tensor, target: Tensor, *, return_curves: Literal[True],
    **settings: Unpack[FlipKeywords],
) -> tuple[Tensor, Tensor]: ...
@overload
def pixel_flipping(
    model: Model, inputs: Tensor, saliency: Tensor, target: Tensor, *, return_curves: bool,
    **settings: Unpack[FlipKeywords],
) -> Tensor | tuple[Tensor, Tensor]: ...
@declared_options(FlipKeywords, OPTION_DEFAULTS)
def pixel_flipping(
    model: Model, inputs: Tensor, saliency: Tensor, target: Tensor, *, return_curves: bool = False,
    **settings: Unpack[FlipKeywords],
) -> Tensor | tuple[Tensor, Tensor]:
    """Pixel flipping (Bach et al. 2015): area under the target score as single positions are replaced
    by the ``filler`` in the map's ``order`` over ``steps`` evenly spaced points; **lower is better**
    for ``order="morf"``. The same number as ``deletion_auc(..., patch_size=1)``.

    Args: see :func:`pl_saliency.perturbation.perturbation_curves`; ``reduction`` is ``"mean"``,
    ``"sum"`` or ``"none"``; ``return_curves=True`` also returns the curves (N, steps + 1).

    Example:
        >>> import torch
        >>> from pl_saliency.functional import pixel_flipping
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2, bias=False))
        >>> _ = model[1].weight.data.copy_(torch.tensor([[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]]))
        >>> x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
        >>> saliency = torch.tensor([[[[0.1, 0.4], [0.3, 0.2]]]])
        >>> area, curve = pixel_flipping(model, x, saliency, torch.tensor([0]), steps=4, score="logit",
        ...                              return_curves=True)
        >>> curve
        tensor([[10.,  8.,  5.,  1.,  0.]])
        >>> area  # (10/2 + 8 + 5 + 1 + 0/2) / 4
        tensor(4.7500)
    """
    return curve_metric(_pixel_flipping_update, locals())


@overload
def region_perturbation(
    model: Model, inputs: Tensor, saliency: Tensor, target: Tensor, *, return_curves: Literal[False] = ...,
    **settings: Unpack[RegionKeywords],
) -> Tensor: ...
@overload
def region_perturbation(
    model: Model, inputs: Tensor, saliency: Tensor, target: Tensor, *, return_curves: Literal[True],
    **settings: Unpack[RegionKeywords],
) -> tuple[Tensor, Tensor]: ...
@overload
def region_perturbation(
    model: Model, inputs: Tensor, saliency: Tensor, target: Tensor, *, return_curves: bool,
    **settings: Unpack[RegionKeywords],
) -> Tensor | tuple[Tensor, Tensor]: ...
@declared_options(RegionKeywords, OPTION_DEFAULTS, leading=("patch_size", "order", "regions"), patch_size=8, regions=None)
def region_perturbation(
    model: Model, inputs: Tensor, saliency: Tensor, target: Tensor, *, return_curves: bool = False,
    **settings: Unpack[RegionKeywords],
) -> Tensor | tuple[Tensor, Tensor]:
    """Region perturbation (Samek et al. 2017): AOPC of removing ``patch_size`` squares one per step
    in the map's ``order`` (squares ranked by summed saliency), for the first ``regions`` squares
    (``None``: all). **Higher is better** for ``"morf"``, **lower** for ``"lerf"``.

    ``return_curves=True`` also returns the score curves (N, regions + 1), point 0 unperturbed.

    Example:
        >>> import torch
        >>> from pl_saliency.functional import region_perturbation
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 2, bias=False))
        >>> _ = model[1].weight.data.fill_(0.0)
        >>> _ = model[1].weight.data[0].fill_(1.0)
        >>> x = torch.arange(16.0).view(1, 1, 4, 4)  # squares of 2x2 sum to 10, 18, 42, 50
        >>> saliency = x.clone()
        >>> aopc, curve = region_perturbation(model, x, saliency, torch.tensor([0]), patch_size=2, regions=2,
        ...                                   score="logit", return_curves=True)
        >>> curve
        tensor([[120.,  70.,  28.]])
        >>> aopc  # 120 - mean(120, 70, 28)
        tensor(47.3333)
    """
    return curve_metric(_region_perturbation_update, locals())


@overload
def selectivity(
    model: Model, inputs: Tensor, saliency: Tensor, target: Tensor, *, return_curves: Literal[False] = ...,
    **settings: Unpack[SelectivityKeywords],
) -> Tensor: ...
@overload
def selectivity(
    model: Model, inputs: Tensor, saliency: Tensor, target: Tensor, *, return_curves: Literal[True],
    **settings: Unpack[SelectivityKeywords],
) -> tuple[Tensor, Tensor]: ...
@overload
def selectivity(
    model: Model, inputs: Tensor, saliency: Tensor, target: Tensor, *, return_curves: bool,
    **settings: Unpack[SelectivityKeywords],
) -> Tensor | tuple[Tensor, Tensor]: ...
@declared_options(SelectivityKeywords, OPTION_DEFAULTS, leading=("patch_size",), patch_size=8)
def selectivity(
    model: Model, inputs: Tensor, saliency: Tensor, target: Tensor, *, return_curves: bool = False,
    **settings: Unpack[SelectivityKeywords],
) -> Tensor | tuple[Tensor, Tensor]:
    """Selectivity (Montavon et al. 2018): area under the target score as every ``patch_size`` square
    is removed, one per step, most relevant first; **lower is better**. ``return_curves=True`` also
    returns the curves (N, F + 1), F the number of squares.

    Example:
        >>> import torch
        >>> from pl_saliency.functional import selectivity
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 2, bias=False))
        >>> _ = model[1].weight.data.fill_(0.0)
        >>> _ = model[1].weight.data[0].fill_(1.0)
        >>> x = torch.arange(16.0).view(1, 1, 4, 4)
        >>> area, curve = selectivity(model, x, x.clone(), torch.tensor([0]), patch_size=2, score="logit",
        ...                           return_curves=True)
        >>> curve
        tensor([[120.,  70.,  28.,  10.,   0.]])
        >>> area  # (120/2 + 70 + 28 + 10 + 0/2) / 4
        tensor(42.)
    """
    return curve_metric(_selectivity_update, locals())
