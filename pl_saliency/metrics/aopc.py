"""AOPC MoRF / LeRF, ABPC, pixel flipping, region perturbation and selectivity as torchmetrics
``Metric`` classes (state and sync only; the math is in :mod:`pl_saliency.functional.aopc` and
:mod:`pl_saliency.functional.region`)."""

from __future__ import annotations

from typing import Any
from typing import Unpack

import torch
from torch import Tensor

from pl_saliency._keywords import declared_options
from pl_saliency._keywords import keyword_only
from pl_saliency.functional.aopc import _aopc_from_curves
from pl_saliency.functional.aopc import morf_lerf_curves
from pl_saliency.functional.deletion import Model
from pl_saliency.functional.region import num_regions
from pl_saliency.functional.region import region_fractions
from pl_saliency.metrics.deletion import CurveAUCMetric
from pl_saliency.options import FlipMetricOptions
from pl_saliency.options import PatchMetricOptions
from pl_saliency.options import RegionMetricOptions
from pl_saliency.options import SelectivityMetricOptions
from pl_saliency.options import TorchmetricsOptions
from pl_saliency.perturbation.engine import BatchContext
from pl_saliency.perturbation.engine import curve_fractions
from pl_saliency.spec import OPTION_DEFAULTS
from pl_saliency.spec import CurveSpec
from pl_saliency.utils import auc
from pl_saliency.utils import check_positive_int

_DIRECTION: dict[str, bool | None] = {"morf": True, "lerf": False, "random": None}


class CurveMetric(CurveAUCMetric):
    """Base of the curve metrics whose per-sample score is not (only) the deletion AUC, or whose direction
    follows their ``order``.

    Subclasses set what differs from :class:`~pl_saliency.metrics.CurveAUCMetric`, whose ``update`` they
    share: ``curve_spec(inputs)`` (the spec of the curve, e.g. one square per step), ``_positions(inputs)``
    (the fraction of features removed at each curve point), ``scores_from_curves`` (the per-sample score)
    and ``anchor_scores``; states and their sync are those of ``CurveAUCMetric``
    (``score_sum``/``total``/``nan_count``/``scores`` and ``curve_sum``). With ``lazy_curve = True`` the
    curve length is set by the first ``update`` (it depends on the image size): every batch must then
    have the same size.
    """

    def _set_direction(self, higher_is_better: bool | None) -> None:
        object.__setattr__(self, "higher_is_better", higher_is_better)  # torchmetrics guards the name


class _AOPCSummary(CurveMetric):
    """Curve metrics summarised by the AOPC ``y_0 - mean(y)`` of their score curve (AOPC, region perturbation)."""

    plot_lower_bound: float = -1.0
    plot_upper_bound: float = 1.0

    def scores_from_curves(self, curves: Tensor, inputs: Tensor) -> Tensor:
        return _aopc_from_curves(curves)

    def anchor_scores(self, curves: Tensor) -> Tensor | None:
        """AOPC of a perfect order: the whole drop ``y_0 - y_K`` at once (MoRF), no drop (LeRF)."""
        if self.order == "morf":
            return curves[:, 0] - curves[:, -1]
        if self.order == "lerf":
            return torch.zeros_like(curves[:, 0])
        return None


class _AOPC(_AOPCSummary):
    _order: str = "morf"

    @keyword_only
    @declared_options(PatchMetricOptions, OPTION_DEFAULTS, filler=None, forwarded=TorchmetricsOptions)
    def __init__(self, **settings: Unpack[PatchMetricOptions]) -> None:
        super().__init__(order=self._order, **settings)

    def _definition_items(self) -> dict[str, Any]:
        return {**super()._definition_items(), "summary": "aopc"}


class AOPCMorf(_AOPC):
    r"""AOPC, most relevant first (Samek et al., IEEE TNNLS 2017); **higher is better**.

    .. math:: \mathrm{AOPC} = \Big\langle \frac{1}{L+1} \sum_{k=0}^{L} f_c(x^{(0)}) - f_c(x^{(k)}) \Big\rangle_{x}

    ``x^{(k)}``: the first ``floor(k F / L)`` features (positions, or ``patch_size`` squares) in the
    map's order replaced by the ``filler`` (default ``"zeros"``), ``L = steps`` (default 50), ``f_c``
    the target's softmax probability (``score="logit"``: its logit). Samek et al. perturb 9×9 regions
    with uniform noise for 100 steps and measure the classifier output; our defaults equal
    :class:`~pl_saliency.metrics.DeletionAUC`'s so the two (and :class:`PixelFlipping`) share one curve
    per batch. Details and differences: :mod:`pl_saliency.functional.aopc`.

    As input to ``update``: ``model``, ``inputs`` (N, C, H, W), ``saliency`` (N, 1, H, W) or
    (N, C, H, W), ``target`` (N,) int64, optional ``context``. ``compute`` returns the mean AOPC;
    ``curve()`` the mean score curve (steps + 1,), ``curve_x()`` the fraction removed at each point.

    Example:
        >>> import torch
        >>> from pl_saliency.metrics import AOPCMorf
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2, bias=False))
        >>> _ = model[1].weight.data.copy_(torch.tensor([[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]]))
        >>> metric = AOPCMorf(steps=4, score="logit")
        >>> metric.update(model, torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]]), torch.tensor([[[[0.1, 0.4], [0.3, 0.2]]]]),
        ...               torch.tensor([0]))
        >>> metric.compute()  # 10 - mean(10, 8, 5, 1, 0)
        tensor(5.2000)
        >>> metric.curve()
        tensor([10.,  8.,  5.,  1.,  0.])
    """

    higher_is_better: bool = True
    _order = "morf"


class AOPCLerf(_AOPC):
    r"""AOPC, least relevant first (Samek et al., IEEE TNNLS 2017); **lower is better**.

    As :class:`AOPCMorf` with the least relevant features removed first: the score should stay put.

    Example:
        >>> import torch
        >>> from pl_saliency.metrics import AOPCLerf
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2, bias=False))
        >>> _ = model[1].weight.data.copy_(torch.tensor([[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]]))
        >>> metric = AOPCLerf(steps=4, score="logit")
        >>> metric.update(model, torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]]), torch.tensor([[[[0.1, 0.4], [0.3, 0.2]]]]),
        ...               torch.tensor([0]))
        >>> metric.compute()  # 10 - mean(10, 9, 5, 2, 0)
        tensor(4.8000)
    """

    higher_is_better: bool = False
    _order = "lerf"


class ABPC(_AOPC):
    r"""ABPC: area between the LeRF and MoRF perturbation curves; **higher is better**.

    .. math::

        \mathrm{ABPC} = \Big\langle \int_0^1 f_c(x^{(t)}_{\mathrm{LeRF}})
        - f_c(x^{(t)}_{\mathrm{MoRF}})\,dt \Big\rangle_x

    by the trapezoid rule over the fraction removed ``t`` (``steps`` evenly spaced points), i.e.
    ``AUC(LeRF) - AUC(MoRF)`` of two deletion curves with the same ``filler`` (default ``"zeros"``).
    A faithful map removes the evidence fast in MoRF order and keeps it in LeRF order. Both curves are
    shared with :class:`AOPCMorf` / :class:`AOPCLerf` / :class:`~pl_saliency.metrics.DeletionAUC` of
    the same settings. ``curve()`` is the mean gap curve ``y_LeRF - y_MoRF``.

    Example:
        >>> import torch
        >>> from pl_saliency.metrics import ABPC
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2, bias=False))
        >>> _ = model[1].weight.data.copy_(torch.tensor([[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]]))
        >>> metric = ABPC(steps=4, score="logit")
        >>> metric.update(model, torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]]), torch.tensor([[[[0.1, 0.4], [0.3, 0.2]]]]),
        ...               torch.tensor([0]))
        >>> metric.compute()  # gap (0, 1, 0, 1, 0), trapezoid with dx = 1/4
        tensor(0.5000)
    """

    higher_is_better: bool = True

    def _curves(
        self, model: Model, inputs: Tensor, saliency: Tensor, target: Tensor, context: BatchContext | None
    ) -> Tensor:
        """The gap curves ``y_LeRF - y_MoRF`` (N, steps + 1)."""
        morf, lerf = morf_lerf_curves(model, inputs, saliency, target, self.spec, self.speed, context=context)
        return lerf - morf

    def _definition_items(self) -> dict[str, Any]:
        items = super()._definition_items()
        items.update(order="lerf-morf", summary="trapezoid area between curves")
        return items

    def scores_from_curves(self, curves: Tensor, inputs: Tensor) -> Tensor:
        """Area (N,) of gap curves ``y_LeRF - y_MoRF``."""
        return auc(curves, self._positions(inputs))

    def anchor_scores(self, curves: Tensor) -> Tensor | None:
        """ABPC of a perfect map: the full drop ``y_0 - y_K`` between the two curves."""
        return curves[:, 0] - curves[:, -1]

    _pairs_orders = True  # holds both orders already: no inverted-order control

    def _random_scores(self, curves: Tensor, inputs: Tensor) -> Tensor:
        """A random map's ABPC: the gap between disjoint pairs of random-order deletion curves
        (orders 2k and 2k + 1 play LeRF and MoRF), averaged over the pairs; 0 in expectation."""
        n, r, p = curves.shape
        if r < 2:
            raise ValueError(f"Argument `repeats` must be at least 2 for ABPC's random control, but got {r}.")
        pairs = r // 2
        gap = curves[:, 0 : 2 * pairs : 2] - curves[:, 1 : 2 * pairs : 2]
        return self.scores_from_curves(gap.reshape(n * pairs, p), inputs).view(n, pairs).mean(1)


class PixelFlipping(CurveMetric):
    r"""Pixel flipping (Bach et al., PLoS ONE 2015): area under the target score as single positions
    are flipped to the ``filler`` (default ``"zeros"``) in the map's ``order``; **lower is better**
    for ``"morf"`` (the default), higher for ``"lerf"``, undefined (``higher_is_better=None``) for
    ``"random"``.

    .. math:: \mathrm{PF} = \Big\langle \int_0^1 f_c(x^{(t)})\,dt \Big\rangle_x

    over the fraction of positions flipped ``t``, trapezoid rule on ``steps`` evenly spaced points
    (Bach et al. and Quantus flip one pixel per step: ``steps = H·W``, costly; Quantus flips C·H·W
    channel values and returns the curve, we flip positions with all their channels). This is the
    deletion curve with ``patch_size=1``: with the same settings it is computed once per batch for
    :class:`~pl_saliency.metrics.DeletionAUC`, :class:`AOPCMorf` and this metric.

    Example:
        >>> import torch
        >>> from pl_saliency.metrics import PixelFlipping
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2, bias=False))
        >>> _ = model[1].weight.data.copy_(torch.tensor([[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]]))
        >>> metric = PixelFlipping(steps=4, score="logit")
        >>> metric.update(model, torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]]), torch.tensor([[[[0.1, 0.4], [0.3, 0.2]]]]),
        ...               torch.tensor([0]))
        >>> metric.compute()  # (10/2 + 8 + 5 + 1 + 0/2) / 4
        tensor(4.7500)
    """

    higher_is_better: bool | None = False

    @keyword_only
    @declared_options(FlipMetricOptions, OPTION_DEFAULTS, filler=None, forwarded=TorchmetricsOptions)
    def __init__(self, **settings: Unpack[FlipMetricOptions]) -> None:
        super().__init__(patch_size=1, **settings)
        direction = _DIRECTION[self.order]
        self._set_direction(None if direction is None else not direction)


class RegionPerturbation(_AOPCSummary):
    r"""Region perturbation (Samek et al., IEEE TNNLS 2017): AOPC of removing ``patch_size`` squares
    (ranked by summed saliency) one per step in the map's ``order`` for the first ``regions`` squares
    (``None``, the default: all of them).

    .. math:: \mathrm{AOPC} = \Big\langle \frac{1}{R+1} \sum_{k=0}^{R} f_c(x^{(0)}) - f_c(x^{(k)}) \Big\rangle_x

    **Higher is better** for ``order="morf"`` (default), **lower** for ``"lerf"``, undefined for
    ``"random"``. Squares do not overlap (Quantus' choice; Samek et al. perturb 9×9 neighbourhoods);
    ``filler`` defaults to ``"zeros"`` (Samek: uniform noise, ``filler="uniform_noise"``). The score
    curve (``curve()``, R + 1 points, the first unperturbed) equals Quantus' ``RegionPerturbation``
    output as ``curve[0] - curve[1:]`` (same baseline, no ties). The curve length depends on the image
    size: every batch must have the same size. Details: :mod:`pl_saliency.functional.region`.

    Example:
        >>> import torch
        >>> from pl_saliency.metrics import RegionPerturbation
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 2, bias=False))
        >>> _ = model[1].weight.data.fill_(0.0)
        >>> _ = model[1].weight.data[0].fill_(1.0)
        >>> x = torch.arange(16.0).view(1, 1, 4, 4)  # 2x2 squares sum to 10, 18, 42, 50
        >>> metric = RegionPerturbation(patch_size=2, regions=2, score="logit")
        >>> metric.update(model, x, x.clone(), torch.tensor([0]))
        >>> metric.compute()  # 120 - mean(120, 70, 28)
        tensor(47.3333)
        >>> metric.curve_x()
        tensor([0.0000, 0.2500, 0.5000])
    """

    higher_is_better: bool | None = True
    lazy_curve = True

    @keyword_only
    @declared_options(
        RegionMetricOptions, OPTION_DEFAULTS, leading=("patch_size", "order", "regions"), filler=None, patch_size=8,
        regions=None, forwarded=TorchmetricsOptions,
    )
    def __init__(self, **settings: Unpack[RegionMetricOptions]) -> None:
        regions = settings.pop("regions")
        if regions is not None:
            check_positive_int("regions", regions)
        super().__init__(steps=1, **settings)
        self.regions = regions
        self._set_direction(_DIRECTION[self.order])

    def _positions(self, inputs: Tensor) -> Tensor:
        return region_fractions(inputs, self.patch_size, self.regions)

    def curve_spec(self, inputs: Tensor) -> CurveSpec:
        return self.spec.replace(fractions=tuple(self._positions(inputs).tolist()))

    def _definition_items(self) -> dict[str, Any]:
        items = super()._definition_items()
        regions = "all" if self.regions is None else self.regions
        items.update(steps="one square per step", regions=regions, summary="aopc")
        return items


class Selectivity(CurveMetric):
    r"""Selectivity (Montavon, Samek & Müller, Digital Signal Processing 2018): area under the target
    score as every ``patch_size`` square (ranked by summed saliency) is removed, one per step, most
    relevant first; **lower is better**.

    .. math:: \mathrm{Sel} = \Big\langle \int_0^1 f_c(x^{(t)})\,dt \Big\rangle_x

    trapezoid rule over the fraction of squares removed, F + 1 points (F squares) including the
    unperturbed one. ``filler`` defaults to ``"zeros"``. The curve (``curve()``) from point 1 on equals
    Quantus' ``Selectivity`` output (same baseline, no ties); Quantus sums it with ``np.trapz`` over
    step indices without the unperturbed point. Every batch must have the same image size.

    Example:
        >>> import torch
        >>> from pl_saliency.metrics import Selectivity
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 2, bias=False))
        >>> _ = model[1].weight.data.fill_(0.0)
        >>> _ = model[1].weight.data[0].fill_(1.0)
        >>> x = torch.arange(16.0).view(1, 1, 4, 4)
        >>> metric = Selectivity(patch_size=2, score="logit")
        >>> metric.update(model, x, x.clone(), torch.tensor([0]))
        >>> metric.compute()  # (120/2 + 70 + 28 + 10 + 0/2) / 4
        tensor(42.)
    """

    higher_is_better: bool = False
    lazy_curve = True

    @keyword_only
    @declared_options(
        SelectivityMetricOptions, OPTION_DEFAULTS, leading=("patch_size",), filler=None, patch_size=8,
        forwarded=TorchmetricsOptions,
    )
    def __init__(self, **settings: Unpack[SelectivityMetricOptions]) -> None:
        super().__init__(order="morf", steps=1, **settings)

    def _positions(self, inputs: Tensor) -> Tensor:
        h, w = inputs.shape[-2:]
        return curve_fractions(h, w, self.patch_size, num_regions(inputs, self.patch_size))

    def curve_spec(self, inputs: Tensor) -> CurveSpec:
        return self.spec.replace(steps=num_regions(inputs, self.patch_size))

    def _definition_items(self) -> dict[str, Any]:
        items = super()._definition_items()
        items.update(steps="one square per step, all squares", summary="auc")
        return items
