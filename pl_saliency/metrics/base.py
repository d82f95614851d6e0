"""Base classes shared by the metric classes: per-sample scores averaged over samples, synced
across processes. Subclasses hold settings and call their public functional twin with
``reduction="none"`` (:class:`FunctionalMetric`) or its per-sample helper; no math here.

Monitor protocol: every metric usable in :class:`~pl_saliency.SaliencyMonitor` has
``update(model, inputs, saliency, target, context=None)``. Metrics that need more than that read it
from the :class:`~pl_saliency.perturbation.BatchContext` (``context.explainer`` for metrics that
re-explain perturbed inputs, ``context.extras`` for ground truth such as ``"masks"`` / ``"boxes"``),
or from the keyword extras their class names in ``update_extras`` (``explainer=``, ``masks=``,
``boxes=``). :class:`ProtocolMetric` declares that ``update`` once for every metric class here; a
class implements :meth:`ProtocolMetric._update_batch`, which receives the call as one
:class:`ScoredBatch`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING
from typing import Any
from typing import ClassVar
from typing import cast

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities.data import dim_zero_cat

from pl_saliency._keywords import keyword_only
from pl_saliency.utils import mean_or_nan
from pl_saliency.utils import warn_nonfinite

if TYPE_CHECKING:
    from pl_saliency.perturbation.engine import BatchContext


@dataclass(frozen=True)
class ScoredBatch:
    """One call of the monitor protocol, as :meth:`ProtocolMetric.update` received it: the five
    arguments and ``extras``, the class's keyword extras (each of its ``update_extras``, ``None``
    where not given)."""

    model: Any  # the callable (N, C, H, W) -> logits; None for the metrics of the map or ground truth alone
    inputs: Tensor
    saliency: Tensor
    target: Tensor
    context: BatchContext | None
    extras: Mapping[str, Any]


class ProtocolMetric(Metric):
    """A torchmetrics ``Metric`` with the monitor protocol's ``update``, declared here once.

    ``update(model, inputs, saliency, target, context=None, **extras)``: ``extras`` are the keywords
    the class names in ``update_extras`` (e.g. ``("explainer",)`` for the metrics that re-explain,
    ``("masks", "boxes")`` for the localization metrics); any other keyword raises ``TypeError`` as
    for an ordinary method. Subclasses implement :meth:`_update_batch`.
    """

    #: the keyword arguments ``update`` takes besides the protocol's five
    update_extras: tuple[str, ...] = ()

    def update(
        self,
        model: Callable[[Tensor], Any] | None,
        inputs: Tensor,
        saliency: Tensor,
        target: Tensor | None = None,
        context: BatchContext | None = None,
        **extras: Any,
    ) -> None:
        """Score one batch: ``model`` (N, C, H, W) -> logits (N, K) (ignored by the metrics of the map
        or the ground truth alone), ``inputs`` (N, C, H, W), ``saliency`` (N, 1, H, W) or (N, C, H, W),
        ``target`` (N,) class indices (may be left out by the metrics that ignore it: those of the map
        or the ground truth alone; the others raise naming it), ``context`` an optional
        :class:`~pl_saliency.perturbation.BatchContext` shared by the metrics of one batch, and the
        keyword extras of ``update_extras``."""
        unknown = sorted(set(extras) - set(self.update_extras))
        if unknown:
            takes = ", ".join(f"`{k}`" for k in self.update_extras) or "none"
            raise TypeError(
                f"{type(self).__name__}.update() got unexpected keyword arguments {unknown}; its keyword extras: {takes}."
            )
        extras = {k: extras.get(k) for k in self.update_extras}
        # a None target reaches only the metrics that ignore it, or `check_target`, which raises naming it
        self._update_batch(ScoredBatch(model, inputs, saliency, cast(Tensor, target), context, extras))

    def _update_batch(self, batch: ScoredBatch) -> None:
        raise NotImplementedError


class SampleScoreMetric(ProtocolMetric):
    """Mean of a per-sample score over every sample seen.

    States (synced across processes): ``score_sum`` (sum of finite scores, float64), ``total``
    (count of finite scores), ``nan_count`` (samples whose score is undefined, e.g. an empty
    ground-truth mask: excluded from the mean, never counted as 0 or 1), and ``scores`` (cat; the
    per-sample scores in update order, NaN included, filled only when ``keep_per_sample=True``).
    """

    is_differentiable: bool = False
    full_state_update: bool = False

    score_sum: Tensor
    total: Tensor
    nan_count: Tensor
    scores: list[Tensor]

    @keyword_only
    def __init__(self, *, keep_per_sample: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not isinstance(keep_per_sample, bool):
            raise TypeError(f"Argument `keep_per_sample` must be a bool, but got {type(keep_per_sample).__name__}.")
        self.keep_per_sample = keep_per_sample
        self.add_state("score_sum", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("total", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("nan_count", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("scores", [], dist_reduce_fx="cat")

    def _wrap_update(self, update: Callable) -> Callable:
        """torchmetrics' wrapper, made all-or-nothing: an ``update`` that raises leaves the metric as it
        was (torchmetrics counts the call and drops the cached ``compute`` before running it)."""
        wrapped = super()._wrap_update(update)

        @functools.wraps(update)
        def atomic(*args: Any, **kwargs: Any) -> None:
            count, computed = self._update_count, self._computed
            try:
                wrapped(*args, **kwargs)
            except BaseException:
                self._update_count, self._computed = count, computed
                raise

        return atomic

    def _accumulate(self, scores: Tensor, warn: bool = False) -> Tensor:
        """Add per-sample scores (N,); returns the finite mask. Non-finite scores are excluded from the
        mean and counted in ``nan_count`` (with ``warn=True`` also announced, with their count, by the
        package's one reduction warning, :func:`pl_saliency.utils.warn_nonfinite`)."""
        scores = scores.detach().reshape(-1)
        finite = torch.isfinite(scores)
        if warn:
            warn_nonfinite(int((~finite).sum()), scores.numel(), type(self).__name__, stacklevel=4)
        self.score_sum += scores[finite].sum().to(self.score_sum)
        self.total += int(finite.sum())
        self.nan_count += int((~finite).sum())
        if self.keep_per_sample:
            self.scores.append(scores.to(self.score_sum.device, torch.float32))
        return finite

    def compute(self) -> Tensor:
        return mean_or_nan(self.score_sum, self.total)

    # ---------------------------------------------------------------- merging
    def merge_state(self, incoming_state: dict[str, Any] | Metric) -> None:
        """Merge another metric's state (or a state dict) into this one — all or nothing.

        Everything is checked before any state changes: the same class, the same settings
        (``definition``), the same ``keep_per_sample`` and states of matching shapes (e.g. curves of
        the same length, of the same image size). A mismatch raises a ``TypeError``/``ValueError``
        naming ``incoming_state`` and what differs, and leaves this metric exactly as it was.
        """
        self._check_mergeable(incoming_state)
        incoming_meta = incoming_state if isinstance(incoming_state, Metric) else None
        super().merge_state(incoming_state)
        if incoming_meta is not None:
            self._merged_from(incoming_meta)

    def _check_mergeable(self, incoming: Any) -> None:
        name = type(self).__name__
        if isinstance(incoming, Metric):
            if type(incoming) is not type(self):
                raise TypeError(
                    f"Argument `incoming_state` must be a {name} (or a state dict of one), but got a {type(incoming).__name__}."
                )
            mine, theirs = self.definition, incoming.definition
            differ = sorted(k for k in set(mine) | set(theirs) if mine.get(k, "<unset>") != theirs.get(k, "<unset>"))
            if differ:
                what = ", ".join(f"{k}: {mine.get(k, '<unset>')!r} here vs {theirs.get(k, '<unset>')!r}" for k in differ)
                raise ValueError(f"Argument `incoming_state`: a {name} of other settings cannot be merged ({what}); nothing was merged.")
            if getattr(incoming, "keep_per_sample", None) != self.keep_per_sample:
                raise ValueError(
                    f"Argument `incoming_state`: `keep_per_sample` is {getattr(incoming, 'keep_per_sample', None)} there and "
                    f"{self.keep_per_sample} here, so the per-sample scores would not match the counts; nothing was merged."
                )
            state = incoming.metric_state
            self._check_mergeable_extra(incoming)
        elif isinstance(incoming, dict):
            state = incoming
        else:
            raise TypeError(
                f"Argument `incoming_state` must be a {name} or a dict of its states, but got {type(incoming).__name__}."
            )
        missing = [k for k in self._defaults if k not in state]
        if missing:
            raise ValueError(f"Argument `incoming_state` lacks the states {missing} of {name}; nothing was merged.")
        for k in self._defaults:
            local, other = getattr(self, k), state[k]
            if isinstance(local, Tensor):
                if not isinstance(other, Tensor):
                    raise TypeError(f"Argument `incoming_state`: state {k!r} must be a tensor, but got {type(other).__name__}; nothing was merged.")
                if other.shape != local.shape and not self._shapes_mergeable(k, local, other):
                    raise ValueError(
                        f"Argument `incoming_state`: state {k!r} has shape {tuple(other.shape)} there and {tuple(local.shape)} "
                        "here (other settings or another image size); nothing was merged."
                    )
            elif isinstance(local, list) and not isinstance(other, (list, Tensor)):
                raise TypeError(f"Argument `incoming_state`: state {k!r} must be a list of tensors, but got {type(other).__name__}; nothing was merged.")

    def _shapes_mergeable(self, key: str, local: Tensor, other: Tensor) -> bool:
        """Whether states of different shapes still merge (a lazily sized state that is still 0-dim)."""
        return False

    def _check_mergeable_extra(self, incoming: Metric) -> None:
        """Subclass checks on the other metric's non-state attributes (e.g. image size)."""

    def _merged_from(self, incoming: Metric) -> None:
        """Subclass hook after a merge (e.g. adopt the other metric's image size)."""

    def per_sample(self) -> Tensor:
        """This process's per-sample scores, in update order (needs ``keep_per_sample=True``)."""
        if not self.keep_per_sample:
            raise RuntimeError(f"`{type(self).__name__}.per_sample()` needs `keep_per_sample=True`.")
        return dim_zero_cat(self.scores) if self.scores else torch.empty(0)

    @property
    def definition(self) -> dict[str, Any]:
        """The settings that define the number, for run configs and reports."""
        return {"metric": type(self).__name__, "higher_is_better": self.higher_is_better, **self._definition_items()}

    def _definition_items(self) -> dict[str, Any]:
        return {}

    def plot(self, val: Tensor | list[Tensor] | None = None, ax: Any = None) -> Any:
        """Plot a single or multiple values of the metric (torchmetrics style)."""
        return self._plot(val, ax)


class FunctionalMetric(SampleScoreMetric):
    """A per-sample score computed by the metric's public functional twin.

    ``function`` is the public function (``model``, ``inputs``, ``saliency``, ``target`` and the
    options, all passed by keyword, with ``reduction="none"``); the constructor validates its options
    (so a bad one raises at construction) and keeps them with :meth:`_set_options`, as attributes of
    the functional's keyword names. ``update`` then scores the batch with the functional, which holds
    the math and the checks of the batch, and adds the per-sample scores. Subclasses adapt the call by
    overriding :meth:`_options` (per-call keywords) or :meth:`_scores` (another call or extra states).
    """

    function: Callable[..., Any]
    _option_names: tuple[str, ...] = ()
    #: keywords every call of ``function`` gets besides the stored options (e.g. ``{"return_curves": True}``
    #: where :meth:`_scores` reads more than the scores)
    call_options: ClassVar[Mapping[str, Any]] = {}
    #: whether ``function`` takes the batch's ``context`` (it memoizes in it)
    passes_context: ClassVar[bool] = False

    def _set_options(self, **options: Any) -> None:
        """Keep validated options as attributes; their names are the functional's keywords."""
        for name, value in options.items():
            setattr(self, name, value)
        self._option_names = tuple(options)

    def _options(self, context: BatchContext | None, explainer: Callable[..., Tensor] | None = None) -> dict[str, Any]:
        """The functional's keywords for one ``update``: the stored options; subclasses add per-call ones
        (a fresh generator, the ``context``, the ``explainer`` given to :class:`ReexplainingMetric`'s ``update``)."""
        options = {name: getattr(self, name) for name in self._option_names}
        options.update(self.call_options)
        if self.passes_context:
            options["context"] = context
        return options

    def _scores(self, model: Any, inputs: Tensor, saliency: Tensor, target: Tensor, options: dict[str, Any]) -> Tensor:
        """Per-sample scores (N,) of one batch."""
        return type(self).function(model=model, inputs=inputs, saliency=saliency, target=target, reduction="none", **options)

    def _update_batch(self, batch: ScoredBatch) -> None:
        options = self._options(batch.context, batch.extras.get("explainer"))
        self._accumulate(self._scores(batch.model, batch.inputs, batch.saliency, batch.target, options))


class ReexplainingMetric(FunctionalMetric):
    """A :class:`FunctionalMetric` that re-explains inputs: ``update`` also takes the ``explainer``
    (keyword), handed to :meth:`_options` with the ``context`` (whose ``explainer`` the monitor sets)."""

    update_extras = ("explainer",)
