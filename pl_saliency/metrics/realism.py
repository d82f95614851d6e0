"""Realism of removal as a torchmetrics class (state only; the math is in
:mod:`pl_saliency.functional.realism`)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from pl_saliency._keywords import keyword_only
from pl_saliency._keywords import options_of
from pl_saliency.functional.realism import removal_realism
from pl_saliency.metrics.base import FunctionalMetric
from pl_saliency.perturbation.engine import check_fractions
from pl_saliency.perturbation.fillers import Filler
from pl_saliency.perturbation.fillers import get_filler


class RemovalRealism(FunctionalMetric):
    r"""How far a filler's perturbed inputs drift from the originals: mean LPIPS at given removal
    fractions (Zhang et al. 2018 LPIPS; the out-of-distribution concern of Rong et al. 2022 and
    Agarwal & Nguyen 2020); **lower is better**.

    One instance measures one ``filler``: monitor several (``{"realism_zeros": RemovalRealism(filler="zeros"),
    "realism_telea": RemovalRealism(filler="telea")}``) to compare removal strategies on the same maps.
    The model is not needed (the ``update`` signature is the monitor's). ``curve()`` is the mean LPIPS
    per fraction, ``curve_x()`` the fractions. See :mod:`pl_saliency.functional.realism`.

    Example:
        >>> import torch
        >>> from pl_saliency.metrics import RemovalRealism
        >>> metric = RemovalRealism(fractions=(0.0, 0.5), pnet_rand=True)
        >>> g = torch.Generator().manual_seed(0)
        >>> x, s = torch.rand(2, 3, 32, 32, generator=g), torch.rand(2, 1, 32, 32, generator=g)
        >>> metric.update(None, x, s, torch.zeros(2, dtype=torch.long))
        >>> metric.curve()[0].item()
        0.0
    """

    higher_is_better: bool = False
    plot_lower_bound: float = 0.0
    curve_label: str = "fraction removed"

    curve_sum: Tensor
    filler: Filler
    fractions: tuple[float, ...]

    @keyword_only
    @options_of(removal_realism)
    def __init__(self, options: dict[str, Any], **settings: Any) -> None:
        super().__init__(**settings)
        fractions = tuple(float(q) for q in check_fractions(options["fractions"]))
        options.update(filler=get_filler(options["filler"]), fractions=fractions)
        self._set_options(**options)
        self.add_state("curve_sum", torch.zeros(len(self.fractions), dtype=torch.float64), dist_reduce_fx="sum")
        self._last_curve: Tensor | None = None

    def _definition_items(self) -> dict[str, Any]:
        return {
            "filler": self.filler.key,
            "fractions": list(self.fractions),
            "order": self.order,
            "patch_size": self.patch_size,
            "net": self.net,
            "pnet_rand": self.pnet_rand,
        }

    def _scores(self, model: Any, inputs: Tensor, saliency: Tensor, target: Tensor, options: dict[str, Any]) -> Tensor:
        _, curves = removal_realism(inputs, saliency, reduction="none", return_curves=True, **options)
        self.curve_sum += curves.sum(0).to(self.curve_sum)
        return curves.mean(dim=1)

    def compute(self) -> Tensor:
        # states are synced across processes only inside compute: keep the mean curve from here
        self._last_curve = (self.curve_sum / self.total).float() if self.total > 0 else None
        return super().compute()

    def curve(self) -> Tensor:
        """Mean LPIPS per fraction (synced across processes)."""
        self.compute()
        if self._last_curve is None:
            raise RuntimeError("`RemovalRealism.curve()` was called before any `update`.")
        return self._last_curve

    def curve_x(self) -> Tensor:
        return torch.tensor(self.fractions, dtype=torch.float32)
