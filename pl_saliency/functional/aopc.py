r"""AOPC MoRF / LeRF (Samek, Binder, Montavon, Lapuschkin & Müller, IEEE TNNLS 2017) and ABPC.

.. math::

    \mathrm{AOPC} = \frac{1}{L + 1} \sum_{k=0}^{L} \big( f_c(x^{(0)}) - f_c(x^{(k)}) \big)

per image, averaged over images, where ``x^{(k)}`` is the image with the first ``n_k = floor(k F / L)``
of its F features (positions, or ``patch_size`` squares) replaced by the filler in the map's order
(``L = steps``), and ``f_c`` is the target class's softmax probability (``score="probability"``,
the default) or logit (``score="logit"``). With the curve ``y_k = f_c(x^{(k)})`` this is
``y_0 - mean(y)``: the average drop of the score along the path.

* **AOPC MoRF** (most relevant first): a faithful map makes the score drop fast: **higher is better**.
* **AOPC LeRF** (least relevant first): the score should stay put: **lower is better**.
* **ABPC** (area between the perturbation curves):

  .. math::

      \mathrm{ABPC} = \int_0^1 \big( y^{\mathrm{LeRF}}(t) - y^{\mathrm{MoRF}}(t) \big)\,dt
      = \mathrm{AUC}(y^{\mathrm{LeRF}}) - \mathrm{AUC}(y^{\mathrm{MoRF}})

  by the trapezoid rule over the fraction removed t in [0, 1] (the same rule as every AUC of the
  package), per image, averaged: **higher is better**. It equals ``AOPC_MoRF - AOPC_LeRF`` up to the
  end-point weights (the AOPC sums weigh every curve point by 1/(L+1), the trapezoid the two end
  points by half).

Where we differ from Samek et al.: they perturb 9×9 regions around each location, ranked by summed
relevance, one region per step for L = 100 steps, and replace them by uniform noise; their ``f`` is
the classifier's output for the class (re-implementations often use the pre-softmax score: pass
``score="logit"``). Our defaults are those of :func:`~pl_saliency.functional.deletion_auc`
(``filler="zeros"``, ``steps=50`` evenly spaced over all features, ``patch_size=1``,
``score="probability"``) so that AOPC MoRF shares its curve with the deletion AUC and pixel flipping
(one computation per batch); Samek's noise is ``filler="uniform_noise"`` (needs a ``generator`` for
reproducibility), and one region per step is :func:`~pl_saliency.functional.region_perturbation`.
Ties in the map are broken by a seeded permutation (DESIGN), not by position.
"""

from __future__ import annotations

from typing import Any
from typing import Literal
from typing import Unpack
from typing import overload

from torch import Tensor

from pl_saliency._keywords import declared_options
from pl_saliency.functional.deletion import Model
from pl_saliency.functional.deletion import curve_metric
from pl_saliency.functional.deletion import spec_and_curves
from pl_saliency.options import PatchKeywords
from pl_saliency.perturbation.engine import BatchContext
from pl_saliency.perturbation.engine import curve_fractions
from pl_saliency.perturbation.engine import spec_curves
from pl_saliency.spec import OPTION_DEFAULTS
from pl_saliency.spec import CurveSpec
from pl_saliency.spec import SpeedOptions
from pl_saliency.spec import spec_from_kwargs
from pl_saliency.utils import auc


def _aopc_from_curves(curves: Tensor) -> Tensor:
    """AOPC (N,) of score curves (N, L + 1): ``y_0 - mean_k y_k``."""
    return curves[:, 0] - curves.mean(dim=1)


def _aopc_update(
    model: Model, inputs: Tensor, saliency: Tensor, target: Tensor, **settings: Any
) -> tuple[Tensor, Tensor]:
    """Per-sample AOPC (N,) and the score curves (N, L + 1) of a deletion path; ``settings`` are the
    keywords of :func:`~pl_saliency.perturbation.perturbation_curves` (``order`` default ``"morf"``)."""
    curves, _ = spec_and_curves(model, inputs, saliency, target, **settings)
    return _aopc_from_curves(curves), curves


def morf_lerf_curves(
    model: Model, inputs: Tensor, saliency: Tensor, target: Tensor, spec: CurveSpec, speed: SpeedOptions | None = None,
    *, context: BatchContext | None = None,
) -> tuple[Tensor, Tensor]:
    """The MoRF and LeRF deletion curves (N, points) of ``spec`` (its ``order`` replaced by each), shared by
    ABPC (:func:`abpc`, :class:`~pl_saliency.metrics.ABPC`) and the normalised ABPC."""
    morf = spec_curves(model, inputs, saliency, target, spec.replace(order="morf"), speed, context=context)
    lerf = spec_curves(model, inputs, saliency, target, spec.replace(order="lerf"), speed, context=context)
    return morf, lerf


def _abpc_update(
    model: Model, inputs: Tensor, saliency: Tensor, target: Tensor, *, context: BatchContext | None = None, **settings: Any
) -> tuple[Tensor, Tensor]:
    """Per-sample ABPC (N,) and the gap curves ``y_LeRF - y_MoRF`` (N, steps + 1); ``settings`` as
    :func:`_aopc_update` without ``order``."""
    spec, speed = spec_from_kwargs(**settings)
    morf, lerf = morf_lerf_curves(model, inputs, saliency, target, spec, speed, context=context)
    gap = lerf - morf
    return auc(gap, curve_fractions(inputs.shape[-2], inputs.shape[-1], spec.patch_size, spec.steps)), gap


@overload
def aopc_morf(
    model: Model, inputs: Tensor, saliency: Tensor, target: Tensor, *, return_curves: Literal[False] = ...,
    **settings: Unpack[PatchKeywords],
) -> Tensor: ...
@overload
def aopc_morf(
    model: Model, inputs: Tensor, saliency: Tensor, target: Tensor, *, return_curves: Literal[True],
    **settings: Unpack[PatchKeywords],
) -> tuple[Tensor, Tensor]: ...
@overload
def aopc_morf(
    model: Model, inputs: Tensor, saliency: Tensor, target: Tensor, *, return_curves: bool,
    **settings: Unpack[PatchKeywords],
) -> Tensor | tuple[Tensor, Tensor]: ...
@declared_options(PatchKeywords, OPTION_DEFAULTS)
def aopc_morf(
    model: Model, inputs: Tensor, saliency: Tensor, target: Tensor, *, return_curves: bool = False,
    **settings: Unpack[PatchKeywords],
) -> Tensor | tuple[Tensor, Tensor]:
    """AOPC, most relevant first (Samek et al. 2017): the mean drop of the target score as features
    are removed; **higher is better**.

    Args: see :func:`pl_saliency.perturbation.perturbation_curves`; ``reduction`` is ``"mean"``,
    ``"sum"`` or ``"none"`` (per-sample (N,)); ``return_curves=True`` also returns the score curves
    (N, steps + 1).

    Example:
        >>> import torch
        >>> from pl_saliency.functional import aopc_morf
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2, bias=False))
        >>> _ = model[1].weight.data.copy_(torch.tensor([[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]]))
        >>> x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
        >>> saliency = torch.tensor([[[[0.1, 0.4], [0.3, 0.2]]]])
        >>> aopc_morf(model, x, saliency, torch.tensor([0]), steps=4, score="logit")  # 10 - mean(10, 8, 5, 1, 0)
        tensor(5.2000)
    """
    return curve_metric(_aopc_update, locals(), order="morf")


@overload
def aopc_lerf(
    model: Model, inputs: Tensor, saliency: Tensor, target: Tensor, *, return_curves: Literal[False] = ...,
    **settings: Unpack[PatchKeywords],
) -> Tensor: ...
@overload
def aopc_lerf(
    model: Model, inputs: Tensor, saliency: Tensor, target: Tensor, *, return_curves: Literal[True],
    **settings: Unpack[PatchKeywords],
) -> tuple[Tensor, Tensor]: ...
@overload
def aopc_lerf(
    model: Model, inputs: Tensor, saliency: Tensor, target: Tensor, *, return_curves: bool,
    **settings: Unpack[PatchKeywords],
) -> Tensor | tuple[Tensor, Tensor]: ...
@declared_options(PatchKeywords, OPTION_DEFAULTS)
def aopc_lerf(
    model: Model, inputs: Tensor, saliency: Tensor, target: Tensor, *, return_curves: bool = False,
    **settings: Unpack[PatchKeywords],
) -> Tensor | tuple[Tensor, Tensor]:
    """AOPC, least relevant first (Samek et al. 2017): the mean drop of the target score as the least
    relevant features are removed first; **lower is better**. Arguments as :func:`aopc_morf`.

    Example:
        >>> import torch
        >>> from pl_saliency.functional import aopc_lerf
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2, bias=False))
        >>> _ = model[1].weight.data.copy_(torch.tensor([[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]]))
        >>> x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
        >>> saliency = torch.tensor([[[[0.1, 0.4], [0.3, 0.2]]]])
        >>> aopc_lerf(model, x, saliency, torch.tensor([0]), steps=4, score="logit")  # 10 - mean(10, 9, 5, 2, 0)
        tensor(4.8000)
    """
    return curve_metric(_aopc_update, locals(), order="lerf")


@overload
def abpc(
    model: Model, inputs: Tensor, saliency: Tensor, target: Tensor, *, return_curves: Literal[False] = ...,
    **settings: Unpack[PatchKeywords],
) -> Tensor: ...
@overload
def abpc(
    model: Model, inputs: Tensor, saliency: Tensor, target: Tensor, *, return_curves: Literal[True],
    **settings: Unpack[PatchKeywords],
) -> tuple[Tensor, Tensor]: ...
@overload
def abpc(
    model: Model, inputs: Tensor, saliency: Tensor, target: Tensor, *, return_curves: bool,
    **settings: Unpack[PatchKeywords],
) -> Tensor | tuple[Tensor, Tensor]: ...
@declared_options(PatchKeywords, OPTION_DEFAULTS)
def abpc(
    model: Model, inputs: Tensor, saliency: Tensor, target: Tensor, *, return_curves: bool = False,
    **settings: Unpack[PatchKeywords],
) -> Tensor | tuple[Tensor, Tensor]:
    """ABPC: trapezoid area between the LeRF and the MoRF deletion curves over the fraction removed,
    ``AUC(LeRF) - AUC(MoRF)``; **higher is better**. ``return_curves=True`` also returns the gap
    curves ``y_LeRF - y_MoRF`` (N, steps + 1). Arguments as :func:`aopc_morf`.

    Example:
        >>> import torch
        >>> from pl_saliency.functional import abpc
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2, bias=False))
        >>> _ = model[1].weight.data.copy_(torch.tensor([[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]]))
        >>> x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
        >>> saliency = torch.tensor([[[[0.1, 0.4], [0.3, 0.2]]]])
        >>> abpc(model, x, saliency, torch.tensor([0]), steps=4, score="logit")  # gap (0, 1, 0, 1, 0), dx = 1/4
        tensor(0.5000)
    """
    return curve_metric(_abpc_update, locals())
