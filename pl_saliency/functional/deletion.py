r"""Deletion and insertion (Petsiuk, Das & Saenko, BMVC 2018, "RISE").

.. math::

    \mathrm{AUC} = \int_0^1 p_c(x_t)\,dt \approx \frac{1}{K}\Big(\sum_{k=0}^{K} y_k - \frac{y_0 + y_K}{2}\Big)

where ``y_k`` is the target class's softmax probability (or logit) after removing (deletion) or
inserting (insertion) the first ``floor(k F / K)`` of the F features in the saliency map's order.

* Deletion: start from the image, replace features by the filler (RISE: zeros), most relevant
  first. A faithful map makes the score fall fast: **lower is better**.
* Insertion: start from the filler's image (RISE: Gaussian blur, kernel 11, sigma 5) and restore
  features, most relevant first. A faithful map makes the score rise fast: **higher is better**.

Where we differ from the RISE code: a feature is a spatial position with all its channels (as in
RISE) grouped into ``patch_size`` squares on request; the step is ``F / steps`` features rather
than a fixed 224 pixels; ties are broken by a seeded permutation rather than by position; the AUC
is ``torch.trapezoid`` over x in [0, 1] (the same number as RISE's formula).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any
from typing import Literal
from typing import Unpack
from typing import overload

from torch import Tensor

from pl_saliency._keywords import declared_options
from pl_saliency.options import OrderedKeywords
from pl_saliency.perturbation.engine import BatchContext
from pl_saliency.perturbation.engine import curve_fractions
from pl_saliency.perturbation.engine import spec_curves
from pl_saliency.spec import OPTION_DEFAULTS
from pl_saliency.spec import CurveSpec
from pl_saliency.spec import spec_from_kwargs
from pl_saliency.utils import SCORE_REDUCTIONS
from pl_saliency.utils import auc
from pl_saliency.utils import check_choice
from pl_saliency.utils import reduce_scores

Model = Callable[[Tensor], Any]


def spec_and_curves(
    model: Model, inputs: Tensor, saliency: Tensor, target: Tensor, *, context: BatchContext | None = None, **settings: Any
) -> tuple[Tensor, CurveSpec]:
    """The curves (N, points) of a path and its :class:`~pl_saliency.spec.CurveSpec`: ``settings`` are the
    keywords of :func:`~pl_saliency.perturbation.perturbation_curves` (split into a ``CurveSpec`` and
    :class:`~pl_saliency.spec.SpeedOptions` by :func:`~pl_saliency.spec.spec_from_kwargs`)."""
    spec, speed = spec_from_kwargs(**settings)
    return spec_curves(model, inputs, saliency, target, spec, speed, context=context), spec


def _curve_auc_update(
    model: Model, inputs: Tensor, saliency: Tensor, target: Tensor, **settings: Any
) -> tuple[Tensor, Tensor]:
    """Per-sample areas (N,) and curves (N, steps + 1) of a deletion or insertion path; ``settings`` as
    :func:`spec_and_curves`."""
    curves, spec = spec_and_curves(model, inputs, saliency, target, **settings)
    x = curve_fractions(inputs.shape[-2], inputs.shape[-1], spec.patch_size, spec.steps)
    return auc(curves, x), curves


def _reduce(values: Tensor, reduction: str, where: str | None = None) -> Tensor:
    """Per-sample scores reduced by the package's one rule (:func:`pl_saliency.utils.reduce_scores`):
    ``"mean"``/``"sum"`` exclude non-finite samples with a warning giving the count, as the Metric
    classes do (they count them in ``nan_count``); ``"none"`` keeps them. The warning names ``where``
    (default: the calling function, e.g. ``deletion_auc``)."""
    if where is None:
        where = sys._getframe(1).f_code.co_name
    return reduce_scores(values, reduction, where, SCORE_REDUCTIONS)


def curve_metric(
    update: Callable[..., tuple[Tensor, Tensor]], arguments: dict[str, Any], **fixed: Any
) -> Tensor | tuple[Tensor, Tensor]:
    """The body of every public curve metric function: ``arguments`` are its parameters (``locals()``),
    ``fixed`` the settings it does not expose; checks ``return_curves`` and ``reduction``, calls its
    ``update(model, inputs, saliency, target, **settings) -> (scores (N,), curves)`` and reduces."""
    settings = {**arguments.get("settings", {}), **{k: v for k, v in arguments.items() if k != "settings"}, **fixed}
    reduction, return_curves = settings.pop("reduction"), settings.pop("return_curves")
    _check_bool("return_curves", return_curves)
    check_choice("reduction", reduction, SCORE_REDUCTIONS)
    problem = [settings.pop(name) for name in ("model", "inputs", "saliency", "target")]
    scores, curves = update(*problem, **settings)
    out = _reduce(scores, reduction, sys._getframe(1).f_code.co_name)  # the warning names the public function
    return (out, curves) if return_curves else out


@overload
def deletion_auc(
    model: Model, inputs: Tensor, saliency: Tensor, target: Tensor, *, return_curves: Literal[False] = ...,
    **settings: Unpack[OrderedKeywords],
) -> Tensor: ...
@overload
def deletion_auc(
    model: Model, inputs: Tensor, saliency: Tensor, target: Tensor, *, return_curves: Literal[True],
    **settings: Unpack[OrderedKeywords],
) -> tuple[Tensor, Tensor]: ...
@overload
def deletion_auc(
    model: Model, inputs: Tensor, saliency: Tensor, target: Tensor, *, return_curves: bool,
    **settings: Unpack[OrderedKeywords],
) -> Tensor | tuple[Tensor, Tensor]: ...
@declared_options(OrderedKeywords, OPTION_DEFAULTS)
def deletion_auc(
    model: Model, inputs: Tensor, saliency: Tensor, target: Tensor, *, return_curves: bool = False,
    **settings: Unpack[OrderedKeywords],
) -> Tensor | tuple[Tensor, Tensor]:
    """Deletion AUC (RISE): area under the target score as features are removed; lower is better.

    Args: see :func:`pl_saliency.perturbation.perturbation_curves`; ``reduction`` is ``"mean"``,
    ``"sum"`` or ``"none"`` (per-sample (N,)); ``return_curves=True`` also returns the
    (N, steps + 1) curves.

    Example:
        >>> import torch
        >>> from pl_saliency.functional import deletion_auc
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
        >>> _ = torch.manual_seed(0)
        >>> x, y = torch.rand(2, 1, 4, 4), torch.tensor([0, 2])
        >>> deletion_auc(model, x, torch.rand(2, 1, 4, 4), y, steps=4).shape
        torch.Size([])
    """
    return curve_metric(_curve_auc_update, locals(), mode="deletion")


@overload
def insertion_auc(
    model: Model, inputs: Tensor, saliency: Tensor, target: Tensor, *, return_curves: Literal[False] = ...,
    **settings: Unpack[OrderedKeywords],
) -> Tensor: ...
@overload
def insertion_auc(
    model: Model, inputs: Tensor, saliency: Tensor, target: Tensor, *, return_curves: Literal[True],
    **settings: Unpack[OrderedKeywords],
) -> tuple[Tensor, Tensor]: ...
@overload
def insertion_auc(
    model: Model, inputs: Tensor, saliency: Tensor, target: Tensor, *, return_curves: bool,
    **settings: Unpack[OrderedKeywords],
) -> Tensor | tuple[Tensor, Tensor]: ...
@declared_options(OrderedKeywords, OPTION_DEFAULTS, filler="blur")
def insertion_auc(
    model: Model, inputs: Tensor, saliency: Tensor, target: Tensor, *, return_curves: bool = False,
    **settings: Unpack[OrderedKeywords],
) -> Tensor | tuple[Tensor, Tensor]:
    """Insertion AUC (RISE): area under the target score as features are restored into the filler's
    image (default: Gaussian blur); higher is better. Arguments as :func:`deletion_auc`."""
    return curve_metric(_curve_auc_update, locals(), mode="insertion")


def _check_bool(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"Argument `{name}` must be a bool, but got {type(value).__name__} {value!r}.")
