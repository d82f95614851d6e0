"""ROAD MoRF / LeRF as torchmetrics ``Metric`` classes (state and sync only; the math is in
:mod:`pl_saliency.functional.road`)."""

from __future__ import annotations

from typing import Any
from typing import Unpack

from torch import Tensor

from pl_saliency._keywords import declared_options
from pl_saliency._keywords import keyword_only
from pl_saliency.functional.road import DEFAULT_PERCENTAGES
from pl_saliency.functional.road import check_percentages
from pl_saliency.functional.road import road_fractions
from pl_saliency.metrics.aopc import CurveMetric
from pl_saliency.options import ROADMetricOptions
from pl_saliency.options import TorchmetricsOptions
from pl_saliency.perturbation.engine import curve_fractions
from pl_saliency.spec import OPTION_DEFAULTS
from pl_saliency.spec import CurveSpec


class _ROAD(CurveMetric):
    plot_lower_bound: float = 0.0
    plot_upper_bound: float = 1.0
    default_filler = "noisy_linear"
    _order: str = "morf"

    @keyword_only
    @declared_options(
        ROADMetricOptions, OPTION_DEFAULTS, leading=("percentages",), percentages=DEFAULT_PERCENTAGES, filler=None,
        forwarded=TorchmetricsOptions,
    )
    def __init__(self, **settings: Unpack[ROADMetricOptions]) -> None:
        self.percentages = check_percentages(settings.pop("percentages"))
        super().__init__(order=self._order, steps=len(self.percentages), **settings)

    def _positions(self, inputs: Tensor) -> Tensor:
        h, w = inputs.shape[-2:]
        return curve_fractions(h, w, self.patch_size, 1, fractions=road_fractions(self.percentages))

    def curve_x(self) -> Tensor:
        """Fraction of features removed at each curve point (0, then each percentage / 100, rounded to
        whole features once an image size is known)."""
        if self._x is None:
            return road_fractions(self.percentages).float()
        return self._x.float()

    def _definition_items(self) -> dict[str, Any]:
        items = super()._definition_items()
        items.update(steps=None, percentages=self.percentages, summary="mean score over percentages")
        return items

    def curve_spec(self, inputs: Tensor) -> CurveSpec:
        return self.spec.replace(fractions=tuple(road_fractions(self.percentages).tolist()))

    def scores_from_curves(self, curves: Tensor, inputs: Tensor) -> Tensor:
        """Mean score over the percentages (the curve without its unperturbed point)."""
        return curves[:, 1:].mean(dim=1)

    def anchor_scores(self, curves: Tensor) -> Tensor | None:
        """MoRF: the score at the largest percentage; LeRF: the unperturbed score."""
        return curves[:, -1] if self.order == "morf" else curves[:, 0]


class ROADMorf(_ROAD):
    r"""ROAD, most relevant first (Rong et al., ICML 2022); **lower is better**.

    .. math:: \mathrm{ROAD}_{\mathrm{MoRF}} = \Big\langle \frac{1}{|Q|} \sum_{q \in Q} f_c(x^{(q)}) \Big\rangle_x

    ``x^{(q)}``: the ``round(q/100 · F)`` most relevant positions removed and imputed by noisy linear
    imputation (``filler="noisy_linear"``, noise std 0.01; pass a ``generator`` for reproducible
    noise); ``Q = percentages`` (default 10, 20, …, 90, percentages *removed*); ``f_c`` the target's
    softmax probability (``score="logit"``: its logit). ROAD reports accuracy; we report the
    probability per image. ``curve()`` is the mean score at (0, *percentages*). Works on any number of
    channels and counts every batch (unlike Quantus 0.6). Details: :mod:`pl_saliency.functional.road`.

    Example:
        >>> import torch
        >>> from pl_saliency.metrics import ROADMorf
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 4))
        >>> g = torch.Generator().manual_seed(0)
        >>> x, s = torch.rand(2, 3, 8, 8, generator=g), torch.rand(2, 1, 8, 8, generator=g)
        >>> metric = ROADMorf(percentages=(25, 50, 75), generator=g)
        >>> metric.update(model, x, s, torch.tensor([0, 3]))
        >>> metric.compute().shape, metric.curve().shape
        (torch.Size([]), torch.Size([4]))
        >>> metric.curve_x()
        tensor([0.0000, 0.2500, 0.5000, 0.7500])
    """

    higher_is_better: bool = False
    _order = "morf"


class ROADLerf(_ROAD):
    r"""ROAD, least relevant first (Rong et al., ICML 2022); **higher is better**.

    As :class:`ROADMorf` with the least relevant positions removed: the prediction should survive.

    Example:
        >>> import torch
        >>> from pl_saliency.metrics import ROADLerf
        >>> metric = ROADLerf(percentages=(20, 40))
        >>> metric.definition["percentages"], metric.higher_is_better
        ((20.0, 40.0), True)
    """

    higher_is_better: bool = True
    _order = "lerf"
