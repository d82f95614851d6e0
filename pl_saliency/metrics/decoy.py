"""Decoy realism as a torchmetrics ``Metric`` (state and sync only; the math is in
:mod:`pl_saliency.functional.decoy`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from pl_saliency._keywords import keyword_only
from pl_saliency.functional.decoy import DECOY_REDUCTIONS
from pl_saliency.functional.decoy import REALISM_MEASURES
from pl_saliency.functional.decoy import _decoy_realism_update
from pl_saliency.metrics.base import FunctionalMetric
from pl_saliency.perturbation.engine import BatchContext
from pl_saliency.utils import check_choice


class DecoyRealism(FunctionalMetric):
    r"""How close DANCE decoys stay to their input (Lu et al., ICML 2021); **lower is better**.

    Per sample, over its decoys (``reduction="mean"`` or ``"max"``), one ``measure``:

    - ``"lpips"`` (default): LPIPS distance between decoy and input (the explainer must be built with
      ``lpips_net=...``; see :func:`pl_saliency.functional.lpips_distance` for the mapping to LPIPS'
      3-channel [-1, 1] input), plot range [0, 1];
    - ``"linf"``: ``||decoy - x||_inf`` in input units, no fixed plot range;
    - ``"deviation"``: ``||F_l(decoy) - F_l(x)||_inf / epsilon`` at the decoys' layer, the share of the
      tolerance used (<= 1 when every decoy satisfies the swappable condition), plot range [0, 1].

    The decoys are those a :class:`~pl_saliency.explainers.DecoyEnhanced` explainer generated for this
    batch: the metric reads ``context.explainer.last_report`` (the monitor sets ``context.explainer``
    before each explainer's metrics), so nothing is recomputed. For an explainer without decoys the
    score is undefined: NaN, excluded from the mean (``compute`` is NaN if no sample had decoys).

    As input to ``update``: ``model``, ``inputs`` (N, C, H, W), ``saliency``, ``target`` (unused but
    part of the monitor protocol), and ``context`` (required), a
    :class:`~pl_saliency.perturbation.BatchContext` whose ``explainer`` produced ``saliency`` from
    these ``inputs``.

    Example:
        >>> import torch
        >>> from pl_saliency.explainers import DecoyEnhanced, Gradient
        >>> from pl_saliency.metrics import DecoyRealism
        >>> from pl_saliency.perturbation import BatchContext
        >>> model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3, padding=1), torch.nn.Tanh(),
        ...                             torch.nn.Flatten(), torch.nn.Linear(32, 3))
        >>> explainer = DecoyEnhanced(Gradient(), layer="1", patch_size=2, num_patches=2, steps=10)
        >>> x, y = torch.rand(2, 1, 4, 4, generator=torch.Generator().manual_seed(0)), torch.tensor([0, 1])
        >>> saliency = explainer(model, x, y)
        >>> metric = DecoyRealism(measure="deviation", reduction="max")
        >>> metric.update(model, x, saliency, y, context=BatchContext(explainer=explainer))
        >>> bool(metric.compute() <= 1)
        True
    """

    higher_is_better: bool = False
    plot_lower_bound: float = 0.0
    plot_upper_bound: float = 1.0

    @keyword_only
    def __init__(self, *, measure: str = "lpips", reduction: str = "mean", keep_per_sample: bool = False, **kwargs: Any) -> None:
        super().__init__(keep_per_sample=keep_per_sample, **kwargs)
        check_choice("measure", measure, REALISM_MEASURES)
        check_choice("reduction", reduction, DECOY_REDUCTIONS)
        self._set_options(measure=measure, reduction=reduction)
        if measure == "linf":  # input units: no fixed plot range (torchmetrics guards these names)
            object.__setattr__(self, "plot_upper_bound", None)

    def _definition_items(self) -> dict[str, Any]:
        return {"measure": self.measure, "reduction": self.reduction}

    def _options(self, context: BatchContext | None, explainer: Callable[..., Tensor] | None = None) -> dict[str, Any]:
        if context is None:
            raise ValueError(
                "Argument `context` must be a BatchContext whose `explainer` is the DecoyEnhanced explainer that produced "
                "`saliency`, but got None."
            )
        return {**super()._options(context), "explainer": getattr(context, "explainer", None)}

    def _scores(self, model: Any, inputs: Tensor, saliency: Tensor, target: Tensor, options: dict[str, Any]) -> Tensor:
        explainer = options["explainer"]
        report = getattr(explainer, "last_report", None)
        if report is None:
            return torch.full((inputs.shape[0],), float("nan"), device=inputs.device)
        same = report.inputs is inputs or (
            report.inputs.shape == inputs.shape and torch.equal(report.inputs.to(inputs.device), inputs)
        )
        if not same:
            raise ValueError(
                f"Argument `inputs` must be the batch the explainer {getattr(explainer, 'name', explainer)!r} last explained "
                f"(its decoys are for a batch of shape {tuple(report.inputs.shape)}), but got another batch of shape "
                f"{tuple(inputs.shape)}."
            )
        return _decoy_realism_update(report, options["measure"], options["reduction"])
