"""Average Drop and Increase in Confidence as torchmetrics ``Metric`` classes (state and sync only; the math
is in :mod:`pl_saliency.functional.confidence`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from pl_saliency._keywords import options_of
from pl_saliency.functional.confidence import NORMALIZATIONS
from pl_saliency.functional.confidence import average_drop
from pl_saliency.functional.confidence import check_percentile
from pl_saliency.functional.confidence import increase_in_confidence
from pl_saliency.metrics.base import FunctionalMetric
from pl_saliency.perturbation.engine import BatchContext
from pl_saliency.perturbation.fillers import Filler
from pl_saliency.perturbation.fillers import get_filler
from pl_saliency.utils import check_choice
from pl_saliency.utils import check_positive_int


class _ConfidenceMetric(FunctionalMetric):
    """Shared settings of :class:`AverageDrop` and :class:`IncreaseInConfidence`.

    As input to ``update``: ``model`` (called in eval mode, restored after; not registered), ``inputs``
    (N, C, H, W), ``saliency`` (N, 1, H, W) or (N, C, H, W) (channels summed), ``target`` (N,) int64,
    ``context`` (unused; its ``generator`` is not read: only random fillers draw, from a generator
    seeded 0 per call). ``compute`` returns the mean over samples with a defined value.
    """

    plot_lower_bound: float = 0.0
    plot_upper_bound: float = 1.0

    filler: Filler

    @options_of(average_drop, drop=("reduction", "generator"))  # increase_in_confidence takes the same options
    def __init__(self, options: dict[str, Any], **settings: Any) -> None:
        super().__init__(**settings)
        options["percentile"] = check_percentile(options["percentile"])
        check_choice("normalize", options["normalize"], NORMALIZATIONS)
        fill = options["filler"] = get_filler(options["filler"])
        if fill.mask_dependent and options["percentile"] is None:
            raise ValueError(
                f"Argument `filler` {fill.key!r} fills binary holes only: pass a mask-independent filler for the "
                "continuous variant, or binarize with `percentile=`."
            )
        options["chunk_size"] = check_positive_int("chunk_size", options["chunk_size"])
        self._set_options(**options)

    def _definition_items(self) -> dict[str, Any]:
        return {"percentile": self.percentile, "normalize": self.normalize, "filler": self.filler.key, "score": "probability"}

    def _options(self, context: BatchContext | None, explainer: Callable[..., Tensor] | None = None) -> dict[str, Any]:
        return {**super()._options(context), "generator": torch.Generator().manual_seed(0)}


class AverageDrop(_ConfidenceMetric):
    r"""Average Drop (Chattopadhay et al., WACV 2018, "Grad-CAM++"); **lower is better**, in [0, 1].

    Per sample :math:`\max(0, Y_c - O_c) / Y_c` with :math:`Y_c` the target's softmax probability on
    the image and :math:`O_c` on :math:`s \odot x + (1 - s) \odot b` (``filler`` b, default zeros: the
    image multiplied by the map, as the authors' ``evaluate.py`` l. 77), the map normalized as the
    coherence paper's code does (positive part, min–max). ``percentile=90`` gives their binarized
    variant (top 10 % of each map kept). NaN where :math:`Y_c = 0` (excluded). The paper reports ×100.
    Definitions, sources and differences: :mod:`pl_saliency.functional.confidence`.

    Example:
        >>> import torch
        >>> from pl_saliency.metrics.confidence import AverageDrop
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
        >>> metric = AverageDrop(normalize="none")
        >>> metric.update(model, torch.ones(2, 1, 2, 2), torch.ones(2, 1, 2, 2), torch.tensor([0, 1]))
        >>> metric.compute()
        tensor(0.)
    """

    higher_is_better: bool = False
    function = average_drop


class IncreaseInConfidence(_ConfidenceMetric):
    r"""Increase in Confidence (Chattopadhay et al., WACV 2018); **higher is better**, in [0, 1].

    Per sample :math:`\mathbb 1[O_c > Y_c]` (see :class:`AverageDrop` for :math:`O_c`); ``compute`` is
    the share of samples whose target probability rose when only the explanation was shown (the paper
    reports ×100). ``percentile=90`` gives the binarized variant.

    Example:
        >>> import torch
        >>> from pl_saliency.metrics.confidence import IncreaseInConfidence
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
        >>> metric = IncreaseInConfidence(normalize="none")
        >>> metric.update(model, torch.ones(2, 1, 2, 2), torch.ones(2, 1, 2, 2), torch.tensor([0, 1]))
        >>> metric.compute()  # nothing removed: never strictly higher
        tensor(0.)
    """

    higher_is_better: bool = True
    function = increase_in_confidence


__all__ = ["AverageDrop", "IncreaseInConfidence"]
