"""Saliency monitor
================

Scores explainers × metrics on a fixed probe set of validation samples while a model trains. The
callback keeps the probe, the schedule and its history; the scoring is :func:`pl_saliency.evaluate`,
the media and the optional reports live in :mod:`pl_saliency.callbacks.media` and
:mod:`pl_saliency.callbacks.reports`.
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
from typing import TYPE_CHECKING
from typing import Any

import torch
from torch import Tensor

from pl_saliency.callbacks.bases import callback_bases
from pl_saliency.callbacks.bases import override
from pl_saliency.callbacks.bases import rank_zero_warn
from pl_saliency.callbacks.bases import replay_once
from pl_saliency.callbacks.probe import Probe
from pl_saliency.callbacks.probe import default_batch_transform
from pl_saliency.callbacks.probe import split_batch
from pl_saliency.callbacks.reports import gather_probe
from pl_saliency.callbacks.reports import report_options
from pl_saliency.callbacks.reports import run_reports
from pl_saliency.evaluation import ON_ERROR
from pl_saliency.evaluation import TARGETS
from pl_saliency.evaluation import Evaluator
from pl_saliency.evaluation import ScoreGrid
from pl_saliency.evaluation import Sync
from pl_saliency.evaluation import distributed_sync
from pl_saliency.evaluation import evaluate
from pl_saliency.evaluation import noop_warnings
from pl_saliency.explainers import Explainer
from pl_saliency.explainers import named_explainers
from pl_saliency.loggers.text import format_scores_table
from pl_saliency.registry import metric_name
from pl_saliency.registry import named_metrics
from pl_saliency.series import stability_scores
from pl_saliency.utils import check_choice
from pl_saliency.utils import check_positive_int

if TYPE_CHECKING:
    import pytorch_lightning as pl

__all__ = ["SaliencyMonitor", "default_batch_transform", "metric_name"]


class SaliencyMonitor(*callback_bases()):  # type: ignore[misc]
    """Monitor how trustworthy a model's saliency maps are, epoch by epoch.

    On the first validation pass (not the sanity check) the monitor keeps ``num_samples`` validation
    samples as its probe set, stratified by class (round-robin over the classes of the validation
    stream; in DDP ``ceil(num_samples / world_size)`` per process), each with a stable id (a hash of
    the image). At the end of every ``every_n_epochs``-th validation epoch (and of every
    ``trainer.validate``) it runs :func:`pl_saliency.evaluate` on the probe — every explainer explains,
    every metric scores every map — and logs through ``LightningModule.log`` (so the values reach every
    attached logger and ``trainer.callback_metrics``):

    * ``{log_prefix}/{explainer}/{metric}``: the raw score;
    * for curve metrics (deletion, insertion, AOPC, ABPC, pixel flipping, region perturbation,
      selectivity, ROAD), read against ``repeats`` random feature orders per sample on the same probe
      with the same settings (``controls=True``): ``…/{metric}/gain`` (**higher = better than a random
      order**; the headline), ``…/gain_ci_low``, ``…/gain_ci_high`` (paired bootstrap 95 % interval
      over probe samples), ``…/win_rate``, ``…/normalized_gain``, and once per metric the control's raw
      value ``{log_prefix}/{metric}/random``;
    * context: ``{log_prefix}/context/confidence`` (mean target probability on the probe),
      ``…/context/accuracy``, ``…/context/substrate/<filler>`` (target probability of the fully removed
      image: is the baseline neutral?), ``…/context/noop_fraction/<filler>`` (share of features the
      filler leaves unchanged), and per explainer ``{log_prefix}/{explainer}/stability/previous`` and
      ``…/stability/first`` (Spearman similarity of its maps to the previous and the first scored epoch).

    Raw curve scores move with the model's confidence (a random order's curve rises as the model
    learns): monitor, checkpoint and early-stop on ``…/gain`` keys, not raw ones. With a
    ``WandbLogger`` the gain keys keep their best (max) value as the run summary and every other key its
    last value; W&B also gets a heatmap table, overlay panels, curve charts and gain-over-epochs charts.

    Training is left untouched: maps are computed under ``torch.inference_mode(False)`` +
    ``torch.enable_grad()`` on cloned inputs with ``torch.autograd.grad`` only, the model is in eval
    mode while scored and restored afterwards, and every explainer and metric runs under a forked
    global RNG (CPU and CUDA), so even an explainer that draws from the global RNG leaves the training
    streams as they were. Processes agree on failures before any sync: a failure on one process makes
    every process skip that score (``on_error="warn"``) or raise (``"raise"``) — never a hang.

    Args:
        explainers: an explainer, a list of explainers (named by ``.name``) or a dict name ->
            callable ``(model, inputs, target) -> (N, 1, H, W)``.
        metrics: a Metric, a list (named by ``log_name`` or ``DeletionAUC`` → ``deletion_auc``) or a dict
            name -> Metric. Each is a template: every scoring copies it per explainer.
        num_samples: size of the probe set (default 32: on the digits demo the gain's 95 % interval is then
            at most ±0.014 for pixel-level maps; smooth maps such as Grad-CAM's vary more per sample and need
            more samples — ``docs/controls.md`` has the measurement).
        every_n_epochs: score every n-th training epoch's validation.
        batch_size: most probe samples explained at once (default: all).
        target: explain the ``"label"`` (default) or the model's ``"prediction"``.
        controls: read curve metrics against random orders (gain, win rate, normalized gain, CI).
        repeats: random orders per sample for the controls (>= 4 recommended; ABPC needs >= 2).
        control_seed: seed of the random orders (keyed with each sample's id).
        num_resamples: bootstrap resamples of the confidence intervals.
        inverted_controls: also read each curve metric against the map's own reverse order (LeRF for
            MoRF): logs ``…/inverted`` and ``…/gain_over_inverted``; one more curve set per explainer.
        stratify: stratify the probe by class (False: the first ``num_samples`` validation samples).
        log_context: log the context series (confidence, accuracy, substrate, no-op share, stability).
        log_prefix: key prefix, default ``"val/saliency"``.
        log_images: log the heatmap table and curve charts to W&B (when a ``WandbLogger`` is attached).
        verbose: print a table of scores after each scored epoch (rank 0).
        on_error: ``"warn"`` (default) or ``"raise"``.
        output_transform: picks the logits out of a model output that is a tuple or dict.
        batch_transform: maps a validation batch to ``(inputs, target)`` or ``(inputs, target, extras)``
            where ``extras`` is a dict of per-sample tensors (e.g. ``{"masks": ...}``) kept with the probe
            and handed to metrics as ``context.extras``.
        class_names: labels shown in the W&B table.
        baseline_sensitivity, coherence, clean_maps: ``True`` or keyword arguments of
            :func:`pl_saliency.analysis.baseline_sensitivity`, :func:`pl_saliency.analysis.coherence_report`
            and :func:`pl_saliency.functional.clean_saliency`; they run on the whole (gathered) probe.
        reports_every_n_epochs: run those reports on every n-th scored epoch.
        max_overhead: a time budget, as a fraction of training time (e.g. ``0.1``): the monitor measures
            its own cost and each epoch's, and scores an eligible epoch (every ``every_n_epochs``-th) only
            when its predicted cost keeps its cumulative time within ``max_overhead`` × the cumulative
            training time (:class:`~pl_saliency.callbacks.budget.OverheadBudget`; before the first scoring
            its cost is estimated by timing one probe sample). It chooses *when* to score, never *what*: probes, steps and fillers stay
            fixed, so the series stays comparable. It logs ``{log_prefix}/budget/overhead`` and says once
            why it skipped an epoch; ``monitor.budget.schedule`` holds the scored epochs.
        max_images: most overlays per explainer in the W&B image panels (the table holds all).
        overlay_colormap: ``"auto"`` (signed maps: diverging colormap centred at 0; unsigned: sequential),
            ``"sequential"`` or ``"diverging"``; recorded in the run config.
        overlay_clip_percentile: display scale clipped at this percentile of ``|map|`` (default 99, so
            sparse pixel-level maps stay visible; 100: no clipping).

    Example::

        from pytorch_lightning import Trainer
        from pl_saliency import SaliencyMonitor, DeletionAUC, InsertionAUC, Gradient, GradCAM

        monitor = SaliencyMonitor(
            explainers=[Gradient(), GradCAM(layer="features.3")],
            metrics=[DeletionAUC(filler="blur"), InsertionAUC()],
        )
        trainer = Trainer(callbacks=[monitor], logger=WandbLogger(project="saliency"))
    """

    def __init__(
        self,
        explainers: Any,
        metrics: Any,
        *,
        num_samples: int = 32,
        every_n_epochs: int = 1,
        batch_size: int | None = None,
        target: str = "label",
        controls: bool = True,
        repeats: int = 4,
        control_seed: int = 0,
        num_resamples: int = 1000,
        inverted_controls: bool = False,
        stratify: bool = True,
        log_context: bool = True,
        log_prefix: str = "val/saliency",
        log_images: bool = True,
        verbose: bool = False,
        on_error: str = "warn",
        output_transform: Callable[[Any], Tensor] | None = None,
        batch_transform: Callable[[Any], tuple[Tensor, Tensor]] | None = None,
        class_names: Sequence[str] | None = None,
        max_images: int = 8,
        overlay_colormap: str = "auto",
        overlay_clip_percentile: float = 99.0,
        baseline_sensitivity: bool | Mapping[str, Any] | None = None,
        coherence: bool | Mapping[str, Any] | None = None,
        clean_maps: bool | Mapping[str, Any] | None = None,
        reports_every_n_epochs: int = 1,
        max_overhead: float | None = None,
    ) -> None:
        self.explainers = named_explainers(explainers)
        self.metric_templates = named_metrics(metrics)
        self.num_samples = check_positive_int("num_samples", num_samples)
        self.every_n_epochs = check_positive_int("every_n_epochs", every_n_epochs)
        self.batch_size = None if batch_size is None else check_positive_int("batch_size", batch_size)
        check_choice("target", target, TARGETS)
        check_choice("on_error", on_error, ON_ERROR)
        for name, flag in (("controls", controls), ("stratify", stratify), ("log_context", log_context)):
            if not isinstance(flag, bool):
                raise TypeError(f"Argument `{name}` must be a bool, but got {type(flag).__name__} {flag!r}.")
        self.repeats = check_positive_int("repeats", repeats)
        if isinstance(control_seed, bool) or not isinstance(control_seed, int):
            raise TypeError(f"Argument `control_seed` must be an int, but got {type(control_seed).__name__} {control_seed!r}.")
        self.num_resamples = check_positive_int("num_resamples", num_resamples)
        if not isinstance(inverted_controls, bool):
            raise TypeError(f"Argument `inverted_controls` must be a bool, but got {type(inverted_controls).__name__}.")
        self.inverted_controls = inverted_controls
        if not isinstance(log_prefix, str) or not log_prefix:
            raise ValueError(f"Argument `log_prefix` must be a non-empty string, but got {log_prefix!r}.")
        for name, fn in (("output_transform", output_transform), ("batch_transform", batch_transform)):
            if fn is not None and not callable(fn):
                raise TypeError(f"Argument `{name}` must be callable, but got {type(fn).__name__}.")
        self.target, self.on_error, self.log_prefix = target, on_error, log_prefix.rstrip("/")
        self.controls, self.control_seed, self.stratify, self.log_context = controls, control_seed, stratify, log_context
        self.log_images, self.verbose = log_images, verbose
        self.output_transform = output_transform
        self.batch_transform = batch_transform or default_batch_transform
        self.class_names = list(class_names) if class_names is not None else None
        self.max_images = check_positive_int("max_images", max_images)
        from pl_saliency.loggers.images import check_overlay_options

        self.overlay_colormap, self.overlay_clip_percentile = check_overlay_options(overlay_colormap, overlay_clip_percentile)
        self.reports = {
            name: report_options(name, value)
            for name, value in (("baseline_sensitivity", baseline_sensitivity), ("coherence", coherence), ("clean_maps", clean_maps))
            if value not in (None, False)
        }
        self.reports_every_n_epochs = check_positive_int("reports_every_n_epochs", reports_every_n_epochs)
        from pl_saliency.callbacks.budget import OverheadBudget

        self.budget = None if max_overhead is None else OverheadBudget(max_overhead=max_overhead)
        self._cost_estimate: float | None = None  # the first scoring's estimated cost under a budget
        self.last_reports: dict[str, Any] = {}
        self.last_grid: ScoreGrid | None = None

        self.history: list[dict[str, Any]] = []
        self.last_scores: dict[str, float | None] = {}
        self.last_curves: dict[str, dict[str, Tensor]] = {}
        self._probe = Probe(self.num_samples, stratify=stratify)
        self._first_maps: dict[str, Tensor] = {}
        self._previous_maps: dict[str, Tensor] = {}
        self._warned: set[str] = set()
        self._defined_keys: set[str] = set()
        self._scored_in_fit = False

    # ------------------------------------------------------------------ Lightning plumbing
    @property
    def state_key(self) -> str:
        return self._generate_state_key(log_prefix=self.log_prefix)

    @override
    def state_dict(self) -> dict[str, Any]:
        return {
            "history": copy.deepcopy(self.history),
            "probe_inputs": self._probe.inputs,
            "probe_targets": self._probe.targets,
            "probe_extras": dict(self._probe.extras),
            "probe_ids": self._probe.ids,
            "probe_complete": self._probe.complete,
            "num_samples": self.num_samples,
            "explainers": list(self.explainers),
            "first_maps": dict(self._first_maps),
            "previous_maps": dict(self._previous_maps),
            **({"budget": self.budget.state_dict()} if self.budget is not None else {}),
        }

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Resume: the probe, the history and the stability references come back. With another
        configuration the probe is kept (so the series stays comparable; a different ``num_samples``
        is ignored, with a warning), and explainers no longer configured are dropped from the history
        tables while new ones start their series fresh (a warning names both)."""
        history = copy.deepcopy(list(state_dict.get("history", [])))  # the caller's checkpoint stays as it was
        old_explainers = state_dict.get("explainers")
        if old_explainers is not None:
            removed = [e for e in old_explainers if e not in self.explainers]
            added = [e for e in self.explainers if e not in old_explainers]
            if removed or added:
                warnings.warn(
                    f"SaliencyMonitor: resumed with other explainers (removed {removed}, added {added}); removed ones "
                    "leave the history tables, added ones start their series at this epoch.",
                    UserWarning,
                    stacklevel=2,
                )
                for h in history:
                    h["scores"] = {k: v for k, v in h["scores"].items() if k.split("/", 1)[0] not in removed}
        self.history = history
        x, y = state_dict.get("probe_inputs"), state_dict.get("probe_targets")
        self._probe.clear()
        if x is not None and len(x):
            if state_dict.get("num_samples", len(x)) != self.num_samples:
                warnings.warn(
                    f"SaliencyMonitor: resumed with num_samples={self.num_samples}, but the checkpoint's probe was "
                    f"collected with num_samples={state_dict.get('num_samples')}; the saved probe is kept so the "
                    "series stays comparable.",
                    UserWarning,
                    stacklevel=2,
                )
            self._probe.set(x, y, state_dict.get("probe_extras", {}), state_dict.get("probe_ids"))
        if self.budget is not None and "budget" in state_dict:
            self.budget.load_state_dict(state_dict["budget"])
        self._first_maps = {e: m for e, m in state_dict.get("first_maps", {}).items() if e in self.explainers}
        self._previous_maps = {e: m for e, m in state_dict.get("previous_maps", {}).items() if e in self.explainers}

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._scored_in_fit = False
        prepared = {}
        for e, explainer in self.explainers.items():
            if isinstance(explainer, Explainer) and self.output_transform is not None and explainer.output_transform is None:
                explainer = copy.copy(explainer)
                explainer.output_transform = self.output_transform
            prepared[e] = explainer
        self._explainers_in_use = prepared
        if stage == "fit":
            self._warn_no_ops(trainer)
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                try:
                    logger.log_hyperparams({"saliency_monitor": self.config})
                except Exception as err:  # noqa: BLE001 - a logger refusing config must not stop training
                    self._warn_once(f"hparams-{type(logger).__name__}", f"SaliencyMonitor: could not record its config in {type(logger).__name__} ({err}).")

    def _warn_no_ops(self, trainer: Any) -> None:
        """Warn once (rank zero) at setup when the settings leave the monitor nothing to do."""
        if trainer.limit_val_batches == 0:
            rank_zero_warn(trainer, "SaliencyMonitor: `limit_val_batches=0` runs no validation, so the monitor never scores.")
        max_epochs = trainer.max_epochs
        if max_epochs is not None and max_epochs > 0 and self.every_n_epochs > max_epochs:
            rank_zero_warn(
                trainer,
                f"SaliencyMonitor: `every_n_epochs={self.every_n_epochs}` is larger than the trainer's "
                f"`max_epochs={max_epochs}`, so the monitor never scores during fit.",
            )
        check_every = getattr(trainer, "check_val_every_n_epoch", 1)
        if check_every and check_every > 1 and self.every_n_epochs % check_every:
            rank_zero_warn(
                trainer,
                f"SaliencyMonitor: the trainer validates every {check_every} epochs and the monitor scores every "
                f"{self.every_n_epochs}; it can only score epochs where both fall.",
            )

    @override
    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._scored_in_fit and not trainer.sanity_checking:
            rank_zero_warn(
                trainer,
                "SaliencyMonitor: no epoch was scored during this fit (no validation loader, no validation batch, or "
                f"`every_n_epochs={self.every_n_epochs}` beyond the epochs run).",
            )

    @property
    def config(self) -> dict[str, Any]:
        """Every setting that defines the logged numbers: explainers, controls and each metric's definition."""
        return {
            "num_samples": self.num_samples,
            "every_n_epochs": self.every_n_epochs,
            "target": self.target,
            "stratify": self.stratify,
            "max_overhead": None if self.budget is None else self.budget.max_overhead,
            "controls": {
                "enabled": self.controls, "repeats": self.repeats, "seed": self.control_seed, "ci": 0.95,
                "resamples": self.num_resamples, "inverted": self.inverted_controls,
            },
            "overlay_colormap": self.overlay_colormap,
            "overlay_clip_percentile": self.overlay_clip_percentile,
            "explainers": {e: repr(fn) for e, fn in self.explainers.items()},
            "metrics": {
                m: getattr(t, "definition", {"metric": type(t).__name__, "higher_is_better": getattr(t, "higher_is_better", None)})
                for m, t in self.metric_templates.items()
            },
        }

    # ------------------------------------------------------------------ probe set
    @property
    def probe(self) -> tuple[Tensor | None, Tensor | None]:
        """This process's probe set ``(inputs, target)`` on the CPU (None before it is fixed)."""
        return self._probe.inputs, self._probe.targets

    @property
    def probe_extras(self) -> dict[str, Tensor]:
        """Extra per-sample probe data returned by ``batch_transform`` (e.g. ground-truth masks)."""
        return dict(self._probe.extras)

    @property
    def probe_ids(self) -> Tensor | None:
        """Stable ids of this process's probe samples (hashes of the images)."""
        return self._probe.ids

    def _quota(self, trainer: pl.Trainer) -> int:
        return math.ceil(self.num_samples / max(1, trainer.world_size))

    @override
    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # an unscored epoch must not leave last epoch's values in callback_metrics, where EarlyStopping /
        # ModelCheckpoint would read them as this epoch's (a stale value counts as "no improvement")
        if not trainer.sanity_checking:
            for key in [k for k in trainer.callback_metrics if k.startswith(self.log_prefix + "/")]:
                trainer.callback_metrics.pop(key, None)

    @override
    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if trainer.sanity_checking or dataloader_idx != 0 or not self._probe.wants_more:
            return
        self._probe.quota = self._quota(trainer)
        try:
            x, y, extras = split_batch(batch, self.batch_transform)
        except Exception as err:  # noqa: BLE001 - reported per policy
            self._fail("probe", err)
            return
        self._probe.add(x, y, extras)

    @override
    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.budget is not None:
            self.budget.start_epoch()

    # ------------------------------------------------------------------ scoring
    def _should_score(self, trainer: pl.Trainer, pl_module: pl.LightningModule | None = None) -> bool:
        if trainer.sanity_checking:
            return False
        if trainer.state.fn != "fit":
            return trainer.state.fn == "validate"
        if (trainer.current_epoch + 1) % self.every_n_epochs != 0:
            return False
        if self.budget is None:
            return True
        self.budget.end_train_epoch()
        estimate = None
        if self.budget.predicted_cost is None and pl_module is not None:  # estimated once, until measured
            if self._cost_estimate is None:
                self._cost_estimate = self._estimate_cost(pl_module)
            estimate = self._cost_estimate
        scored, reason = self.budget.should_score(int(trainer.current_epoch), estimate)
        if trainer.world_size > 1:  # every process follows rank 0's clock
            scored, reason = trainer.strategy.broadcast((scored, reason), src=0)
        if pl_module is not None:
            pl_module.log(f"{self.log_prefix}/budget/overhead", float(self.budget.overhead), on_step=False, on_epoch=True, sync_dist=False)
        if not scored and trainer.is_global_zero:
            self._warn_once("budget-skip", f"SaliencyMonitor: {reason} (said once; `monitor.budget.decisions` has every decision).")
        return scored

    def _estimate_cost(self, pl_module: pl.LightningModule) -> float | None:
        """Before the first scoring under a budget: time a scoring of one probe sample (same explainers,
        metrics and controls) and scale it by the probe size — an over-estimate (fixed costs are scaled
        too), on the safe side. Its own time counts as monitor time. None when there is no probe."""
        inputs, labels = self.probe
        if inputs is None or not len(inputs):
            return None
        device = pl_module.device
        started = time.perf_counter()
        try:
            with warnings.catch_warnings(), torch.inference_mode(False):
                warnings.simplefilter("ignore")
                evaluate(
                    pl_module, inputs[:1].to(device), labels[:1].to(device), getattr(self, "_explainers_in_use", self.explainers),
                    self.metric_templates, extras={k: v[:1].to(device) for k, v in self.probe_extras.items()},
                    target=self.target, controls=self.controls, repeats=self.repeats, seed=self.control_seed,
                    num_resamples=self.num_resamples, output_transform=self.output_transform, context_series=self.log_context,
                    curves=False, label="SaliencyMonitor (cost estimate)",
                )  # fmt: skip
        except Exception:  # noqa: BLE001 - no estimate: the first eligible epoch then measures the cost
            return None
        finally:
            seconds = time.perf_counter() - started
            self.budget.record_overhead(seconds)  # type: ignore[union-attr]
        return seconds * len(inputs)

    @override
    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        self._probe.finalize()
        if not self._should_score(trainer, pl_module):
            return
        inputs, labels = self.probe
        if inputs is None:
            self._warn_once("empty", "SaliencyMonitor: no validation sample was collected for the probe set; nothing scored.")
            if trainer.world_size == 1:
                return
            # other processes have probe samples: take part in their syncs with nothing to add
            inputs, labels = torch.empty(0), torch.empty(0, dtype=torch.long)
        started = time.perf_counter()
        with torch.inference_mode(False):
            self._score(trainer, pl_module, inputs, labels)
        if self.budget is not None and trainer.state.fn == "fit":
            self.budget.record_scoring(time.perf_counter() - started)

    def _sync(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> Sync | None:
        return distributed_sync(pl_module.device) if trainer.world_size > 1 else None

    def _score(self, trainer: pl.Trainer, pl_module: pl.LightningModule, inputs: Tensor, labels: Tensor) -> None:
        device = pl_module.device
        sync = self._sync(trainer, pl_module)
        ids = self._probe.ids if self._probe.ids is not None and len(self._probe.ids) == len(inputs) else torch.empty(0, dtype=torch.long)
        extras = {k: v.to(device) for k, v in self.probe_extras.items()} if len(inputs) else {}
        options = dict(
            target=self.target, on_error=self.on_error, controls=self.controls, repeats=self.repeats, seed=self.control_seed,
            num_resamples=self.num_resamples, inverted_controls=self.inverted_controls, output_transform=self.output_transform,
            context_series=self.log_context,
            label="SaliencyMonitor",
        )  # fmt: skip
        explainers = getattr(self, "_explainers_in_use", self.explainers)
        try:
            with replay_once(self._warned):  # a warning once per run, not once per epoch
                if len(inputs):
                    grid = evaluate(
                        pl_module, inputs.to(device), labels.to(device), explainers, self.metric_templates, extras=extras,
                        sample_ids=ids, batch_size=self.batch_size, sync=sync, **options,
                    )  # fmt: skip
                else:  # an empty probe on this process: join the collectives with nothing
                    grid = Evaluator(pl_module, explainers, self.metric_templates, **options).finish(sync)
        except Exception as err:
            if self.on_error == "raise":
                raise
            self._fail("scoring", err)
            return
        if trainer.is_global_zero:
            for message in noop_warnings(grid.context):
                self._warn_once(f"noop:{message[:60]}", f"SaliencyMonitor: {message}.")
        scores = grid.flat()
        if self.log_context:
            scores.update(self._stability(grid, sync))
        for key, value in scores.items():
            if value is not None:  # already global: every process holds the same value
                pl_module.log(f"{self.log_prefix}/{key}", value, on_step=False, on_epoch=True, sync_dist=False)
        epoch = int(trainer.current_epoch)
        if trainer.state.fn == "fit":
            self._scored_in_fit = True
        self.last_grid = grid
        self.last_scores = scores
        self.last_curves = grid.curves
        self.history.append({"epoch": epoch, "global_step": int(trainer.global_step), "scores": dict(scores)})
        reports: dict[str, Any] = {}
        if self.reports and (len(self.history) - 1) % self.reports_every_n_epochs == 0:
            reports = self._run_reports(trainer, pl_module, inputs, grid, sync)
        if trainer.is_global_zero:
            if self.verbose:
                print(self.format_table(scores, epoch))
            if self.log_images and len(inputs):
                from pl_saliency.callbacks.media import log_media

                log_media(self, trainer, grid, inputs, labels, reports)

    def _stability(self, grid: ScoreGrid, sync: Sync | None) -> dict[str, float | None]:
        """Per explainer, the mean Spearman similarity of its maps to the previous and the first scored
        epoch's (over every process's samples; one collective)."""
        gather = sync.gather if sync is not None and sync.world_size > 1 else None
        return stability_scores(
            grid.maps, self._previous_maps, self._first_maps, list(self.explainers), len(grid.predictions), gather
        )

    def _run_reports(self, trainer: pl.Trainer, pl_module: pl.LightningModule, inputs: Tensor, grid: ScoreGrid, sync: Sync | None) -> dict[str, Any]:
        """The reports on the whole probe: gathered from every process, computed locally on each."""
        x, t, extras, maps = gather_probe(
            sync or Sync(), inputs, grid.targets, self.probe_extras if len(inputs) else {}, grid.maps, list(self.explainers)
        )
        reports = run_reports(
            self.reports, pl_module, x, t, extras, maps, getattr(self, "_explainers_in_use", self.explainers),
            self.metric_templates, self.output_transform, self._fail,
        ) if len(x) else {}  # fmt: skip
        self.last_reports = reports
        for name, report in reports.items():
            for key, value in report.summary().items():
                if math.isfinite(value):
                    pl_module.log(f"{self.log_prefix}/{name}/{key}", value, on_step=False, on_epoch=True, sync_dist=False)
        return reports

    # ------------------------------------------------------------------ reporting
    def format_table(self, scores: Mapping[str, float | None] | None = None, epoch: int | None = None) -> str:
        """A plain-text table, explainers as rows. Curve metrics with controls show ``gain ± half-width of
        the 95 % interval`` and the win rate (higher = better than a random order); other metrics their
        raw value (arrows give the better direction)."""
        scores = self.last_scores if scores is None else scores
        title = "saliency scores" + (f" — epoch {epoch}" if epoch is not None else "")
        directions = {m: getattr(t, "higher_is_better", None) for m, t in self.metric_templates.items()}
        return format_scores_table(scores, list(self.explainers), directions, title)

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(message, UserWarning, stacklevel=3)

    def _fail(self, what: str, err: Exception) -> None:
        if self.on_error == "raise":
            raise err
        warnings.warn(
            f"SaliencyMonitor: {what} failed ({type(err).__name__}: {err}); its scores are absent this epoch and "
            "training continues (set on_error='raise' to stop instead).",
            UserWarning,
            stacklevel=3,
        )


# kept importable from here for earlier code
from pl_saliency.callbacks.media import curve_label  # noqa: E402,F401
from pl_saliency.callbacks.reports import CleanedMapsReport  # noqa: E402,F401
