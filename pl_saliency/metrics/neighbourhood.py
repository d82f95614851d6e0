"""Deletion / insertion AUC with the coherence paper's neighbourhood removal as torchmetrics ``Metric``
classes (state and sync only; the math is in :mod:`pl_saliency.functional.neighbourhood`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from pl_saliency.functional.neighbourhood import _check_region
from pl_saliency.functional.neighbourhood import curve_auc
from pl_saliency.functional.neighbourhood import neighbourhood_curves
from pl_saliency.metrics.base import FunctionalMetric
from pl_saliency.perturbation.engine import BatchContext
from pl_saliency.perturbation.fillers import Filler
from pl_saliency.perturbation.fillers import get_filler
from pl_saliency.utils import check_positive_int


class _NeighbourhoodAUC(FunctionalMetric):
    mode: str = "deletion"
    plot_lower_bound: float = 0.0
    plot_upper_bound: float = 1.0

    filler: Filler

    def __init__(
        self,
        *,
        filler: Any = "zeros",
        steps: int = 100,
        region: Any = (9, 9),
        chunk_size: int = 64,
        output_transform: Callable[[Any], Tensor] | None = None,
        keep_per_sample: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(keep_per_sample=keep_per_sample, **kwargs)
        fill = get_filler(filler)
        if fill.mask_dependent:
            raise ValueError(f"Argument `filler` must be mask-independent (a substrate), but got {fill.key!r}.")
        self._set_options(
            filler=fill,
            steps=check_positive_int("steps", steps),
            region=_check_region(region),
            chunk_size=check_positive_int("chunk_size", chunk_size),
            output_transform=output_transform,
        )

    def _definition_items(self) -> dict[str, Any]:
        return {"mode": self.mode, "filler": self.filler.key, "steps": self.steps, "region": self.region, "score": "probability"}

    def _options(self, context: BatchContext | None, explainer: Callable[..., Tensor] | None = None) -> dict[str, Any]:
        return {**super()._options(context), "mode": self.mode, "generator": torch.Generator().manual_seed(0)}

    def _scores(self, model: Any, inputs: Tensor, saliency: Tensor, target: Tensor, options: dict[str, Any]) -> Tensor:
        return curve_auc(neighbourhood_curves(model, inputs, saliency, target, **options))


class NeighbourhoodDeletionAUC(_NeighbourhoodAUC):
    """Deletion AUC with the coherence paper's removal (Vandersmissen & Oramas; ``evaluate.py``
    ``deletion(..., use_region=True, region_shape=(9, 9))``); ``region=None`` gives their pixel rule.
    **Lower is better**, in [0, 1]. Random fillers draw from a generator seeded 0 per update.
    Definitions and differences: :mod:`pl_saliency.functional.neighbourhood`.

    Example:
        >>> import torch
        >>> from pl_saliency.metrics.neighbourhood import NeighbourhoodDeletionAUC
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 2))
        >>> metric = NeighbourhoodDeletionAUC(steps=4, region=(3, 3))
        >>> metric.update(model, torch.rand(2, 1, 4, 4), torch.rand(2, 1, 4, 4), torch.tensor([0, 1]))
        >>> bool(0 <= metric.compute() <= 1)
        True
    """

    mode = "deletion"
    higher_is_better: bool = False


class NeighbourhoodInsertionAUC(_NeighbourhoodAUC):
    """Insertion AUC with the coherence paper's removal (``evaluate.py`` ``insertion(..., use_region=True)``,
    default substrate ``BlurredBaseline(11, 5)`` there; pass ``filler=Blur(5, 11)`` for it). **Higher is
    better**, in [0, 1]. See :class:`NeighbourhoodDeletionAUC`."""

    mode = "insertion"
    higher_is_better: bool = True


__all__ = ["NeighbourhoodDeletionAUC", "NeighbourhoodInsertionAUC"]
