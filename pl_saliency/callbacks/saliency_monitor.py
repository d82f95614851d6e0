"""Saliency monitor
================

Scores explainers × metrics on a fixed probe set of validation samples while a model trains.
"""

from __future__ import annotations

import copy
import math
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from typing import TYPE_CHECKING

import torch
from torch import Tensor
from torchmetrics import Metric

from pl_saliency.explainers import Explainer, named_explainers
from pl_saliency.loggers.tensorboard import find_tensorboard_logger, log_overlays_to_tensorboard
from pl_saliency.loggers.text import format_scores_table
from pl_saliency.loggers.wandb import (
    curve_chart,
    find_wandb_logger,
    log_to_wandb,
    overlay_images,
    report_media,
    saliency_table,
    series_chart,
)
from pl_saliency.perturbation.engine import BatchContext
from pl_saliency.utils import check_choice, check_positive_int, eval_mode, model_logits

if TYPE_CHECKING:
    import pytorch_lightning as pl


def _callback_bases() -> tuple[type, ...]:
    """The ``Callback`` classes of every installed Lightning namespace.

    A trainer accepts only callbacks of its own namespace (``pytorch_lightning`` or
    ``lightning.pytorch``); the monitor subclasses both when both are installed, so the same object
    works with either trainer.
    """
    bases: list[type] = []
    try:
        from pytorch_lightning.callbacks import Callback as _PLCallback

        bases.append(_PLCallback)
    except ImportError:
        pass
    try:
        from lightning.pytorch.callbacks import Callback as _LCallback

        bases.append(_LCallback)
    except ImportError:
        pass
    if not bases:  # pragma: no cover - pytorch-lightning is a dependency
        raise ModuleNotFoundError("SaliencyMonitor needs PyTorch Lightning: `pip install pytorch-lightning`.")
    return tuple(bases)

TARGETS: tuple[str, ...] = ("label", "prediction")
ON_ERROR: tuple[str, ...] = ("warn", "raise")
_INPUT_KEYS = ("image", "images", "input", "inputs", "x", "pixel_values")
_LABEL_KEYS = ("label", "labels", "target", "targets", "y")


def metric_name(metric: Any) -> str:
    """``DeletionAUC`` → ``deletion_auc``."""
    name = type(metric).__name__
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()


def _named_metrics(metrics: Any) -> dict[str, Metric]:
    if isinstance(metrics, Metric):
        metrics = [metrics]
    if isinstance(metrics, Mapping):
        items = list(metrics.items())
    elif isinstance(metrics, (list, tuple)):
        items = [(metric_name(m), m) for m in metrics]
    else:
        raise TypeError(f"Argument `metrics` must be a Metric, a list of Metrics or a dict name -> Metric, but got {type(metrics).__name__}.")
    if not items:
        raise ValueError(f"Argument `metrics` must hold at least one metric, but got an empty {type(metrics).__name__}.")
    out: dict[str, Metric] = {}
    for key, m in items:
        if not isinstance(m, Metric):
            raise TypeError(f"Argument `metrics`: {key!r} must be a torchmetrics Metric, but got {type(m).__name__}.")
        if not isinstance(key, str) or not key or "/" in key:
            raise ValueError(f"Argument `metrics`: names must be non-empty strings without '/', but got {key!r}.")
        if key in out:
            raise ValueError(f"Argument `metrics`: two metrics are named {key!r}; pass a dict to tell them apart.")
        out[key] = m
    return out


def default_batch_transform(batch: Any) -> tuple[Tensor, Tensor]:
    """``(inputs, target)`` from a ``(x, y, ...)`` tuple/list or a dict with usual key names."""
    if isinstance(batch, (tuple, list)) and len(batch) >= 2:
        return batch[0], batch[1]
    if isinstance(batch, Mapping):
        x = next((batch[k] for k in _INPUT_KEYS if k in batch), None)
        y = next((batch[k] for k in _LABEL_KEYS if k in batch), None)
        if x is not None and y is not None:
            return x, y
        raise ValueError(
            f"Argument `batch_transform` is needed: the validation batch is a dict with keys {sorted(batch)}, "
            f"expected an input key in {_INPUT_KEYS} and a label key in {_LABEL_KEYS}."
        )
    raise ValueError(
        "Argument `batch_transform` is needed: expected validation batches as (inputs, target, ...) or a dict, "
        f"but got {type(batch).__name__}."
    )


class SaliencyMonitor(*_callback_bases()):  # type: ignore[misc]
    """Monitor how trustworthy a model's saliency maps are, epoch by epoch.

    On the first validation pass (not the sanity check) the monitor keeps the first ``num_samples``
    validation samples as its probe set (in DDP, ``ceil(num_samples / world_size)`` per process),
    and at the end of every ``every_n_epochs``-th validation epoch (and of every ``trainer.validate``)
    it explains the probe with every explainer, scores every map with every metric, and logs
    ``{log_prefix}/{explainer}/{metric}`` through ``LightningModule.log`` — so the values reach every
    attached logger, ``trainer.callback_metrics`` (monitorable by ``ModelCheckpoint`` and
    ``EarlyStopping``) and ``trainer.validate``'s results. With a ``WandbLogger`` attached it also logs,
    on the trainer's step axis: a heatmap table ``{log_prefix}/table`` (one row per probe sample:
    stable sample id, epoch, image, target, prediction, overlay per explainer, per-sample scores),
    overlay panels ``{log_prefix}/overlays/{explainer}``, and one line chart per curve metric
    ``{log_prefix}/curves/{metric}`` (mean curve per explainer).

    Training is left untouched: maps are computed under ``torch.inference_mode(False)`` +
    ``torch.enable_grad()`` on cloned inputs with ``torch.autograd.grad`` only, the model is in eval
    mode while scored and restored afterwards, and no global random stream is consumed.

    Args:
        explainers: an explainer, a list of explainers (named by ``.name``) or a dict name ->
            callable ``(model, inputs, target) -> (N, 1, H, W)``.
        metrics: a Metric, a list (named ``DeletionAUC`` → ``deletion_auc``) or a dict name -> Metric.
            Each is a template: the monitor keeps its own copy per explainer.
        num_samples: size of the probe set.
        every_n_epochs: score every n-th training epoch's validation.
        batch_size: most probe samples explained at once (default: all).
        target: explain the ``"label"`` (default) or the model's ``"prediction"``.
        log_prefix: key prefix, default ``"val/saliency"``.
        log_images: log the heatmap table and curve charts to W&B (when a ``WandbLogger`` is attached).
        verbose: print a table of scores after each scored epoch (rank 0).
        on_error: ``"warn"`` (default: a failing explainer or metric warns and its score is absent that
            epoch; training goes on) or ``"raise"``.
        output_transform: picks the logits out of a model output that is a tuple or dict.
        batch_transform: maps a validation batch to ``(inputs, target)`` or ``(inputs, target, extras)``
            where ``extras`` is a dict of per-sample tensors (e.g. ``{"masks": ...}``) kept with the probe
            and handed to metrics as ``context.extras``.
        class_names: labels shown in the W&B table.
        baseline_sensitivity: ``True`` or keyword arguments of
            :func:`pl_saliency.analysis.baseline_sensitivity` (``fillers``, ``metrics``, ``steps``, …): rank
            the explainers under several removal baselines and log how stable the ranking is
            (``{log_prefix}/baseline_sensitivity/...`` scalars; W&B table and τ heatmap).
        coherence: ``True`` or keyword arguments of :func:`pl_saliency.analysis.coherence_report`
            (``binarize``, …): how much the monitored metrics agree on the explainers' ranking, on raw and
            binarized maps (``{log_prefix}/coherence/...`` scalars; W&B tables and τ heatmap).
        clean_maps: ``True`` or keyword arguments of :func:`pl_saliency.functional.clean_saliency`: clean
            every explainer's maps by the adversarial measure (Valle et al. 2020) and log the kept
            fraction and the measure before/after (``{log_prefix}/clean_maps/<explainer>/...``), with
            original and cleaned overlays side by side in W&B (``{log_prefix}/clean_maps/overlays/<explainer>``).
        reports_every_n_epochs: run those reports on every n-th scored epoch (they cost more forward
            passes than the scores).
        max_images: most overlays per explainer in the W&B image panels (the table holds all).

    Example::

        from pytorch_lightning import Trainer
        from pl_saliency import SaliencyMonitor, DeletionAUC, InsertionAUC, Gradient, GradCAM

        monitor = SaliencyMonitor(
            explainers=[Gradient(), GradCAM(layer="features.3")],
            metrics=[DeletionAUC(), InsertionAUC()],
        )
        trainer = Trainer(callbacks=[monitor], logger=WandbLogger(project="saliency"))
    """

    def __init__(
        self,
        explainers: Any,
        metrics: Any,
        *,
        num_samples: int = 16,
        every_n_epochs: int = 1,
        batch_size: int | None = None,
        target: str = "label",
        log_prefix: str = "val/saliency",
        log_images: bool = True,
        verbose: bool = False,
        on_error: str = "warn",
        output_transform: Callable[[Any], Tensor] | None = None,
        batch_transform: Callable[[Any], tuple[Tensor, Tensor]] | None = None,
        class_names: Sequence[str] | None = None,
        max_images: int = 8,
        baseline_sensitivity: bool | Mapping[str, Any] | None = None,
        coherence: bool | Mapping[str, Any] | None = None,
        clean_maps: bool | Mapping[str, Any] | None = None,
        reports_every_n_epochs: int = 1,
    ) -> None:
        self.explainers = named_explainers(explainers)
        self.metric_templates = _named_metrics(metrics)
        self.num_samples = check_positive_int("num_samples", num_samples)
        self.every_n_epochs = check_positive_int("every_n_epochs", every_n_epochs)
        self.batch_size = None if batch_size is None else check_positive_int("batch_size", batch_size)
        check_choice("target", target, TARGETS)
        check_choice("on_error", on_error, ON_ERROR)
        if not isinstance(log_prefix, str) or not log_prefix:
            raise ValueError(f"Argument `log_prefix` must be a non-empty string, but got {log_prefix!r}.")
        for name, fn in (("output_transform", output_transform), ("batch_transform", batch_transform)):
            if fn is not None and not callable(fn):
                raise TypeError(f"Argument `{name}` must be callable, but got {type(fn).__name__}.")
        self.target, self.on_error, self.log_prefix = target, on_error, log_prefix.rstrip("/")
        self.log_images, self.verbose = log_images, verbose
        self.output_transform = output_transform
        self.batch_transform = batch_transform or default_batch_transform
        self.class_names = list(class_names) if class_names is not None else None
        self.max_images = check_positive_int("max_images", max_images)
        self.reports = {
            name: _report_options(name, value)
            for name, value in (("baseline_sensitivity", baseline_sensitivity), ("coherence", coherence), ("clean_maps", clean_maps))
            if value not in (None, False)
        }
        self.reports_every_n_epochs = check_positive_int("reports_every_n_epochs", reports_every_n_epochs)
        self.last_reports: dict[str, Any] = {}

        self.history: list[dict[str, Any]] = []
        self.last_scores: dict[str, float | None] = {}
        self.last_curves: dict[str, dict[str, Tensor]] = {}
        self._probe_x: list[Tensor] = []
        self._probe_y: list[Tensor] = []
        self._probe_extras: dict[str, list[Tensor]] = {}
        self._probe_complete = False
        self._metrics: dict[str, dict[str, Metric]] = {}
        self._warned: set[str] = set()
        self._media_ready = False

    # ------------------------------------------------------------------ Lightning plumbing
    @property
    def state_key(self) -> str:
        return self._generate_state_key(log_prefix=self.log_prefix)

    def state_dict(self) -> dict[str, Any]:
        probe_x, probe_y = self.probe
        return {
            "history": copy.deepcopy(self.history),
            "probe_inputs": probe_x,
            "probe_targets": probe_y,
            "probe_extras": self.probe_extras,
            "probe_complete": self._probe_complete,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = list(state_dict.get("history", []))
        x, y = state_dict.get("probe_inputs"), state_dict.get("probe_targets")
        self._probe_x = [x] if x is not None and len(x) else []
        self._probe_y = [y] if y is not None and len(y) else []
        self._probe_extras = {k: [v] for k, v in state_dict.get("probe_extras", {}).items()}
        self._probe_complete = bool(state_dict.get("probe_complete", False))

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._metrics = {}
        for e in self.explainers:
            self._metrics[e] = {}
            for m, template in self.metric_templates.items():
                clone = copy.deepcopy(template)
                clone.reset()
                if hasattr(clone, "keep_per_sample"):
                    clone.keep_per_sample = True
                if self.output_transform is not None and getattr(clone, "output_transform", False) is None:
                    clone.output_transform = self.output_transform
                self._metrics[e][m] = clone.to(pl_module.device)
        self._media_ready = False
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                try:
                    logger.log_hyperparams({"saliency_monitor": self.config})
                except Exception as err:  # noqa: BLE001 - a logger refusing config must not stop training
                    self._warn_once(f"hparams-{type(logger).__name__}", f"SaliencyMonitor: could not record its config in {type(logger).__name__} ({err}).")

    @property
    def config(self) -> dict[str, Any]:
        """Every setting that defines the logged numbers: explainers and each metric's definition."""
        return {
            "num_samples": self.num_samples,
            "every_n_epochs": self.every_n_epochs,
            "target": self.target,
            "explainers": {e: repr(fn) for e, fn in self.explainers.items()},
            "metrics": {
                m: getattr(t, "definition", {"metric": type(t).__name__, "higher_is_better": getattr(t, "higher_is_better", None)})
                for m, t in self.metric_templates.items()
            },
        }

    # ------------------------------------------------------------------ probe set
    @property
    def probe(self) -> tuple[Tensor | None, Tensor | None]:
        """This process's probe set ``(inputs, target)`` on the CPU (None before it is collected)."""
        if not self._probe_x:
            return None, None
        return torch.cat(self._probe_x), torch.cat(self._probe_y)

    @property
    def probe_extras(self) -> dict[str, Tensor]:
        """Extra per-sample probe data returned by ``batch_transform`` (e.g. ground-truth masks)."""
        return {k: torch.cat(v) for k, v in self._probe_extras.items() if v}

    def _quota(self, trainer: pl.Trainer) -> int:
        return math.ceil(self.num_samples / max(1, trainer.world_size))

    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if self._probe_complete or trainer.sanity_checking or dataloader_idx != 0:
            return
        have = sum(len(x) for x in self._probe_x)
        need = self._quota(trainer) - have
        if need <= 0:
            return
        try:
            out = self.batch_transform(batch)
            if not isinstance(out, (tuple, list)) or len(out) not in (2, 3):
                raise ValueError(
                    "Argument `batch_transform` must return (inputs, target) or (inputs, target, extras: dict), "
                    f"but returned {type(out).__name__}."
                )
            x, y = out[0], out[1]
            extras = dict(out[2]) if len(out) == 3 else {}
            if not isinstance(x, Tensor) or not isinstance(y, Tensor) or x.ndim != 4 or y.shape[:1] != x.shape[:1]:
                raise ValueError(
                    "Argument `batch_transform` must give (inputs (N, C, H, W), target (N,)) tensors, but gave "
                    f"{_describe(x)} and {_describe(y)}."
                )
        except Exception as err:  # noqa: BLE001 - reported per policy
            self._fail("probe", err)
            return
        with torch.inference_mode(False):
            self._probe_x.append(x[:need].detach().to("cpu", copy=True))
            self._probe_y.append(y[:need].detach().to("cpu", copy=True).long())
            for k, v in extras.items():
                if isinstance(v, Tensor) and v.shape[:1] == x.shape[:1]:
                    self._probe_extras.setdefault(k, []).append(v[:need].detach().to("cpu", copy=True))

    # ------------------------------------------------------------------ scoring
    def _should_score(self, trainer: pl.Trainer) -> bool:
        if trainer.sanity_checking:
            return False
        if trainer.state.fn == "fit":
            return (trainer.current_epoch + 1) % self.every_n_epochs == 0
        return trainer.state.fn == "validate"

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        if self._probe_x:
            self._probe_complete = True
        if not self._should_score(trainer):
            return
        inputs, labels = self.probe
        if inputs is None:
            self._warn_once("empty", "SaliencyMonitor: no validation sample was collected for the probe set; nothing scored.")
            if trainer.world_size == 1:
                return
            # other processes have probe samples: take part in their metric syncs with nothing to add
            inputs, labels = torch.empty(0), torch.empty(0, dtype=torch.long)
        with torch.inference_mode(False), eval_mode(pl_module):
            self._score(trainer, pl_module, inputs, labels)

    def _score(self, trainer: pl.Trainer, pl_module: pl.LightningModule, inputs: Tensor, labels: Tensor) -> None:
        device = pl_module.device
        n = len(inputs)
        bs = self.batch_size or n
        ok = {(e, m): True for e in self._metrics for m in self._metrics[e]}
        maps: dict[str, list[Tensor]] = {e: [] for e in self.explainers}
        preds: list[Tensor] = []
        for m_dict in self._metrics.values():
            for metric in m_dict.values():
                metric.reset()
        for start in range(0, n, bs):
            x = inputs[start : start + bs].to(device)
            y = labels[start : start + bs].to(device)
            try:
                with torch.no_grad():
                    pred = model_logits(pl_module, x, self.output_transform).argmax(dim=1)
            except Exception as err:  # noqa: BLE001
                self._fail("model", err)
                ok = dict.fromkeys(ok, False)
                break
            preds.append(pred.cpu())
            target = y if self.target == "label" else pred
            context = BatchContext(extras={k: v[start : start + bs].to(device) for k, v in self.probe_extras.items()})
            for e, explainer in self.explainers.items():
                if not any(ok[(e, m)] for m in self._metrics[e]):
                    continue
                try:
                    if isinstance(explainer, Explainer) and self.output_transform is not None and explainer.output_transform is None:
                        explainer = copy.copy(explainer)
                        explainer.output_transform = self.output_transform
                    sal = self._explain_splitting_on_oom(explainer, pl_module, x, target)
                except Exception as err:  # noqa: BLE001
                    self._fail(f"explainer {e!r}", err)
                    for m in self._metrics[e]:
                        ok[(e, m)] = False
                    continue
                maps[e].append(sal.detach().cpu())
                context.explainer = explainer
                for m, metric in self._metrics[e].items():
                    if not ok[(e, m)]:
                        continue
                    try:
                        self._update_halving_on_oom(metric, pl_module, x, sal, target, context)
                    except Exception as err:  # noqa: BLE001
                        self._fail(f"metric {m!r} on explainer {e!r}", err)
                        ok[(e, m)] = False

        # every process must agree on which (explainer, metric) pairs are synced and logged
        scores: dict[str, float | None] = {}
        curves: dict[str, dict[str, Tensor]] = {}
        per_sample: dict[str, dict[str, Tensor]] = {}
        for (e, m), good in ok.items():
            if trainer.world_size > 1:
                good = trainer.strategy.reduce_boolean_decision(good, all=True)
            key = f"{e}/{m}"
            metric = self._metrics[e][m]
            if not good:
                scores[key] = None
                continue
            value = float(metric.compute())
            if not math.isfinite(value):  # undefined for this explainer (e.g. no decoys, empty masks): absent
                scores[key] = None
                metric.reset()
                continue
            scores[key] = value
            pl_module.log(f"{self.log_prefix}/{key}", value, on_step=False, on_epoch=True, sync_dist=trainer.world_size > 1)
            if hasattr(metric, "compute_baselines"):  # the controls a score is read against (random, least relevant…)
                for b, bval in metric.compute_baselines().items():
                    scores[f"{key}/{b}"] = float(bval)
                    if math.isfinite(float(bval)):
                        pl_module.log(f"{self.log_prefix}/{key}/{b}", float(bval), on_step=False, on_epoch=True, sync_dist=trainer.world_size > 1)
            if hasattr(metric, "curve"):
                curves.setdefault(m, {})[e] = metric.curve().cpu()
            if hasattr(metric, "per_sample"):
                per_sample.setdefault(e, {})[m] = metric.per_sample().cpu()
            metric.reset()

        epoch = int(trainer.current_epoch)
        self.last_scores = scores
        self.last_curves = curves
        self.history.append({"epoch": epoch, "global_step": int(trainer.global_step), "scores": dict(scores)})
        self._fresh_reports: dict[str, Any] = {}
        if self.reports and n and (len(self.history) - 1) % self.reports_every_n_epochs == 0:
            self._run_reports(trainer, pl_module, inputs, labels, maps, preds)
        if trainer.is_global_zero:
            if self.verbose:
                print(self.format_table(scores, epoch))
            if self.log_images:
                self._log_media(trainer, inputs, labels, maps, preds, per_sample, curves, epoch)

    def _run_reports(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        inputs: Tensor,
        labels: Tensor,
        maps: dict[str, list[Tensor]],
        preds: list[Tensor],
    ) -> None:
        """Baseline-sensitivity and coherence reports on the probe set (every process, its own probe)."""
        from pl_saliency.analysis import baseline_sensitivity, coherence_report
        from pl_saliency.functional import clean_saliency

        device = pl_module.device
        x = inputs.to(device)
        if self.target == "label" or not preds:
            target = labels.to(device)
        else:
            target = torch.cat(preds).to(device)
        full = {e: torch.cat(v).to(device) for e, v in maps.items() if v and sum(len(t) for t in v) == len(inputs)}
        self.last_reports = {}
        self._fresh_reports = {}
        for name, options in self.reports.items():
            try:
                if name == "baseline_sensitivity":
                    opts = dict(options)
                    opts.setdefault("output_transform", self.output_transform)
                    report = baseline_sensitivity(pl_module, x, target, full, **opts)
                elif name == "clean_maps":
                    opts = dict(options)
                    opts.setdefault("output_transform", self.output_transform)
                    report = CleanedMapsReport(x, {e: clean_saliency(pl_module, x, m, target, **opts) for e, m in full.items()}, full)
                else:
                    extras = {k: v.to(device) for k, v in self.probe_extras.items()}
                    explainers = {e: fn for e, fn in self.explainers.items() if e in full}
                    report = coherence_report(pl_module, x, target, explainers, self.metric_templates, extras=extras or None, **options)
            except Exception as err:  # noqa: BLE001
                self._fail(f"report {name!r}", err)
                continue
            self.last_reports[name] = self._fresh_reports[name] = report
            for key, value in report.summary().items():
                if math.isfinite(value):
                    pl_module.log(f"{self.log_prefix}/{name}/{key}", value, on_step=False, on_epoch=True, sync_dist=trainer.world_size > 1)

    def _explain_splitting_on_oom(self, explainer: Callable[..., Tensor], model: Any, x: Tensor, target: Tensor) -> Tensor:
        """Explain; on out-of-memory, free the cache and explain each half of the batch (maps are per sample)."""
        try:
            return explainer(model, x, target)
        except torch.OutOfMemoryError:
            if len(x) == 1:
                raise
            _free_cache(x.device)
            half = len(x) // 2
            self._warn_once("oom-explain", f"SaliencyMonitor: out of memory while explaining {len(x)} samples; retrying in halves.")
            return torch.cat(
                [
                    self._explain_splitting_on_oom(explainer, model, x[:half], target[:half]),
                    self._explain_splitting_on_oom(explainer, model, x[half:], target[half:]),
                ]
            )

    def _update_halving_on_oom(self, metric: Metric, model: Any, x: Tensor, sal: Tensor, target: Tensor, context: BatchContext) -> None:
        """Update; on out-of-memory, halve the metric's ``chunk_size`` (kept for later epochs; ``"auto"``
        becomes half of what the memory budget chose) and retry."""
        while True:
            try:
                metric.update(model, x, sal, target, context=context)
                return
            except torch.OutOfMemoryError:
                chunk = getattr(metric, "chunk_size", None)
                if chunk == "auto":  # the budget was too optimistic: continue from what it chose
                    from pl_saliency.perturbation.engine import auto_chunk_size

                    chunk = auto_chunk_size(
                        model, x, getattr(metric, "memory_budget_mb", None),
                        output_transform=getattr(metric, "output_transform", None), amp_dtype=getattr(metric, "amp_dtype", None),
                    )  # fmt: skip
                if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk <= 1:
                    raise
                _free_cache(x.device)
                metric.chunk_size = chunk // 2
                self._warn_once(
                    f"oom-{id(metric)}-{metric.chunk_size}",
                    f"SaliencyMonitor: out of memory in {type(metric).__name__}; retrying with chunk_size={metric.chunk_size}.",
                )

    def _log_media(
        self,
        trainer: pl.Trainer,
        inputs: Tensor,
        labels: Tensor,
        maps: dict[str, list[Tensor]],
        preds: list[Tensor],
        per_sample: dict[str, dict[str, Tensor]],
        curves: dict[str, dict[str, Tensor]],
        epoch: int,
    ) -> None:
        """Rank 0 only: W&B table, overlay panels, curve and history charts; TensorBoard overlay grid."""
        full = {e: torch.cat(v) for e, v in maps.items() if v and sum(len(t) for t in v) == len(inputs)}
        complete = bool(preds) and sum(len(p) for p in preds) == len(inputs)
        step = int(trainer.global_step)
        tb = find_tensorboard_logger(trainer.loggers)
        if tb is not None and full:
            try:
                log_overlays_to_tensorboard(tb, f"{self.log_prefix}/overlays", inputs, full, step, self.max_images)
            except Exception as err:  # noqa: BLE001
                self._warn_once("tensorboard", f"SaliencyMonitor: TensorBoard image logging failed ({type(err).__name__}: {err}); scalars still go to every logger.")
        wb = find_wandb_logger(trainer.loggers)
        if wb is None:
            return
        try:
            if not self._media_ready:
                from pl_saliency.loggers.wandb import define_saliency_metrics

                define_saliency_metrics(
                    wb.experiment,
                    {
                        f"{self.log_prefix}/{e}/{m}": getattr(t, "higher_is_better", None)
                        for e in self.explainers
                        for m, t in self.metric_templates.items()
                    },
                )
                self._media_ready = True
            data: dict[str, Any] = {}
            if complete:
                predictions = torch.cat(preds)
                targets = labels if self.target == "label" else predictions
                sample_ids = [trainer.global_rank * self._quota(trainer) + i for i in range(len(inputs))]
                data[f"{self.log_prefix}/table"] = saliency_table(
                    sample_ids, inputs, full, targets, predictions, per_sample, epoch, self.class_names
                )
                captions = [f"id {sid}: target {int(t)}, pred {int(p)}" for sid, t, p in zip(sample_ids, targets, predictions)]
                for e, maps_e in full.items():
                    data[f"{self.log_prefix}/overlays/{e}"] = overlay_images(inputs, maps_e, captions, self.max_images)
            for m, by_expl in curves.items():
                metric = self._metrics[next(iter(by_expl))][m]
                first = next(iter(by_expl.values()))
                xs = metric.curve_x() if hasattr(metric, "curve_x") else torch.linspace(0, 1, len(first))
                data[f"{self.log_prefix}/curves/{m}"] = curve_chart(xs, by_expl, title=f"{m} (epoch {epoch})", xname=curve_label(metric))
            epochs = [h["epoch"] for h in self.history]
            for m in self.metric_templates:
                series = {e: [h["scores"].get(f"{e}/{m}") for h in self.history] for e in self.explainers}
                data[f"{self.log_prefix}/history/{m}"] = series_chart(epochs, series, title=f"{m} over epochs")
            for name, report in self._fresh_reports.items():
                if isinstance(report, CleanedMapsReport):
                    data.update(report.media(f"{self.log_prefix}/{name}", self.max_images))
                else:
                    data.update(report_media(f"{self.log_prefix}/{name}", report))
            data["epoch"] = epoch
            log_to_wandb(wb, data, step=step)
        except Exception as err:  # noqa: BLE001
            self._fail("W&B logging", err)

    # ------------------------------------------------------------------ reporting
    def format_table(self, scores: Mapping[str, float | None] | None = None, epoch: int | None = None) -> str:
        """A plain-text table: explainers as rows, metrics as columns (arrows give the better direction)."""
        title = "saliency scores" + (f" — epoch {epoch}" if epoch is not None else "")
        directions = {m: getattr(t, "higher_is_better", None) for m, t in self.metric_templates.items()}
        return format_scores_table(self.last_scores if scores is None else scores, list(self.explainers), directions, title)

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


class CleanedMapsReport:
    """Adversarially cleaned maps of every explainer on the probe set (see ``clean_maps``)."""

    def __init__(self, inputs: Tensor, cleaned: dict[str, Any], original: dict[str, Tensor]) -> None:
        self.inputs, self.cleaned, self.original = inputs, cleaned, original

    def summary(self) -> dict[str, float]:
        out = {}
        for e, res in self.cleaned.items():
            out[f"{e}/kept_fraction"] = float(torch.as_tensor(res.fraction).float().mean())
            out[f"{e}/measure_before"] = float(torch.as_tensor(res.before).float().nanmean())
            out[f"{e}/measure_after"] = float(torch.as_tensor(res.after).float().nanmean())
        return out

    def media(self, prefix: str, max_images: int) -> dict[str, Any]:
        from pl_saliency.loggers.wandb import side_by_side_images

        return {
            f"{prefix}/overlays/{e}": side_by_side_images(
                self.inputs.cpu(), self.original[e].cpu(), res.saliency.cpu(),
                [f"before | after: kept {float(f):.0%} of the features" for f in torch.as_tensor(res.fraction).reshape(-1)],
                max_images,
            )
            for e, res in self.cleaned.items()
        }  # fmt: skip


def curve_label(metric: Any) -> str:
    """The x-axis label of a metric's curve: its ``curve_label`` or the fraction removed/inserted."""
    label = getattr(metric, "curve_label", None)
    if isinstance(label, str):
        return label
    return f"fraction {'inserted' if getattr(metric, 'mode', '') == 'insertion' else 'removed'}"


def _report_options(name: str, value: Any) -> dict[str, Any]:
    if value is True:
        return {}
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"Argument `{name}` must be True, None or a dict of keyword arguments, but got {type(value).__name__}.")


def _free_cache(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _describe(x: Any) -> str:
    return f"tensor{tuple(x.shape)}" if isinstance(x, Tensor) else type(x).__name__
