"""Deletion and insertion AUC as torchmetrics ``Metric`` classes (state and sync only; the math is in
:mod:`pl_saliency.functional.deletion`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from pl_saliency.functional.deletion import _curve_auc_update
from pl_saliency.metrics.base import SampleScoreMetric
from pl_saliency.perturbation.engine import BatchContext, check_speed_options, curve_fractions
from pl_saliency.perturbation.fillers import get_filler
from pl_saliency.perturbation.orders import ORDERS, TIE_BREAKS
from pl_saliency.utils import SCORES, check_choice, check_positive_int


class CurveAUCMetric(SampleScoreMetric):
    """Base of the curve metrics: mean area under a perturbation curve, plus the mean curve.

    States: those of :class:`~pl_saliency.metrics.base.SampleScoreMetric` (per-sample areas) and
    ``curve_sum`` (sum, shape (steps + 1,)).

    As input to ``update`` the metric accepts:

    - ``model``: callable (N, C, H, W) -> logits (N, K); not registered as a sub-module
    - ``inputs``: (N, C, H, W) float images
    - ``saliency``: (N, 1, H, W) or (N, C, H, W) maps
    - ``target``: (N,) int64 class indices
    - ``context``: optional :class:`~pl_saliency.perturbation.BatchContext` shared within a batch

    Speed options (see :func:`~pl_saliency.perturbation.perturbation_curves`): ``chunk_size`` (an int
    or ``"auto"`` with ``memory_budget_mb``; never changes the numbers) and ``amp_dtype`` (autocast
    scoring in ``torch.bfloat16`` / ``torch.float16``; changes the numbers slightly, and is then part
    of ``definition``).

    As output of ``compute`` the metric returns the mean area, a scalar tensor; ``curve()`` returns
    the mean curve (steps + 1,) and ``curve_x()`` its x positions in [0, 1].
    """

    plot_lower_bound: float = 0.0
    plot_upper_bound: float = 1.0
    mode: str = "deletion"
    default_filler: str = "zeros"

    curve_sum: Tensor

    def __init__(
        self,
        filler: Any = None,
        order: str = "morf",
        steps: int = 50,
        patch_size: int = 1,
        score: str = "probability",
        chunk_size: int | str = 64,
        tie_break: str = "random",
        tie_seed: int = 0,
        generator: torch.Generator | None = None,
        output_transform: Callable[[Any], Tensor] | None = None,
        keep_per_sample: bool = False,
        amp_dtype: torch.dtype | None = None,
        memory_budget_mb: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(keep_per_sample=keep_per_sample, **kwargs)
        self.filler = get_filler(self.default_filler if filler is None else filler)
        check_choice("order", order, ORDERS)
        check_choice("score", score, SCORES)
        check_choice("tie_break", tie_break, TIE_BREAKS)
        self.steps = check_positive_int("steps", steps)
        self.patch_size = check_positive_int("patch_size", patch_size)
        self.chunk_size, self.memory_budget_mb, self.amp_dtype = check_speed_options(chunk_size, memory_budget_mb, amp_dtype)
        self.order, self.score, self.tie_break, self.tie_seed = order, score, tie_break, tie_seed
        self.generator = generator
        self.output_transform = output_transform
        if score == "logit":  # logits are unbounded: no fixed plot range (torchmetrics guards these names)
            object.__setattr__(self, "plot_lower_bound", None)
            object.__setattr__(self, "plot_upper_bound", None)
        self.add_state("curve_sum", torch.zeros(steps + 1, dtype=torch.float64), dist_reduce_fx="sum")
        self._last_curve: Tensor | None = None
        self._image_size: tuple[int, int] | None = None

    def _definition_items(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "filler": self.filler.key,
            "order": self.order,
            "steps": self.steps,
            "patch_size": self.patch_size,
            "score": self.score,
            "tie_break": self.tie_break,
            **({"amp_dtype": str(self.amp_dtype).replace("torch.", "")} if self.amp_dtype is not None else {}),
        }

    def _curve_kwargs(self) -> dict[str, Any]:
        """Everything that selects the curve, as keyword arguments of the engine."""
        return dict(
            mode=self.mode, filler=self.filler, order=self.order, steps=self.steps, patch_size=self.patch_size,
            score=self.score, chunk_size=self.chunk_size, tie_break=self.tie_break, tie_seed=self.tie_seed,
            generator=self.generator, output_transform=self.output_transform, amp_dtype=self.amp_dtype,
            memory_budget_mb=self.memory_budget_mb,
        )  # fmt: skip

    def update(
        self,
        model: Callable[[Tensor], Any],
        inputs: Tensor,
        saliency: Tensor,
        target: Tensor,
        context: BatchContext | None = None,
    ) -> None:
        areas, curves = _curve_auc_update(model, inputs, saliency, target, context=context, **self._curve_kwargs())
        self._image_size = (int(inputs.shape[-2]), int(inputs.shape[-1]))
        self._accumulate(areas)
        self.curve_sum += curves.sum(0).to(self.curve_sum)

    def compute(self) -> Tensor:
        self._last_curve = (self.curve_sum / self.total).float() if self.total > 0 else None
        return super().compute()

    def curve(self) -> Tensor:
        """Mean curve (steps + 1,) over every sample seen (synced across processes)."""
        self.compute()
        if self._last_curve is None:
            raise RuntimeError(f"`{type(self).__name__}.curve()` was called before any `update`.")
        return self._last_curve

    def curve_x(self) -> Tensor:
        """Fraction of features removed (deletion) or inserted (insertion) at each curve point."""
        if self._image_size is None:
            return torch.arange(self.steps + 1, dtype=torch.float32) / self.steps
        return curve_fractions(*self._image_size, self.patch_size, self.steps).float()

    def plot_curve(self, ax: Any = None, label: str | None = None) -> Any:
        """Plot the mean curve with its area shaded; returns ``(figure, axes)`` (matplotlib)."""
        import matplotlib.pyplot as plt

        curve, x = self.curve().cpu(), self.curve_x()
        fig, ax = (ax.get_figure(), ax) if ax is not None else plt.subplots()
        area = float(self.compute())
        ax.plot(x.numpy(), curve.numpy(), label=label or f"{type(self).__name__} = {area:.4f}")
        ax.fill_between(x.numpy(), curve.numpy(), alpha=0.15)
        ax.set_xlabel(f"fraction of features {'inserted' if self.mode == 'insertion' else 'removed'}")
        ax.set_ylabel("target probability" if self.score == "probability" else "target logit")
        ax.set_xlim(0, 1)
        ax.legend()
        return fig, ax


class DeletionAUC(CurveAUCMetric):
    r"""Deletion AUC (Petsiuk et al., BMVC 2018, "RISE"); **lower is better**.

    Features (positions, or ``patch_size`` squares) are replaced by the ``filler`` (default
    ``"zeros"``, as RISE) in the map's order, most relevant first; the metric is the trapezoid area
    under the target class's softmax probability (or logit) over the fraction removed, x in [0, 1].
    See :mod:`pl_saliency.functional.deletion` for the definition and where we differ from RISE's
    code.

    Example:
        >>> import torch
        >>> from pl_saliency.metrics import DeletionAUC
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
        >>> metric = DeletionAUC(steps=4)
        >>> x, y = torch.rand(2, 1, 4, 4), torch.tensor([0, 2])
        >>> metric.update(model, x, torch.rand(2, 1, 4, 4), y)
        >>> metric.compute().shape
        torch.Size([])
    """

    higher_is_better: bool = False
    mode = "deletion"
    default_filler = "zeros"


class InsertionAUC(CurveAUCMetric):
    r"""Insertion AUC (Petsiuk et al., BMVC 2018, "RISE"); **higher is better**.

    Starts from the ``filler``'s image (default ``"blur"``: Gaussian, sigma 5, kernel 11, as RISE)
    and restores features from the input in the map's order, most relevant first; the metric is the
    trapezoid area under the target class's score over the fraction inserted.
    """

    higher_is_better: bool = True
    mode = "insertion"
    default_filler = "blur"
