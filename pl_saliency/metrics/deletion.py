"""Deletion and insertion AUC as torchmetrics ``Metric`` classes, and :class:`CurveAUCMetric`, the base of
every curve metric (the definitions are in :mod:`pl_saliency.functional.deletion`; a metric and its
functional twin score the same :func:`~pl_saliency.perturbation.engine.spec_curves` curves)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any
from typing import Unpack

import torch
from torch import Tensor

from pl_saliency._keywords import declared_options
from pl_saliency._keywords import keyword_only
from pl_saliency._keywords import keywords_of
from pl_saliency.functional.deletion import Model
from pl_saliency.metrics.base import SampleScoreMetric
from pl_saliency.metrics.base import ScoredBatch
from pl_saliency.options import OrderedMetricOptions
from pl_saliency.options import TorchmetricsOptions
from pl_saliency.perturbation.engine import BatchContext
from pl_saliency.perturbation.engine import curve_fractions
from pl_saliency.perturbation.engine import random_order_curves
from pl_saliency.perturbation.engine import spec_curves
from pl_saliency.spec import OPTION_DEFAULTS
from pl_saliency.spec import CurveSpec
from pl_saliency.spec import SpeedOptions
from pl_saliency.spec import split_options
from pl_saliency.utils import auc


class CurveAUCMetric(SampleScoreMetric):
    """Base of the curve metrics: mean area under a perturbation curve, plus the mean curve.

    States: those of :class:`~pl_saliency.metrics.base.SampleScoreMetric` (per-sample areas) and
    ``curve_sum`` (sum, shape (steps + 1,)).

    The settings are built once into ``spec`` (a :class:`~pl_saliency.spec.CurveSpec`) and ``speed``
    (:class:`~pl_saliency.spec.SpeedOptions`). Every curve metric shares ``update``: it scores the curves
    of :meth:`curve_spec` (ABPC: the gap between two, ``_curves``) by :meth:`scores_from_curves`;
    subclasses override those, ``_positions`` and :meth:`anchor_scores`.

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
    #: True where the curve length is set by the first ``update`` (it depends on the image size, e.g. one
    #: point per square): every batch must then have the same size
    lazy_curve: bool = False

    curve_sum: Tensor

    @keyword_only
    @declared_options(OrderedMetricOptions, OPTION_DEFAULTS, filler=None, forwarded=TorchmetricsOptions)
    def __init__(self, **settings: Unpack[OrderedMetricOptions]) -> None:
        spec, speed, rest = split_options(settings)
        super().__init__(**rest)  # keep_per_sample and torchmetrics' options
        #: every setting that selects the curve (its ``key()`` is the batch context's cache key)
        filler = spec.pop("filler")
        self.spec = CurveSpec(mode=self.mode, filler=self.default_filler if filler is None else filler, **spec)
        #: how the curve is computed (never changes which images are scored)
        self.speed = SpeedOptions(**speed)
        if self.spec.score == "logit":  # logits are unbounded: no fixed plot range (torchmetrics guards these names)
            object.__setattr__(self, "plot_lower_bound", None)
            object.__setattr__(self, "plot_upper_bound", None)
        # a lazily sized curve starts as a 0-dim zero, which broadcasts against the first batch's (P,) sum
        steps = self.spec.steps
        curve_sum = torch.tensor(0.0, dtype=torch.float64) if self.lazy_curve else torch.zeros(steps + 1, dtype=torch.float64)
        self.add_state("curve_sum", curve_sum, dist_reduce_fx="sum")
        self._last_curve: Tensor | None = None
        self._image_size: tuple[int, int] | None = None
        self._x: Tensor | None = None

    # the spec's settings, readable as attributes; ``output_transform`` and the speed options may be
    # replaced (the monitor hands its output transform down and halves ``chunk_size`` on out-of-memory)
    filler = property(lambda self: self.spec.filler)
    order = property(lambda self: self.spec.order)
    steps = property(lambda self: self.spec.steps)
    patch_size = property(lambda self: self.spec.patch_size)
    score = property(lambda self: self.spec.score)
    tie_break = property(lambda self: self.spec.tie_break)
    tie_seed = property(lambda self: self.spec.tie_seed)
    generator = property(lambda self: self.spec.generator)
    output_transform = property(
        lambda self: self.spec.output_transform,
        lambda self, fn: setattr(self, "spec", self.spec.replace(output_transform=fn)),
    )
    chunk_size = property(
        lambda self: self.speed.chunk_size, lambda self, v: setattr(self, "speed", self.speed.replace(chunk_size=v))
    )
    memory_budget_mb = property(lambda self: self.speed.memory_budget_mb)
    amp_dtype = property(lambda self: self.speed.amp_dtype)

    def _definition_items(self) -> dict[str, Any]:
        items = self.spec.definition()
        del items["mode"]
        return {
            "mode": self.mode,
            **items,
            **({"amp_dtype": str(self.amp_dtype).replace("torch.", "")} if self.amp_dtype is not None else {}),
        }

    # ---------------------------------------------------------------- random-order controls
    #: ``+1``/``-1``: the sign that turns "score minus random score" into "better than random"
    def _sign(self) -> float:
        return 1.0 if self.higher_is_better else -1.0

    # ---------------------------------------------------------------- the curve and its score
    def curve_spec(self, inputs: Tensor) -> CurveSpec:
        """The spec of this metric's curve on ``inputs``: ``spec``, with the positions set where they depend
        on the image size (one square per step…). The random-order control replaces its order."""
        return self.spec

    def _positions(self, inputs: Tensor) -> Tensor:
        """The fraction of features removed (inserted) at each point (P,) of the curves of ``inputs``."""
        return curve_fractions(inputs.shape[-2], inputs.shape[-1], self.patch_size, self.steps)

    def _curves(
        self, model: Model, inputs: Tensor, saliency: Tensor, target: Tensor, context: BatchContext | None
    ) -> Tensor:
        """The curves (N, P) that :meth:`scores_from_curves` scores: those of :meth:`curve_spec`."""
        return spec_curves(model, inputs, saliency, target, self.curve_spec(inputs), self.speed, context=context)

    def scores_from_curves(self, curves: Tensor, inputs: Tensor) -> Tensor:
        """The per-sample score (N,) of curves (N, points) of :meth:`curve_spec`: here their area."""
        return auc(curves, self._positions(inputs))

    def anchor_scores(self, curves: Tensor) -> Tensor | None:
        """The per-sample score a perfect order approaches (the upper anchor of ``normalized_gain``), or
        None where the metric has none. Area metrics: the score of the fully removed image (deletion,
        most relevant first) or of the unperturbed image (insertion) — in both cases the curve's last
        point — and for least-relevant-first deletion the unperturbed image's score (first point)."""
        if self.order == "morf":
            return curves[:, -1]
        if self.order == "lerf" and self.mode == "deletion":
            return curves[:, 0]
        return None

    @keywords_of(random_order_curves, drop=("speed",))
    def control_scores(
        self, model: Callable[[Tensor], Any], inputs: Tensor, target: Tensor, sample_ids: Tensor, **options: Any
    ) -> tuple[Tensor, Tensor]:
        """Per-sample random-order control ``(scores (N,), anchors (N,))``: the mean score over
        ``repeats`` random feature orders per sample (keyed by ``sample_ids``; shared through
        ``context`` by every explainer's copy of this metric), and the anchors of those curves
        (NaN where the metric has none). The options (``repeats``, ``seed``, ``context``) are those of
        :func:`~pl_saliency.perturbation.engine.random_order_curves`, declared there."""
        spec = self.curve_spec(inputs)
        curves = random_order_curves(model, inputs, target, spec, sample_ids, speed=self.speed, **options)
        n, r, p = curves.shape
        scores = self._random_scores(curves, inputs)
        anchors = self.anchor_scores(curves.reshape(n * r, p))
        anchors = torch.full((n,), math.nan) if anchors is None else anchors.view(n, r).mean(1)
        return scores, anchors

    def _random_scores(self, curves: Tensor, inputs: Tensor) -> Tensor:
        n, r, p = curves.shape
        return self.scores_from_curves(curves.reshape(n * r, p), inputs).view(n, r).mean(1)

    def _update_batch(self, batch: ScoredBatch) -> None:
        inputs = batch.inputs
        self._check_image_size(inputs)
        curves = self._curves(batch.model, inputs, batch.saliency, batch.target, batch.context)
        if self.curve_sum.ndim == 1 and self.curve_sum.numel() != curves.shape[1]:
            raise ValueError(
                f"Argument `inputs` (shape {tuple(inputs.shape)}) gives curves of {curves.shape[1]} points, but this "
                f"{type(self).__name__} holds curves of {self.curve_sum.numel()}: every batch must have the same image size."
            )
        self._x = self._positions(inputs)
        self._add(self.scores_from_curves(curves, inputs), curves, inputs)

    # ---------------------------------------------------------------- state (one rule for compute and curve)
    def _check_image_size(self, inputs: Any) -> None:
        """Every batch must have the image size of the first (the curve's x grid depends on it): checked
        before anything is computed or changed."""
        if self._image_size is None or not isinstance(inputs, Tensor) or inputs.ndim != 4:
            return
        size = (int(inputs.shape[-2]), int(inputs.shape[-1]))
        if size != self._image_size:
            raise ValueError(
                f"Argument `inputs` has shape {tuple(inputs.shape)} (images {size[0]}x{size[1]}), but this "
                f"{type(self).__name__} already holds curves of {self._image_size[0]}x{self._image_size[1]} images: its "
                "mean curve needs one x grid, so every batch must have the same image size (resize the images, or use "
                "one metric per size, or `reset()` first)."
            )

    def _add(self, scores: Tensor, curves: Tensor, inputs: Tensor) -> None:
        """Add per-sample scores (N,) and curves (N, P) by one rule: a sample whose score or curve is not
        finite (e.g. NaN logits) is left out of both the mean score and the mean curve, counted in
        ``nan_count``, and announced with its count; ``compute()`` and ``curve()`` therefore average the
        same samples."""
        valid = torch.isfinite(scores) & torch.isfinite(curves).all(dim=1)
        self._accumulate(torch.where(valid, scores, torch.full_like(scores, math.nan)), warn=True)
        self._image_size = (int(inputs.shape[-2]), int(inputs.shape[-1]))
        self.curve_sum = self.curve_sum + curves[valid].sum(0).to(self.curve_sum)

    def reset(self) -> None:
        super().reset()
        self._image_size = None
        self._last_curve = None
        self._x = None

    def _shapes_mergeable(self, key: str, local: Tensor, other: Tensor) -> bool:
        """A lazily sized curve that has seen no batch yet (0-dim) merges with any curve length."""
        return self.lazy_curve and key == "curve_sum" and (local.ndim == 0 or other.ndim == 0)

    def _check_mergeable_extra(self, incoming: Any) -> None:
        if self.tie_seed != incoming.tie_seed:
            raise ValueError(
                f"Argument `incoming_state`: a {type(self).__name__} of other settings cannot be merged (tie_seed: "
                f"{self.tie_seed!r} here vs {incoming.tie_seed!r}); nothing was merged."
            )
        theirs = incoming._image_size
        if self._image_size is not None and theirs is not None and theirs != self._image_size:
            raise ValueError(
                f"Argument `incoming_state` holds curves of {theirs[0]}x{theirs[1]} images and this "
                f"{type(self).__name__} of {self._image_size[0]}x{self._image_size[1]} images: their curves lie on "
                "different x grids; nothing was merged."
            )

    def _merged_from(self, incoming: Any) -> None:
        if self._image_size is None:
            self._image_size = incoming._image_size
        if self._x is None:
            self._x = incoming._x

    def compute(self) -> Tensor:
        self._last_curve = (self.curve_sum / self.total).float() if self.total > 0 else None
        return super().compute()

    def curve(self) -> Tensor:
        """Mean curve over the samples that ``compute()`` averages (finite scores; synced across
        processes): (steps + 1,)."""
        self.compute()
        if self._last_curve is None:
            if self.nan_count > 0:
                return torch.full(self.curve_sum.shape, math.nan)
            raise RuntimeError(f"`{type(self).__name__}.curve()` was called before any `update`.")
        return self._last_curve

    def curve_x(self) -> Tensor:
        """Fraction of features removed (deletion) or inserted (insertion) at each curve point (before any
        ``update``: ``steps + 1`` evenly spaced fractions)."""
        if self._x is None:
            return torch.arange(self.steps + 1, dtype=torch.float32) / self.steps
        return self._x.float()

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
