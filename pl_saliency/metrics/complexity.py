"""Complexity metrics as torchmetrics ``Metric`` classes (state and sync only; the math is in
:mod:`pl_saliency.functional.complexity`). They need no model; ``update`` keeps the monitor
signature and ignores ``model``, ``target`` and ``context``."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from pl_saliency._keywords import keyword_only
from pl_saliency.functional.complexity import _check_eps
from pl_saliency.functional.complexity import _entropy_complexity_update
from pl_saliency.functional.complexity import _gini_sparseness_update
from pl_saliency.metrics.base import SampleScoreMetric
from pl_saliency.metrics.base import ScoredBatch
from pl_saliency.utils import check_inputs
from pl_saliency.utils import check_saliency


class _MapMetric(SampleScoreMetric):
    """A per-sample score of the map alone.

    As input to ``update`` the metric accepts ``model`` (ignored), ``inputs`` (N, C, H, W) (for the
    map's size), ``saliency`` (N, 1, H, W) or (N, C, H, W) (channels summed, sign kept, then
    ``abs``), ``target`` (ignored) and ``context`` (ignored). ``compute`` returns the mean over
    samples with a defined score, a scalar tensor.
    """

    def _score(self, saliency: Tensor) -> Tensor:
        raise NotImplementedError

    def _update_batch(self, batch: ScoredBatch) -> None:
        self._accumulate(self._score(check_saliency(batch.saliency, check_inputs(batch.inputs))))


class GiniSparseness(_MapMetric):
    r"""Gini sparseness (Chalasani et al., ICML 2020, "Concise explanations of neural networks using
    adversarial training"; Quantus ``Sparseness``); **higher = sparser** (``higher_is_better=True``).

    .. math::

        G(a) = \frac{\sum_{k=1}^{d} (2k - d - 1)\, v_{(k)}}{d \sum_k v_{(k)}},
        \qquad v = \frac{|a|}{\max |a|} + \varepsilon \text{ sorted ascending}

    over the d = H·W positions; in [0, 1 - 1/d]: 0 for a uniform (or all-zero) map. ``eps`` 1e-7
    as Quantus. Quantus divides the whole batch by one max before adding ``eps`` (a sample's score
    then depends on its batch); we divide each map by its own max (= Quantus one sample at a time).

    Example:
        >>> import torch
        >>> from pl_saliency.metrics import GiniSparseness
        >>> metric = GiniSparseness()
        >>> peaked, flat = torch.zeros(1, 1, 4, 4), torch.ones(1, 1, 4, 4)
        >>> peaked[0, 0, 0, 0] = 1.0
        >>> metric.update(None, torch.rand(2, 3, 4, 4), torch.cat([peaked, flat]), torch.tensor([0, 1]))
        >>> round(float(metric.compute()), 3)  # mean of 15/16 and 0
        0.469
    """

    higher_is_better: bool = True
    plot_lower_bound: float = 0.0
    plot_upper_bound: float = 1.0

    @keyword_only
    def __init__(self, *, eps: float = 1e-7, keep_per_sample: bool = False, **kwargs: Any) -> None:
        super().__init__(keep_per_sample=keep_per_sample, **kwargs)
        self.eps = _check_eps(eps)

    def _definition_items(self) -> dict[str, Any]:
        return {"eps": self.eps}

    def _score(self, saliency: Tensor) -> Tensor:
        return _gini_sparseness_update(saliency, self.eps)


class EntropyComplexity(_MapMetric):
    r"""Entropy complexity (Bhatt, Weller & Moura, IJCAI 2020, "Evaluating and aggregating
    feature-based model explanations"; Quantus ``Complexity``); **lower is better**.

    .. math:: H(a) = -\sum_{k=1}^{d} p_k \ln p_k, \qquad p = \frac{|a|}{\sum |a|}

    over the d = H·W positions, in nats, in [0, ln d] (ln d: uniform map). An all-zero map has no
    distribution: NaN, excluded. Quantus adds 1e-12 inside the log; we use 0 ln 0 = 0.

    Example:
        >>> import math, torch
        >>> from pl_saliency.metrics import EntropyComplexity
        >>> metric = EntropyComplexity()
        >>> metric.update(None, torch.rand(1, 3, 4, 4), torch.ones(1, 1, 4, 4), torch.tensor([0]))
        >>> math.isclose(float(metric.compute()), math.log(16), rel_tol=1e-6)
        True
    """

    higher_is_better: bool = False
    plot_lower_bound: float = 0.0
    plot_upper_bound: float | None = None

    def _score(self, saliency: Tensor) -> Tensor:
        return _entropy_complexity_update(saliency)
