"""The one scoring loop: explain → update → agree on failures → compute → controlled scores and context.

:func:`evaluate` (tensors in memory) and :class:`Evaluator` (batches streamed in, e.g. images loaded
from disk) serve the monitor, the CLI and the analyses alike. Per batch, every explainer explains once
and every metric of that explainer is updated through one shared
:class:`~pl_saliency.perturbation.BatchContext`, so curves of the same setting are computed once per
batch and the random-order controls once per metric setting, whatever the number of explainers.

Processes: with a :class:`Sync` for a process group (:func:`distributed_sync`), every process first
agrees on which (explainer, metric) pairs failed anywhere — one collective, before any ``compute`` —
so a failure on one process makes every process skip that pair (or raise, with ``on_error="raise"``)
and the metric syncs that follow are reached by every process in the same order. Without a ``Sync``
(the default) nothing is synced: metrics compute on this process's data only, which is what the
analyses want when they run on data already gathered.

Randomness: the loop runs under a forked global RNG (CPU and the inputs' CUDA device), so an explainer
or metric that draws from the global RNG leaves the caller's random streams exactly as they were.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Callable
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
from typing import Any

import torch
from torch import Tensor

from pl_saliency.metrics.controls import CONTROLLED_KEYS
from pl_saliency.metrics.controls import ControlledScore
from pl_saliency.metrics.controls import supports_controls
from pl_saliency.perturbation.engine import BatchContext
from pl_saliency.perturbation.engine import auto_chunk_size
from pl_saliency.spec import filler_key
from pl_saliency.spec import stable_sample_ids
from pl_saliency.utils import check_choice
from pl_saliency.utils import check_inputs
from pl_saliency.utils import check_positive_int
from pl_saliency.utils import eval_mode
from pl_saliency.utils import model_logits

ON_ERROR: tuple[str, ...] = ("warn", "raise")
TARGETS: tuple[str, ...] = ("label", "prediction")
Pair = tuple[str, str]


class EvaluationError(RuntimeError):
    """A step of the scoring loop failed; ``what`` names it (``"explainer 'gradient'"``, …)."""

    def __init__(self, what: str, error: BaseException) -> None:
        super().__init__(f"{what} failed ({type(error).__name__}: {error})")
        self.what, self.error = what, error


#: a filler that leaves more than this share of the pixels unchanged when it "removes" them is warned
#: about: a deletion curve then spends its first steps removing nothing (e.g. ``zeros`` on digits, whose
#: background is 0: about 30 %)
NOOP_WARN_THRESHOLD: float = 0.2


def removal_context(
    model: Callable[[Tensor], Any],
    inputs: Tensor,
    target: Tensor,
    fill: Any,
    *,
    output_transform: Callable[[Any], Tensor] | None = None,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-sample ``(substrate, entropy, noop)`` of a filler (Brunke et al. 2021's baseline diagnostics):
    the target's softmax probability on the fully removed image, the entropy (nats) of the model's output
    there (is the baseline "no information" for this model? a neutral baseline has a low target
    probability and a high entropy), and the share of pixels the filler leaves unchanged (|Δ| <= 1e-6 in
    every channel): a removal that removes nothing. NaN for a filler that cannot fill a whole image."""
    removed = torch.ones(inputs.shape[0], 1, *inputs.shape[-2:], dtype=torch.bool, device=inputs.device)
    try:
        with torch.no_grad(), eval_mode(model):
            filled = fill(inputs.clone(), removed, generator if generator is not None else torch.Generator().manual_seed(0))
            p = model_logits(model, filled, output_transform).float().softmax(-1)
        substrate = p.gather(1, target.view(-1, 1)).squeeze(1)
        entropy = -(p * p.clamp_min(1e-30).log()).sum(-1)
        noop = ((filled - inputs).abs() <= 1e-6).all(dim=1).flatten(1).float().mean(1)
    except Exception:  # noqa: BLE001 - a filler that cannot fill everything has no such value
        nan = torch.full((inputs.shape[0],), math.nan, device=inputs.device)
        return nan, nan.clone(), nan.clone()
    return substrate, entropy, noop


def noop_warnings(context: Mapping[str, float]) -> list[str]:
    """One message per filler whose no-op share (``noop_fraction/<filler>`` in ``context``) exceeds
    :data:`NOOP_WARN_THRESHOLD`."""
    out = []
    for key, value in context.items():
        if key.startswith("noop_fraction/") and math.isfinite(value) and value > NOOP_WARN_THRESHOLD:
            filler = key.split("/", 1)[1]
            out.append(
                f"the filler {filler!r} leaves {value:.0%} of the pixels unchanged when it removes them (above "
                f"{NOOP_WARN_THRESHOLD:.0%}): deletion curves with it spend steps removing nothing, so their scores "
                "reward maps that rank those pixels late; prefer a filler that changes (nearly) every pixel of these images, "
                "e.g. 'mean' on a uniform background, or a noise filler (`context/noop_fraction/<filler>` shows the share)"
            )
    return out


def leakage_warnings(explainers: Mapping[str, Any], metrics: Mapping[str, Any]) -> list[str]:
    """One message per removal explainer (occlusion, RISE, meaningful perturbation, LIME) whose filler is the
    one a curve metric scores with: the map was optimised for that very removal, so the score favours it
    (leakage; Brunke et al. 2021)."""
    out = []
    for e, explainer in explainers.items():
        fill = getattr(explainer, "filler", None)
        if fill is None or isinstance(explainer, Tensor):
            continue
        for m, metric in metrics.items():
            spec = getattr(metric, "spec", None)
            if spec is not None and filler_key(spec.filler) == filler_key(fill):
                out.append(
                    f"explainer {e!r} removes pixels with the filler {fill.key!r} that metric {m!r} scores with: the "
                    "score favours it (the map was made for that removal); compare removal explainers under another "
                    "filler than the one that generated them"
                )
    return out


# --------------------------------------------------------------------------------------- processes
@dataclass
class Sync:
    """How the loop talks to the other processes (the default: a single process).

    ``gather(t)`` concatenates every process's tensor along dim 0 in rank order (sizes may differ);
    ``world_size`` > 1 turns on the metrics' own syncs.
    """

    world_size: int = 1
    rank: int = 0
    gather: Callable[[Tensor], Tensor] = field(default=lambda t: t)


def distributed_sync(device: torch.device | str = "cpu") -> Sync:
    """A :class:`Sync` over the default ``torch.distributed`` process group (a single process when
    none is initialized). ``device``: where collectives run (CUDA for NCCL, the CPU for gloo)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return Sync()
    from torchmetrics.utilities.distributed import gather_all_tensors

    dev = torch.device(device)

    def gather(t: Tensor) -> Tensor:
        parts = gather_all_tensors(t.to(dev).contiguous())
        return torch.cat([p.cpu() for p in parts])

    return Sync(world_size=dist.get_world_size(), rank=dist.get_rank(), gather=gather)


# --------------------------------------------------------------------------------------- result
@dataclass
class ScoreGrid:
    """What one evaluation produced.

    Attributes:
        explainers, metrics: the names, in order.
        scores: per (explainer, metric) that succeeded, a dict of floats: ``"value"`` (the metric's
            raw score; NaN = undefined for this explainer) and, for curve metrics with controls,
            ``"random"``, ``"gain"``, ``"gain_ci_low"``, ``"gain_ci_high"``, ``"win_rate"``,
            ``"normalized_gain"``.
        random: per metric, the random-order control's raw score (the same for every explainer).
        baselines: per (explainer, metric), the controls a metric computes itself
            (``compute_baselines()``, e.g. the adversarial sweep's random and least-relevant orders).
        failures: per (explainer, metric) that failed on any process, the reason.
        per_sample: per (explainer, metric), this process's per-sample raw scores (N,) when kept.
        curves: per metric, per explainer, the mean curve; ``curve_x`` per metric its x positions.
        context: ``"confidence"`` (mean softmax probability of the target), ``"accuracy"``,
            ``"substrate/<filler>"`` (target probability of the fully removed image),
            ``"substrate_entropy/<filler>"`` (entropy of the output there, nats) and
            ``"noop_fraction/<filler>"`` (share of pixels the filler leaves unchanged), over every
            process's samples (see :func:`removal_context`).
        maps: per explainer, this process's maps (N, 1, H, W) on the CPU (complete only).
        predictions, targets, sample_ids: this process's, on the CPU.
        higher_is_better, definitions: per metric.
        model_calls: forward calls made through the batch contexts (curves and controls).
    """

    explainers: list[str]
    metrics: list[str]
    scores: dict[Pair, dict[str, float]] = field(default_factory=dict)
    random: dict[str, float] = field(default_factory=dict)
    baselines: dict[Pair, dict[str, float]] = field(default_factory=dict)
    failures: dict[Pair, str] = field(default_factory=dict)
    per_sample: dict[Pair, Tensor] = field(default_factory=dict)
    curves: dict[str, dict[str, Tensor]] = field(default_factory=dict)
    curve_x: dict[str, Tensor] = field(default_factory=dict)
    context: dict[str, float] = field(default_factory=dict)
    maps: dict[str, Tensor] = field(default_factory=dict)
    predictions: Tensor | None = None
    targets: Tensor | None = None
    sample_ids: Tensor | None = None
    higher_is_better: dict[str, bool | None] = field(default_factory=dict)
    definitions: dict[str, dict[str, Any]] = field(default_factory=dict)
    model_calls: int = 0
    metric_objects: dict[Pair, Any] = field(default_factory=dict, repr=False)

    def value(self, explainer: str, metric: str, key: str = "value") -> float | None:
        """One score, or None when the pair failed, has no such key, or the score is undefined (NaN)."""
        v = self.scores.get((explainer, metric), {}).get(key)
        return None if v is None or not math.isfinite(v) else v

    def flat(self) -> dict[str, float | None]:
        """Every score under the monitor's key layout (without its prefix): ``<explainer>/<metric>``
        (raw), ``<explainer>/<metric>/<gain|gain_ci_low|…>``, ``<metric>/random``, ``context/…``;
        None where absent."""
        out: dict[str, float | None] = {}
        for e in self.explainers:
            for m in self.metrics:
                entry = self.scores.get((e, m))
                out[f"{e}/{m}"] = self.value(e, m)
                if entry is None:
                    continue
                for k in entry:
                    if k not in ("value", "random"):
                        out[f"{e}/{m}/{k}"] = self.value(e, m, k)
                for k, v in self.baselines.get((e, m), {}).items():
                    out[f"{e}/{m}/{k}"] = v if math.isfinite(v) else None
        for m, v in self.random.items():
            out[f"{m}/random"] = v if math.isfinite(v) else None
        for k, v in self.context.items():
            out[f"context/{k}"] = v if math.isfinite(v) else None
        return out

    def means(self) -> dict[str, dict[str, float]]:
        """Raw scores as ``{metric: {explainer: value}}`` (NaN where absent), the analyses' layout."""
        return {m: {e: _or_nan(self.value(e, m)) for e in self.explainers} for m in self.metrics}


def _or_nan(value: float | None) -> float:
    return math.nan if value is None else value


# --------------------------------------------------------------------------------------- the loop
def _fresh(metric: Any) -> Any:
    """A copy of ``metric`` with empty state that keeps per-sample scores when it can."""
    clone = copy.deepcopy(metric)
    if hasattr(clone, "reset"):
        clone.reset()
    if hasattr(clone, "keep_per_sample"):
        clone.keep_per_sample = True
    return clone


def _free_cache(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()


class Evaluator:
    """The scoring loop, fed batch by batch (:func:`evaluate` feeds it slices of tensors).

    Args:
        model: callable (N, C, H, W) -> logits; an ``nn.Module`` is in eval mode while scored.
        explainers: dict name -> explainer ``(model, inputs, target) -> (N, 1, H, W)``, or name -> a
            precomputed map tensor over every sample (sliced batch by batch in feeding order).
        metrics: dict name -> metric template following the monitor protocol
            (``update(model, inputs, saliency, target, context)``, ``compute()``); each explainer gets
            a fresh copy. With ``controls``, curve metrics are read against random orders
            (:class:`~pl_saliency.metrics.ControlledScore`).
        target: explain and score the ``"label"`` or the model's ``"prediction"``.
        on_error: ``"warn"`` (a failing explainer or metric warns; its scores are absent) or ``"raise"``.
        controls: compute random-order controls for curve metrics.
        repeats, seed, num_resamples, level: the controls' random orders per sample, their seed, and the
            bootstrap interval's resamples and level.
        inverted_controls: also score each map in the opposite order (LeRF for MoRF), the second control
            (``inverted``, ``gain_over_inverted``); one more curve set per explainer and metric.
        output_transform: picks the logits out of the model's output (tuple/dict).
        context_series: compute the context values (confidence, accuracy, substrate, no-op share).
        label: the name used in warnings.
        explainer_objects: for precomputed maps, the explainer that made each (handed to metrics that
            re-explain perturbed inputs as ``context.explainer``).
        keep_maps: keep the maps of the first ``keep_maps`` samples only (default: all), e.g. for overlays
            of a long image folder.
        predict: run the model once per batch for its predictions (needed for ``target="prediction"``
            and the context); the analyses, which score given labels, turn it off.

    An out-of-memory retry's smaller ``chunk_size`` is written back to the template in ``metrics`` (the
    monitor's templates, so later epochs start from it).
    """

    def __init__(
        self,
        model: Callable[[Tensor], Any],
        explainers: Mapping[str, Any],
        metrics: Mapping[str, Any],
        *,
        target: str = "label",
        on_error: str = "warn",
        controls: bool = True,
        repeats: int = 4,
        seed: int = 0,
        num_resamples: int = 1000,
        level: float = 0.95,
        inverted_controls: bool = False,
        output_transform: Callable[[Any], Tensor] | None = None,
        context_series: bool = True,
        label: str = "evaluate",
        explainer_objects: Mapping[str, Any] | None = None,
        keep_maps: int | None = None,
        predict: bool = True,
    ) -> None:
        check_choice("target", target, TARGETS)
        check_choice("on_error", on_error, ON_ERROR)
        if not isinstance(controls, bool):
            raise TypeError(f"Argument `controls` must be a bool, but got {type(controls).__name__}.")
        if not explainers:
            raise ValueError("Argument `explainers` must hold at least one explainer or map, but got none.")
        if not metrics:
            raise ValueError("Argument `metrics` must hold at least one metric, but got none.")
        for m, metric in metrics.items():
            if not (callable(getattr(metric, "update", None)) and callable(getattr(metric, "compute", None))):
                raise TypeError(
                    f"Argument `metrics`: {m!r} must follow the monitor protocol (update(model, inputs, saliency, "
                    f"target, context) and compute()), but got {type(metric).__name__}."
                )
        self.model, self.target, self.on_error, self.label = model, target, on_error, label
        self.explainers = dict(explainers)
        self.templates = dict(metrics)
        self.output_transform = output_transform
        self.explainer_objects = dict(explainer_objects or {})
        self.predict = predict or target == "prediction" or context_series
        self.keep_maps = None if keep_maps is None else check_positive_int("keep_maps", keep_maps, minimum=0)
        self.context_series = context_series
        self.repeats, self.seed = check_positive_int("repeats", repeats), seed
        self.num_resamples, self.level = num_resamples, level
        self.pairs: list[Pair] = [(e, m) for e in self.explainers for m in self.templates]
        self.metrics: dict[Pair, Any] = {}
        for e, m in self.pairs:
            clone = _fresh(self.templates[m])
            if output_transform is not None and getattr(clone, "output_transform", False) is None:
                clone.output_transform = output_transform
            if controls and supports_controls(clone):
                clone = ControlledScore(
                    clone, repeats=repeats, seed=seed, num_resamples=num_resamples, level=level, inverted=inverted_controls
                )
            self.metrics[(e, m)] = clone
        self.errors: dict[Pair, BaseException] = {}
        self.reasons: dict[Pair, str] = {}
        self.maps: dict[str, list[Tensor]] = {e: [] for e in self.explainers}
        self.predictions: list[Tensor] = []
        self.targets: list[Tensor] = []
        self.ids: list[Tensor] = []
        self.context_rows: list[Tensor] = []
        self.fillers: dict[Any, Any] = {}  # the curve metrics' fillers, for the substrate / no-op context
        for template in self.templates.values():
            spec = getattr(template, "spec", None)
            if spec is not None:
                self.fillers.setdefault(filler_key(spec.filler), spec.filler)
        self.context_names = ["confidence", "accuracy"] + [
            f"{kind}/{fill.key}" for fill in self.fillers.values() for kind in ("substrate", "substrate_entropy", "noop_fraction")
        ]
        for message in leakage_warnings(self.explainers, self.templates):
            warnings.warn(f"{label}: {message}.", UserWarning, stacklevel=3)
        self.model_calls = 0
        self._offset = 0
        self._device: torch.device | None = None

    # ------------------------------------------------------------------ one batch
    def add(
        self,
        inputs: Tensor,
        labels: Tensor,
        *,
        extras: Mapping[str, Any] | None = None,
        sample_ids: Tensor | None = None,
    ) -> None:
        """Explain and score one batch (``labels`` (N,) int64; ``extras``: per-sample tensors such as
        ``"masks"``, handed to metrics as ``context.extras``; ``sample_ids``: stable ids, default a hash
        of each image)."""
        inputs = check_inputs(inputs)
        n = inputs.shape[0]
        self._device = inputs.device
        if inputs.is_inference() or labels.is_inference():  # made inside trainer.validate: autograd needs copies
            with torch.inference_mode(False):
                inputs, labels = inputs.clone(), labels.clone()
                extras = {k: (v.clone() if isinstance(v, Tensor) else v) for k, v in (extras or {}).items()}
        ids = stable_sample_ids(inputs) if sample_ids is None else torch.as_tensor(sample_ids).reshape(-1).long().cpu()
        devices = [inputs.device] if inputs.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), torch.inference_mode(False), eval_mode(self.model):
            self._add(inputs, labels.to(inputs.device).long(), dict(extras or {}), ids)
        self._offset += n

    def _add(self, x: Tensor, labels: Tensor, extras: dict[str, Any], ids: Tensor) -> None:
        logits = None
        if self.predict:
            try:
                with torch.no_grad():
                    logits = model_logits(self.model, x, self.output_transform)
            except Exception as err:
                self._fail_all("the model", err)
                return
        pred = logits.argmax(dim=1) if logits is not None else torch.full_like(labels, -1)
        target = labels if self.target == "label" else pred
        self.predictions.append(pred.cpu())
        self.targets.append(target.cpu())
        self.ids.append(ids)
        context = BatchContext(extras={**extras, "sample_ids": ids})
        if self.context_series and logits is not None:
            self._context(x, logits, labels, target)
        for e, explainer in self.explainers.items():
            todo = [(e, m) for m in self.templates if (e, m) not in self.errors]
            if not todo:
                continue
            try:
                if isinstance(explainer, Tensor):
                    sal = explainer[self._offset : self._offset + x.shape[0]].to(x.device)
                else:
                    sal = self._explain(explainer, x, target)
            except Exception as err:
                for pair in todo:
                    self._fail(pair, f"explainer {e!r}", err)
                continue
            room = x.shape[0] if self.keep_maps is None else max(0, self.keep_maps - self._offset)
            if room:
                self.maps[e].append(sal[:room].detach().cpu())
            context.explainer = self.explainer_objects.get(e) if isinstance(explainer, Tensor) else explainer
            for pair in todo:
                try:
                    self._update(pair, x, sal, target, context)
                except Exception as err:
                    self._fail(pair, f"metric {pair[1]!r} on explainer {e!r}", err)
        self.model_calls += context.model_calls

    def _context(self, x: Tensor, logits: Tensor, labels: Tensor, target: Tensor) -> None:
        """Per-sample context values: target probability, correctness, and per filler of the curve
        metrics: the target probability of the fully removed image and the share of unchanged features."""
        probs = logits.float().softmax(dim=-1)
        cols = [probs.gather(1, target.view(-1, 1)).squeeze(1), (logits.argmax(1) == labels).float()]
        for fill in self.fillers.values():
            cols += removal_context(
                self.model, x, target, fill, output_transform=self.output_transform, generator=torch.Generator().manual_seed(self.seed)
            )
        self.context_rows.append(torch.stack(cols, dim=1).double().cpu())

    def _explain(self, explainer: Callable[..., Tensor], x: Tensor, target: Tensor) -> Tensor:
        """Explain; on out-of-memory free the cache and explain each half (maps are per sample)."""
        try:
            return explainer(self.model, x, target)
        except torch.OutOfMemoryError:
            if len(x) == 1:
                raise
            _free_cache(x.device)
            half = len(x) // 2
            warnings.warn(f"{self.label}: out of memory while explaining {len(x)} samples; retrying in halves.", UserWarning, stacklevel=4)
            return torch.cat([self._explain(explainer, x[:half], target[:half]), self._explain(explainer, x[half:], target[half:])])

    def _update(self, pair: Pair, x: Tensor, sal: Tensor, target: Tensor, context: BatchContext) -> None:
        """Update; on out-of-memory halve the curve metric's ``chunk_size`` (written back to the template
        so later evaluations start from it; ``"auto"`` becomes half of what the budget chose) and retry."""
        metric = self.metrics[pair]
        inner = metric.metric if isinstance(metric, ControlledScore) else metric
        while True:
            try:
                metric.update(self.model, x, sal, target, context=context)
                return
            except torch.OutOfMemoryError:
                chunk = getattr(inner, "chunk_size", None)
                if chunk == "auto":
                    chunk = auto_chunk_size(
                        self.model, x, getattr(inner, "memory_budget_mb", None),
                        output_transform=getattr(inner, "output_transform", None), amp_dtype=getattr(inner, "amp_dtype", None),
                    )  # fmt: skip
                if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk <= 1:
                    raise
                _free_cache(x.device)
                inner.chunk_size = chunk // 2
                template = self.templates[pair[1]]
                if hasattr(template, "chunk_size"):
                    template.chunk_size = chunk // 2
                warnings.warn(
                    f"{self.label}: out of memory in {type(inner).__name__}; retrying with chunk_size={chunk // 2}.",
                    UserWarning,
                    stacklevel=4,
                )

    def _fail(self, pair: Pair, what: str, err: BaseException) -> None:
        if pair in self.errors:
            return
        self.errors[pair] = EvaluationError(what, err) if not isinstance(err, EvaluationError) else err
        self.reasons[pair] = f"{what} failed ({type(err).__name__}: {err})"
        if self.on_error == "warn":
            warnings.warn(
                f"{self.label}: {what} failed ({type(err).__name__}: {err}); its scores are absent.", UserWarning, stacklevel=4
            )

    def _fail_all(self, what: str, err: BaseException) -> None:
        for pair in self.pairs:
            self._fail(pair, what, err)

    # ------------------------------------------------------------------ results
    def finish(self, sync: Sync | None = None, *, curves: bool = True) -> ScoreGrid:
        """Agree on failures with the other processes, compute every score and the context."""
        sync = sync or Sync()
        distributed = sync.world_size > 1
        failed_here = torch.tensor([pair in self.errors for pair in self.pairs], dtype=torch.uint8)
        failed = sync.gather(failed_here.view(1, -1)).amax(dim=0).bool() if distributed else failed_here.bool()
        if self.on_error == "raise" and bool(failed.any()):
            mine = [self.errors[p] for p in self.pairs if p in self.errors]
            if mine:
                err = mine[0]
                raise (err.error if isinstance(err, EvaluationError) else err)
            first = self.pairs[int(failed.nonzero()[0, 0])]
            raise RuntimeError(f"{self.label}: explainer {first[0]!r} / metric {first[1]!r} failed on another process.")
        grid = ScoreGrid(explainers=list(self.explainers), metrics=list(self.templates), model_calls=self.model_calls)
        for (e, m), bad in zip(self.pairs, failed.tolist()):
            if bad:
                grid.failures[(e, m)] = self.reasons.get((e, m), "failed on another process")
        for (e, m), metric in self.metrics.items():
            grid.metric_objects[(e, m)] = metric
            template = self.templates[m]
            grid.higher_is_better.setdefault(m, getattr(template, "higher_is_better", None))
            definition = getattr(metric, "definition", None)
            if isinstance(definition, dict):
                grid.definitions.setdefault(m, definition)
            if (e, m) in grid.failures:
                continue
            if hasattr(metric, "_to_sync"):
                metric._to_sync = distributed  # no collective unless every process takes part
            with warnings.catch_warnings():
                if not distributed:
                    warnings.filterwarnings("ignore", message=".*before the ``update`` method.*")
                out = metric.compute()
            inner = metric.metric if isinstance(metric, ControlledScore) else metric
            if isinstance(out, dict):
                entry = {k: float(out[k]) for k in CONTROLLED_KEYS if k in out}
                grid.random.setdefault(m, entry.pop("random", math.nan))
                grid.per_sample[(e, m)] = metric.per_sample()["map"].float()
            else:
                entry = {"value": float(out) if isinstance(out, (Tensor, float, int)) and torch.as_tensor(out).numel() == 1 else math.nan}
                if getattr(metric, "keep_per_sample", False) and callable(getattr(metric, "per_sample", None)):
                    grid.per_sample[(e, m)] = metric.per_sample().detach().float().cpu()
            grid.scores[(e, m)] = entry
            compute_baselines = getattr(inner, "compute_baselines", None)
            if callable(compute_baselines) and math.isfinite(entry["value"]):
                grid.baselines[(e, m)] = {b: float(v) for b, v in compute_baselines().items()}
            if curves and callable(getattr(inner, "curve", None)) and math.isfinite(entry["value"]):
                if hasattr(inner, "_to_sync"):
                    inner._to_sync = distributed
                grid.curves.setdefault(m, {})[e] = inner.curve().detach().cpu()
                if callable(getattr(inner, "curve_x", None)):
                    grid.curve_x.setdefault(m, inner.curve_x().detach().cpu())
        kept = self._offset if self.keep_maps is None else min(self._offset, self.keep_maps)
        grid.maps = {e: torch.cat(v) for e, v in self.maps.items() if v and sum(len(t) for t in v) == kept}
        grid.predictions = torch.cat(self.predictions) if self.predictions else torch.empty(0, dtype=torch.long)
        grid.targets = torch.cat(self.targets) if self.targets else torch.empty(0, dtype=torch.long)
        grid.sample_ids = torch.cat(self.ids) if self.ids else torch.empty(0, dtype=torch.long)
        if self.context_series:
            grid.context = self._context_values(sync)
        return grid

    def _context_values(self, sync: Sync) -> dict[str, float]:
        width = len(self.context_names)
        rows = torch.cat(self.context_rows) if self.context_rows else torch.empty(0, width, dtype=torch.float64)
        if sync.world_size > 1:
            rows = sync.gather(rows)
        if rows.shape[0] == 0:
            return {}
        out: dict[str, float] = {}
        for j, name in enumerate(self.context_names):
            col = rows[:, j]
            col = col[torch.isfinite(col)]
            out[name] = float(col.mean()) if col.numel() else math.nan
        return out


def evaluate(
    model: Callable[[Tensor], Any],
    inputs: Tensor,
    labels: Tensor,
    explainers: Mapping[str, Any],
    metrics: Mapping[str, Any],
    *,
    extras: Mapping[str, Any] | None = None,
    sample_ids: Tensor | None = None,
    batch_size: int | None = None,
    sync: Sync | None = None,
    curves: bool = True,
    **options: Any,
) -> ScoreGrid:
    """Explain ``inputs`` with every explainer and score every map with every metric, in batches of
    ``batch_size`` (default: all at once). ``extras``: per-sample tensors sliced with the batches;
    other ``options`` are those of :class:`Evaluator`. Returns a :class:`ScoreGrid`.

    Example:
        >>> import torch
        >>> from pl_saliency import DeletionAUC, Gradient, evaluate
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
        >>> x, y = torch.rand(8, 1, 4, 4), torch.randint(0, 3, (8,))
        >>> grid = evaluate(model, x, y, {"gradient": Gradient()}, {"deletion_auc": DeletionAUC(steps=4)})
        >>> sorted(grid.scores["gradient", "deletion_auc"])
        ['gain', 'gain_ci_high', 'gain_ci_low', 'normalized_gain', 'value', 'win_rate']
    """
    inputs = check_inputs(inputs)
    n = inputs.shape[0]
    bs = n if batch_size is None else check_positive_int("batch_size", batch_size)
    extras = dict(extras or {})
    for k, v in extras.items():
        if isinstance(v, Tensor) and (v.ndim == 0 or v.shape[0] != n):
            raise ValueError(f"Argument `extras`: {k!r} must have the batch size of `inputs` ({n}) first, but got shape {tuple(v.shape)}.")
    if not isinstance(labels, Tensor) or labels.shape[:1] != (n,):
        got = f"shape {tuple(labels.shape)}" if isinstance(labels, Tensor) else type(labels).__name__
        raise ValueError(f"Argument `labels` must be a tensor of shape ({n},), but got {got}.")
    ids = stable_sample_ids(inputs) if sample_ids is None or len(sample_ids) != n else torch.as_tensor(sample_ids).reshape(-1).long().cpu()
    with torch.inference_mode(False):  # metric states must be normal tensors, even inside trainer.validate
        evaluator = Evaluator(model, explainers, metrics, **options)
        for start in range(0, n, bs):
            sl = slice(start, start + bs)
            evaluator.add(
                inputs[sl], labels[sl], extras={k: (v[sl] if isinstance(v, Tensor) else v) for k, v in extras.items()},
                sample_ids=ids[sl],
            )  # fmt: skip
        return evaluator.finish(sync, curves=curves)
