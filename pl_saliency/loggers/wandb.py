"""Weights & Biases helpers: heatmap tables and curve charts. ``wandb`` is imported lazily, inside
the functions, so the package works without it."""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any

from torch import Tensor

from pl_saliency.loggers.images import DEFAULT_CLIP_PERCENTILE
from pl_saliency.loggers.images import DEFAULT_COLORMAP
from pl_saliency.loggers.images import display_uint8
from pl_saliency.loggers.images import overlay_batch
from pl_saliency.loggers.images import resolve_colormap
from pl_saliency.loggers.lookup import find_logger


def import_wandb() -> Any:
    """Import wandb or raise a ``ModuleNotFoundError`` with the install command."""
    try:
        import wandb
    except ImportError as err:
        raise ModuleNotFoundError("W&B logging needs wandb: `pip install wandb`.") from err
    return wandb


def find_wandb_logger(loggers: Sequence[Any]) -> Any | None:
    """The first W&B logger among a trainer's loggers (either Lightning namespace), else None."""
    return find_logger(loggers, "WandbLogger")


def saliency_table(
    sample_ids: Sequence[int],
    images: Tensor,
    maps: Mapping[str, Tensor],
    targets: Tensor,
    predictions: Tensor,
    scores: Mapping[str, Mapping[str, Tensor]],
    epoch: int,
    class_names: Sequence[str] | None = None,
    *,
    colormap: str = DEFAULT_COLORMAP,
    clip_percentile: float = DEFAULT_CLIP_PERCENTILE,
) -> Any:
    """A ``wandb.Table``: one row per probe sample.

    Columns: ``sample_id`` (stable across epochs), ``epoch``, ``image``, ``target``, ``prediction``,
    ``overlay/<explainer>`` per explainer, and ``<explainer>/<metric>`` per-sample scores.
    ``scores[explainer][metric]`` holds one value per sample (or is empty when unavailable).
    ``colormap`` / ``clip_percentile``: see :func:`pl_saliency.loggers.overlay` (``"auto"`` is decided
    per explainer over all its maps).
    """
    wandb = import_wandb()
    names = list(maps)
    score_cols = [(e, m) for e in scores for m in scores[e]]
    columns = ["sample_id", "epoch", "image", "target", "prediction"]
    columns += [f"overlay/{e}" for e in names] + [f"{e}/{m}" for e, m in score_cols]
    table = wandb.Table(columns=columns)

    overlays = {e: overlay_batch(images, maps[e], colormap=colormap, clip_percentile=clip_percentile) for e in names}

    def label(c: int) -> Any:
        return class_names[c] if class_names is not None else c

    for row, sid in enumerate(sample_ids):
        cells: list[Any] = [int(sid), int(epoch), wandb.Image(display_uint8(images[row]).numpy())]
        cells += [label(int(targets[row])), label(int(predictions[row]))]
        cells += [wandb.Image(overlays[e][row].numpy()) for e in names]
        for e, m in score_cols:
            vals = scores[e][m]
            cells.append(float(vals[row]) if row < len(vals) else None)
        table.add_data(*cells)
    return table


def overlay_images(
    images: Tensor,
    maps: Tensor,
    captions: Sequence[str],
    max_images: int | None = None,
    *,
    after: Tensor | None = None,
    colormap: str = DEFAULT_COLORMAP,
    clip_percentile: float = DEFAULT_CLIP_PERCENTILE,
) -> list[Any]:
    """A list of ``wandb.Image`` overlays (for an image panel with a step slider) of one explainer's
    maps. With ``after`` (the same images' maps after a change, e.g. cleaning), each image shows the
    overlay of ``maps`` and of ``after`` side by side, in one colormap (``"auto"`` is decided over
    both)."""
    import torch

    wandb = import_wandb()
    both = maps if after is None else torch.cat([maps.reshape(-1), after.reshape(-1)])
    opts = dict(colormap=resolve_colormap(colormap, both), clip_percentile=clip_percentile, max_images=max_images)
    tiles = overlay_batch(images, maps, **opts)
    if after is not None:
        tiles = [torch.cat([b, a], dim=1) for b, a in zip(tiles, overlay_batch(images, after, **opts))]
    return [wandb.Image(t.numpy(), caption=captions[i]) for i, t in enumerate(tiles)]


def curve_chart(x: Tensor, curves: Mapping[str, Tensor], title: str, xname: str) -> Any:
    """A W&B line chart with one line per explainer (``curves[name]`` has shape (K+1,))."""
    wandb = import_wandb()
    names = list(curves)
    return wandb.plot.line_series(
        xs=[float(v) for v in x],
        ys=[[float(v) for v in curves[n]] for n in names],
        keys=names,
        title=title,
        xname=xname,
    )


def series_chart(epochs: Sequence[int], values: Mapping[str, Sequence[float | None]], title: str) -> Any:
    """A W&B line chart of one score over epochs, one line per explainer (absent values as NaN)."""
    wandb = import_wandb()
    names = list(values)
    return wandb.plot.line_series(
        xs=[int(e) for e in epochs],
        ys=[[float("nan") if v is None else float(v) for v in values[n]] for n in names],
        keys=names,
        title=title,
        xname="epoch",
    )


def define_saliency_metrics(run: Any, keys_and_directions: Mapping[str, bool | None]) -> None:
    """Plot every score against ``epoch`` and keep its best value as the run summary.

    ``keys_and_directions[key]`` is the metric's ``higher_is_better`` (None: keep the last value).
    """
    run.define_metric("epoch")
    for key, higher in keys_and_directions.items():
        summary = "last" if higher is None else ("max" if higher else "min")
        run.define_metric(key, step_metric="epoch", summary=summary)


def report_media(prefix: str, report: Any) -> dict[str, Any]:
    """W&B media of an analysis report (baseline sensitivity, coherence): its score and τ tables as
    ``wandb.Table`` and its τ heatmap as an image."""
    wandb = import_wandb()
    out: dict[str, Any] = {}
    for name, rows in (("scores", report.rows()), ("tau", report.tau_rows())):
        if rows:
            cols = list(dict.fromkeys(k for r in rows for k in r))
            out[f"{prefix}/{name}"] = wandb.Table(columns=cols, data=[[_cell(r.get(c)) for c in cols] for r in rows])
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, _ = report.plot()
    out[f"{prefix}/tau_heatmap"] = wandb.Image(fig)
    plt.close(fig)
    return out


def _cell(value: Any) -> Any:
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if isinstance(value, Tensor):
        return value.item() if value.numel() == 1 else value.tolist()
    return str(value)


def log_to_wandb(logger: Any, data: Mapping[str, Any], step: int) -> None:
    """Log media and charts through a Lightning ``WandbLogger``, on its step axis."""
    logger.experiment.log(dict(data, **{"trainer/global_step": step}))
