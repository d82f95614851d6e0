"""Localization metrics as torchmetrics ``Metric`` classes (state and sync only; the math is in
:mod:`pl_saliency.functional.localization`).

Ground truth comes from ``update(..., masks=...)`` or ``update(..., boxes=...)``, else from the
batch context's extras, which is how :class:`~pl_saliency.SaliencyMonitor` hands it over
(``batch_transform`` returning ``(inputs, target, {"masks": ...})``): ``context.extras[mask_key]``,
read as boxes when it is an (N, 4) tensor and as masks otherwise. The default ``mask_key="masks"``
falls back to ``context.extras["boxes"]`` when there is no ``"masks"``. Any other key names a region
of the user's data (``"marker_masks"`` of :class:`~pl_saliency.datasets.ShortcutDigits`, a watermark
or background mask), so one monitor can score the object and another region side by side; the
metric's ``log_name`` (``"relevance_mass_accuracy"`` for the default key,
``"relevance_mass_accuracy_marker_masks"`` for ``mask_key="marker_masks"``) tells them apart. The
model is accepted for the monitor protocol and unused.
"""

from __future__ import annotations

import re
from typing import Any

from torch import Tensor

from pl_saliency._keywords import keyword_only
from pl_saliency.functional.localization import RELEVANCE
from pl_saliency.functional.localization import TIES
from pl_saliency.functional.localization import _energy_pointing_game_update
from pl_saliency.functional.localization import _pointing_game_update
from pl_saliency.functional.localization import _relevance_mass_accuracy_update
from pl_saliency.functional.localization import _relevance_rank_accuracy_update
from pl_saliency.functional.localization import boxes_to_masks
from pl_saliency.functional.localization import check_masks
from pl_saliency.functional.localization import check_tolerance
from pl_saliency.metrics.base import SampleScoreMetric
from pl_saliency.metrics.base import ScoredBatch
from pl_saliency.perturbation.engine import BatchContext
from pl_saliency.registry import snake_case
from pl_saliency.utils import check_choice
from pl_saliency.utils import check_inputs
from pl_saliency.utils import check_saliency

DEFAULT_MASK_KEY = "masks"


def check_mask_key(mask_key: Any) -> str:
    """A non-empty string: the ``context.extras`` key of the ground truth."""
    if not isinstance(mask_key, str) or not mask_key:
        raise ValueError(f"Argument `mask_key` must be a non-empty string (a key of `context.extras`), but got {mask_key!r}.")
    return mask_key


def resolve_ground_truth(
    masks: Any, boxes: Any, context: BatchContext | None, mask_key: str = DEFAULT_MASK_KEY
) -> tuple[Any, Any, str]:
    """``(masks, boxes, name)``: explicit ``masks`` / ``boxes`` first, then ``context.extras[mask_key]``
    (an (N, 4) tensor is read as boxes, anything else as masks); with the default
    ``mask_key="masks"``, then ``context.extras["boxes"]``. ``name`` names the source in errors."""
    if masks is not None and boxes is not None:
        raise ValueError("Arguments `masks` and `boxes` are exclusive: pass one kind of ground truth, but got both.")
    if masks is not None or boxes is not None:
        return masks, boxes, "masks" if masks is not None else "boxes"
    extras = context.extras if context is not None else {}
    value = extras.get(mask_key)
    if value is None and mask_key == DEFAULT_MASK_KEY and extras.get("boxes") is not None:
        return None, extras["boxes"], "context.extras['boxes']"
    if value is None:
        where = "`context` is None" if context is None else f"`context.extras` holds {sorted(map(str, extras))}"
        fallback = ' (or "boxes")' if mask_key == DEFAULT_MASK_KEY else ""
        raise ValueError(
            f"Argument `masks` or `boxes` is required: pass one to `update`, or put the ground truth in `context.extras` "
            f"under `mask_key` = {mask_key!r}{fallback} (SaliencyMonitor: return it from `batch_transform`), but {where}."
        )
    name = f"context.extras[{mask_key!r}]"
    if isinstance(value, Tensor) and value.ndim == 2 and value.shape[-1] == 4:
        return None, value, name
    return value, None, name


class LocalizationMetric(SampleScoreMetric):
    """Base of the localization metrics: a per-sample score against a ground-truth mask or box.

    As input to ``update`` the metric accepts:

    - ``model``: ignored (monitor protocol)
    - ``inputs``: (N, C, H, W) float images (their size is the ground truth's pixel grid)
    - ``saliency``: (N, 1, H, W) or (N, C, H, W) maps (channels summed, lower resolutions upsampled)
    - ``target``: (N,) class indices (unused: the ground truth is the target's)
    - ``context``: optional :class:`~pl_saliency.perturbation.BatchContext` with ``extras``
    - ``masks``: (N, 1, H, W) binary, or ``boxes``: (N, 4) ``(x0, y0, x1, y1)``, exclusive end;
      without them, ``context.extras[mask_key]`` (module docstring)

    As output of ``compute`` the metric returns the mean over samples with a non-empty ground truth
    (empty ones are counted in ``nan_count``: absent, never a hit or a 0), a scalar tensor.

    ``mask_key`` (keyword, default ``"masks"``) names the region scored; ``log_name`` is the name a
    monitor logs the metric under: the class's snake-case name, plus ``_<mask_key>`` for a key other
    than the default.
    """

    higher_is_better: bool = True
    plot_lower_bound: float = 0.0
    plot_upper_bound: float = 1.0

    @keyword_only
    def __init__(self, *, keep_per_sample: bool = False, mask_key: str = DEFAULT_MASK_KEY, **kwargs: Any) -> None:
        super().__init__(keep_per_sample=keep_per_sample, **kwargs)
        self.mask_key = check_mask_key(mask_key)

    @property
    def log_name(self) -> str:
        """``pointing_game``, ``relevance_mass_accuracy_marker_masks``, …: distinct per region."""
        base = snake_case(type(self).__name__)
        if self.mask_key == DEFAULT_MASK_KEY:
            return base
        return f"{base}_{re.sub(r'[^0-9A-Za-z_]+', '_', self.mask_key)}"

    @property
    def definition(self) -> dict[str, Any]:
        return {**super().definition, "mask_key": self.mask_key}

    def _score(self, saliency: Tensor, gt: Tensor) -> Tensor:
        raise NotImplementedError

    update_extras = ("masks", "boxes")

    def _update_batch(self, batch: ScoredBatch) -> None:
        inputs = check_inputs(batch.inputs)
        sal = check_saliency(batch.saliency, inputs)
        n, _, h, w = inputs.shape
        masks, boxes, name = resolve_ground_truth(batch.extras["masks"], batch.extras["boxes"], batch.context, self.mask_key)
        gt = check_masks(masks, n, (h, w), name=name) if masks is not None else boxes_to_masks(boxes, n, (h, w), name=name)
        self._accumulate(self._score(sal, gt.to(sal.device)))


class PointingGame(LocalizationMetric):
    r"""Pointing game (Zhang et al., ECCV 2016 / IJCV 2018, "Excitation backprop"); **higher is better**.

    Per sample: 1 when the map's maximum lies in the ground truth or closer than ``tolerance`` pixels
    to it (Euclidean, strict as TorchRay: ``du^2 + dv^2 < tolerance^2``; ``tolerance=0``: inside),
    else 0; the metric is the hit rate over samples. Default ``tolerance=15`` (the paper, TorchRay;
    meant for ~224 px images). Tied maxima: ``ties="mean"`` (default) scores the share of maximal
    positions that hit (the expected hit under random tie-breaking; a constant map gets the chance
    level), ``ties="any"`` is Quantus's rule. An empty ground truth gives NaN, excluded (Quantus 0.6
    counts it as a hit). TorchRay averages per class; we average over samples. See
    :mod:`pl_saliency.functional.localization`.

    Example:
        >>> import torch
        >>> from pl_saliency.metrics import PointingGame
        >>> metric = PointingGame(tolerance=0)
        >>> x = torch.rand(2, 3, 8, 8)
        >>> sal = torch.zeros(2, 1, 8, 8)
        >>> sal[0, 0, 2, 2] = sal[1, 0, 7, 7] = 1.0
        >>> metric.update(None, x, sal, torch.tensor([0, 1]), boxes=torch.tensor([[0, 0, 4, 4], [0, 0, 4, 4]]))
        >>> metric.compute()
        tensor(0.5000)
    """

    @keyword_only
    def __init__(
        self,
        *,
        tolerance: float = 15.0,
        ties: str = "mean",
        keep_per_sample: bool = False,
        mask_key: str = DEFAULT_MASK_KEY,
        **kwargs: Any,
    ) -> None:
        super().__init__(keep_per_sample=keep_per_sample, mask_key=mask_key, **kwargs)
        self.tolerance = check_tolerance(tolerance)
        check_choice("ties", ties, TIES)
        self.ties = ties

    def _definition_items(self) -> dict[str, Any]:
        return {"tolerance": self.tolerance, "ties": self.ties}

    def _score(self, saliency: Tensor, gt: Tensor) -> Tensor:
        return _pointing_game_update(saliency, gt, self.tolerance, self.ties)


class EnergyPointingGame(LocalizationMetric):
    r"""Energy-based pointing game (Wang et al., CVPR-W 2020, "Score-CAM"); **higher is better**.

    .. math:: \mathrm{EPG}(a, G) = \frac{\sum_{p \in G} a^+_p}{\sum_p a^+_p}, \qquad a^+ = \max(a, 0)

    the share of the map's positive energy inside the ground truth (box or mask); NaN (excluded)
    for an empty ground truth or a map without positive values. Score-CAM's maps are non-negative;
    we take the positive part of signed maps and do not min-max normalize them.

    Example:
        >>> import torch
        >>> from pl_saliency.metrics import EnergyPointingGame
        >>> metric = EnergyPointingGame()
        >>> sal = torch.tensor([[[[3.0, 1.0], [-2.0, 0.0]]]])
        >>> metric.update(None, torch.rand(1, 3, 2, 2), sal, torch.tensor([0]), boxes=torch.tensor([[0, 0, 1, 1]]))
        >>> metric.compute()
        tensor(0.7500)
    """

    def _score(self, saliency: Tensor, gt: Tensor) -> Tensor:
        return _energy_pointing_game_update(saliency, gt)


class _RelevanceMetric(LocalizationMetric):
    @keyword_only
    def __init__(
        self, *, relevance: str = "abs", keep_per_sample: bool = False, mask_key: str = DEFAULT_MASK_KEY, **kwargs: Any
    ) -> None:
        super().__init__(keep_per_sample=keep_per_sample, mask_key=mask_key, **kwargs)
        check_choice("relevance", relevance, RELEVANCE)
        self.relevance = relevance

    def _definition_items(self) -> dict[str, Any]:
        return {"relevance": self.relevance}


class RelevanceMassAccuracy(_RelevanceMetric):
    r"""Relevance mass accuracy (Arras, Osman & Samek, Information Fusion 2022, "CLEVR-XAI");
    **higher is better**.

    .. math:: \mathrm{RMA}(a, G) = \frac{\sum_{p \in G} r_p}{\sum_p r_p}

    with ``r = |a|`` (``relevance="abs"``, default: Arras et al. pool heatmaps to non-negative
    values; for one channel their max-norm / l1 / l2 poolings are ``|a|``), ``max(a, 0)``
    (``"positive"``, their "sum,pos") or ``a`` (``"signed"``, Quantus's default ``abs=False``; not
    bounded to [0, 1], no plot bounds). Equal to Quantus ``RelevanceMassAccuracy(abs=...)`` (its max
    normalization cancels in the ratio). NaN (excluded) for an empty mask or a map of total 0.

    Example:
        >>> import torch
        >>> from pl_saliency.metrics import RelevanceMassAccuracy
        >>> metric = RelevanceMassAccuracy()
        >>> sal = torch.tensor([[[[3.0, 1.0], [-2.0, 0.0]]]])
        >>> masks = torch.tensor([[[[1, 0], [0, 0]]]])
        >>> metric.update(None, torch.rand(1, 3, 2, 2), sal, torch.tensor([0]), masks=masks)
        >>> metric.compute()
        tensor(0.5000)
    """

    @keyword_only
    def __init__(
        self, *, relevance: str = "abs", keep_per_sample: bool = False, mask_key: str = DEFAULT_MASK_KEY, **kwargs: Any
    ) -> None:
        super().__init__(relevance=relevance, keep_per_sample=keep_per_sample, mask_key=mask_key, **kwargs)
        if relevance == "signed":  # a signed ratio is unbounded (torchmetrics guards these names)
            object.__setattr__(self, "plot_lower_bound", None)
            object.__setattr__(self, "plot_upper_bound", None)

    def _score(self, saliency: Tensor, gt: Tensor) -> Tensor:
        return _relevance_mass_accuracy_update(saliency, gt, self.relevance)


class RelevanceRankAccuracy(_RelevanceMetric):
    r"""Relevance rank accuracy (Arras, Osman & Samek, Information Fusion 2022, "CLEVR-XAI");
    **higher is better**.

    .. math:: \mathrm{RRA}(a, G) = \frac{|\{\text{top-}K \text{ positions by } r\} \cap G|}{K}, \qquad K = |G|

    with ``r`` as :class:`RelevanceMassAccuracy` (default ``|a|``). Positions tied with the K-th
    value share the remaining places by expectation (uniform random tie-breaking), so the score does
    not depend on memory order (Quantus: ``np.argsort`` order). Equal to Quantus
    ``RelevanceRankAccuracy(abs=...)`` on maps without ties. NaN (excluded) for an empty mask.

    Example:
        >>> import torch
        >>> from pl_saliency.metrics import RelevanceRankAccuracy
        >>> metric = RelevanceRankAccuracy()
        >>> sal = torch.tensor([[[[3.0, 1.0], [-2.0, 0.0]]]])
        >>> masks = torch.tensor([[[[1, 1], [0, 0]]]])
        >>> metric.update(None, torch.rand(1, 3, 2, 2), sal, torch.tensor([0]), masks=masks)
        >>> metric.compute()
        tensor(0.5000)
    """

    def _score(self, saliency: Tensor, gt: Tensor) -> Tensor:
        return _relevance_rank_accuracy_update(saliency, gt, self.relevance)
