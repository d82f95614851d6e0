"""The monitor's media (rank 0 only): W&B heatmap table, overlay panels, curve and history charts, report
media; TensorBoard overlay grids. Scalars go through ``LightningModule.log`` in the monitor itself."""

from __future__ import annotations

from typing import TYPE_CHECKING
from typing import Any

import torch
from torch import Tensor

from pl_saliency.evaluation import ScoreGrid
from pl_saliency.loggers.tensorboard import find_tensorboard_logger
from pl_saliency.loggers.tensorboard import log_overlays_to_tensorboard
from pl_saliency.loggers.wandb import curve_chart
from pl_saliency.loggers.wandb import find_wandb_logger
from pl_saliency.loggers.wandb import log_to_wandb
from pl_saliency.loggers.wandb import overlay_images
from pl_saliency.loggers.wandb import report_media
from pl_saliency.loggers.wandb import saliency_table
from pl_saliency.loggers.wandb import series_chart
from pl_saliency.series import summary_directions

if TYPE_CHECKING:
    from pl_saliency.callbacks.saliency_monitor import SaliencyMonitor



def curve_label(metric: Any) -> str:
    """The x-axis label of a metric's curve: its ``curve_label`` or the fraction removed/inserted."""
    label = getattr(metric, "curve_label", None)
    if isinstance(label, str):
        return label
    return f"fraction {'inserted' if getattr(metric, 'mode', '') == 'insertion' else 'removed'}"


def log_media(monitor: SaliencyMonitor, trainer: Any, grid: ScoreGrid, inputs: Tensor, labels: Tensor, reports: dict[str, Any]) -> None:
    """Rank 0: TensorBoard overlay grid; W&B table, overlays, curve charts, history charts, report media."""
    prefix, epoch, step = monitor.log_prefix, int(trainer.current_epoch), int(trainer.global_step)
    full = grid.maps
    style = {"colormap": monitor.overlay_colormap, "clip_percentile": monitor.overlay_clip_percentile}
    tb = find_tensorboard_logger(trainer.loggers)
    if tb is not None and full:
        try:
            log_overlays_to_tensorboard(tb, f"{prefix}/overlays", inputs, full, step, monitor.max_images, **style)
        except Exception as err:  # noqa: BLE001
            monitor._warn_once("tensorboard", f"SaliencyMonitor: TensorBoard image logging failed ({type(err).__name__}: {err}); scalars still go to every logger.")
    wb = find_wandb_logger(trainer.loggers)
    if wb is None:
        return
    try:
        data: dict[str, Any] = {}
        keys = [f"{prefix}/{k}" for k in monitor.history[-1]["scores"]] if monitor.history else []
        new = [k for k in keys if k not in monitor._defined_keys]
        if new:
            from pl_saliency.loggers.wandb import define_saliency_metrics

            define_saliency_metrics(wb.experiment, summary_directions(new))
            monitor._defined_keys.update(new)
        predictions, targets = grid.predictions, grid.targets
        if predictions is not None and len(predictions) == len(inputs) and full:
            # the table's ids are probe positions (stable across epochs and readable); the hash ids that
            # key the random streams are 63-bit and would not survive JSON
            base = int(trainer.global_rank) * monitor._quota(trainer)
            ids = [base + i for i in range(len(inputs))]
            per_sample = {e: {m: v for (e2, m), v in grid.per_sample.items() if e2 == e} for e in grid.explainers}
            data[f"{prefix}/table"] = saliency_table(ids, inputs, full, targets, predictions, per_sample, epoch, monitor.class_names, **style)
            captions = [f"id {sid}: target {int(t)}, pred {int(p)}" for sid, t, p in zip(ids, targets, predictions)]
            for e, maps_e in full.items():
                data[f"{prefix}/overlays/{e}"] = overlay_images(inputs, maps_e, captions, monitor.max_images, **style)
        for m, by_expl in grid.curves.items():
            first = next(iter(by_expl.values()))
            xs = grid.curve_x.get(m, torch.linspace(0, 1, len(first)))
            data[f"{prefix}/curves/{m}"] = curve_chart(xs, by_expl, title=f"{m} (epoch {epoch})", xname=curve_label(monitor.metric_templates[m]))
        epochs = [h["epoch"] for h in monitor.history]
        for m in monitor.metric_templates:
            gain = any(f"{e}/{m}/gain" in h["scores"] for h in monitor.history for e in monitor.explainers)
            suffix, what = ("/gain", "gain over random") if gain else ("", "raw score")
            series = {e: [h["scores"].get(f"{e}/{m}{suffix}") for h in monitor.history] for e in monitor.explainers}
            data[f"{prefix}/history/{m}"] = series_chart(epochs, series, title=f"{m}: {what} over epochs")
        from pl_saliency.callbacks.reports import CleanedMapsReport

        for name, report in reports.items():
            if isinstance(report, CleanedMapsReport):
                data.update(report.media(f"{prefix}/{name}", monitor.max_images, **style))
            else:
                data.update(report_media(f"{prefix}/{name}", report))
        data["epoch"] = epoch
        log_to_wandb(wb, data, step=step)
    except Exception as err:  # noqa: BLE001
        monitor._fail("W&B logging", err)
