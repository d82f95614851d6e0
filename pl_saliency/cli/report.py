"""Writing results: CSV (formula-safe text cells), JSON (NaN → null), PNG figures (curves, overlays,
series over epochs). matplotlib is imported only when a figure is drawn."""

from __future__ import annotations

import csv
import io
import json
import math
import tempfile
from collections.abc import Iterable
from collections.abc import Mapping
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import Tensor

from pl_saliency.cli.common import csv_text

CONTROL_KEYS: tuple[str, ...] = ("gain", "gain_ci_low", "gain_ci_high", "win_rate", "normalized_gain")


def finite(v: Any) -> float | None:
    """A float, or None for NaN, infinities and None."""
    if v is None:
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def cell(v: Any) -> str:
    """A CSV cell: numbers as ``repr`` (exact), None/NaN empty, text escaped against formulas."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, (int, float)):
        return "" if isinstance(v, float) and not math.isfinite(v) else repr(v)
    return csv_text(v)


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Path:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow([csv_text(h) for h in header])
        for row in rows:
            w.writerow([cell(v) for v in row])
    return path


def write_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data, indent=2, allow_nan=False))
    return path


def keep_elsewhere(data: Any, name: str) -> Path | None:
    """Write ``data`` as JSON into a fresh folder of the system's temporary directory (when ``--out``
    failed late); None when that fails too."""
    try:
        folder = Path(tempfile.mkdtemp(prefix="pl-saliency-"))
        return write_json(folder / name, data)
    except OSError:
        return None


def curve_label(metric: Any) -> str:
    label = getattr(metric, "curve_label", None)
    if isinstance(label, str):
        return label
    return "fraction " + ("inserted" if getattr(metric, "mode", "") == "insertion" else "removed")


def definition(metric: Any) -> dict[str, Any]:
    """A metric's ``definition`` (class, direction and every setting), JSON-safe."""
    d = getattr(metric, "definition", None)
    if not isinstance(d, dict):
        d = {"metric": type(metric).__name__, "higher_is_better": getattr(metric, "higher_is_better", None)}
    return json.loads(json.dumps(d, default=str))


def grid_json(grid: Any, templates: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON view of a :class:`~pl_saliency.evaluation.ScoreGrid`: raw scores, controls (gain, CI,
    win rate, normalized gain), the random controls, context, per-sample values, mean curves, failures."""
    es, ms = grid.explainers, grid.metrics
    controls = {
        e: {m: {k: grid.value(e, m, k) for k in CONTROL_KEYS if k in grid.scores.get((e, m), {})} for m in ms}
        for e in es
    }
    curves: dict[str, Any] = {}
    for m, by_e in grid.curves.items():
        curves[m] = {
            "x": [float(v) for v in grid.curve_x[m]] if m in grid.curve_x else list(range(len(next(iter(by_e.values()))))),
            "xlabel": curve_label(templates[m]),
            "by_explainer": {e: [finite(v) for v in c] for e, c in by_e.items()},
        }
    return {
        "scores": {e: {m: grid.value(e, m) for m in ms} for e in es},
        "controls": {e: {m: c for m, c in by_m.items() if c} for e, by_m in controls.items()},
        "random": {m: finite(v) for m, v in grid.random.items()},
        "baselines": {f"{e}/{m}": {k: finite(v) for k, v in b.items()} for (e, m), b in grid.baselines.items()},
        "context": {k: finite(v) for k, v in grid.context.items()},
        "per_sample": {e: {m: [finite(v) for v in grid.per_sample[(e, m)]] for m in ms if (e, m) in grid.per_sample} for e in es},
        "curves": curves,
        "failures": {f"{e}/{m}": reason for (e, m), reason in grid.failures.items()},
    }


# ---------------------------------------------------------------------------------------- figures
def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def png_bytes(fig: Any, dpi: int = 100) -> bytes:
    """A matplotlib figure as PNG bytes (the figure is closed)."""
    plt = _plt()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return buf.getvalue()


def save_png(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _arrow(higher: bool | None) -> str:
    return "" if higher is None else (" (higher is better)" if higher else " (lower is better)")


def _panels(k: int, height: float) -> tuple[Any, Any]:
    """A figure with ``k`` panels, at most 3 a row (4.5 wide, ``height`` high each); the spare cells hidden."""
    plt = _plt()
    ncols = min(k, 3)
    nrows = math.ceil(k / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.5 * ncols, height * nrows), squeeze=False)
    for ax in axes.flat[k:]:
        ax.set_visible(False)
    return fig, axes


def curves_png(curves: Mapping[str, Any], directions: Mapping[str, bool | None], title: str = "") -> bytes | None:
    """One panel per curve metric, the mean curve of each explainer."""
    if not curves:
        return None
    fig, axes = _panels(len(curves), height=3.6)
    for ax, (m, entry) in zip(axes.flat, curves.items()):
        for e, ys in entry["by_explainer"].items():
            ax.plot(entry["x"], [float("nan") if v is None else v for v in ys], label=e, marker="." if len(ys) < 20 else None)
        ax.set_title(f"{title}{m}{_arrow(directions.get(m))}", fontsize=9)
        ax.set_xlabel(entry["xlabel"])
        ax.set_ylabel("mean score")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return png_bytes(fig)


def overlays_png(
    inputs: Tensor, maps: Mapping[str, Tensor], captions: Sequence[str], colormap: str = "auto", clip_percentile: float = 99.0
) -> bytes | None:
    """Images (rows) × explainers (columns), maps overlaid as in the monitor's panels."""
    if inputs is None or not len(inputs) or not maps:
        return None
    from pl_saliency.loggers import display_uint8
    from pl_saliency.loggers import overlay_batch

    plt = _plt()
    names = list(maps)
    k = min(len(inputs), *(len(v) for v in maps.values()))
    tiles = {e: overlay_batch(inputs[:k], maps[e][:k], colormap=colormap, clip_percentile=clip_percentile) for e in names}
    fig, axes = plt.subplots(k, len(names) + 1, figsize=(1.7 * (len(names) + 1), 1.7 * k), squeeze=False)
    for i in range(k):
        axes[i, 0].imshow(display_uint8(inputs[i]).numpy())
        axes[i, 0].set_ylabel(captions[i], fontsize=7)
        for j, e in enumerate(names):
            axes[i, j + 1].imshow(tiles[e][i].numpy())
    axes[0, 0].set_title("image", fontsize=7)
    for j, e in enumerate(names):
        axes[0, j + 1].set_title(e, fontsize=7)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return png_bytes(fig)


def series_png(
    history: Sequence[Mapping[str, Any]], explainers: Sequence[str], metrics: Sequence[str], directions: Mapping[str, bool | None]
) -> bytes | None:
    """Scores over epochs: per metric its gain with the 95 % interval as a band (raw value when the
    metric has no control), one line per explainer; then the context (confidence, accuracy) and the
    maps' stability."""
    if not history:
        return None
    _plt()  # the Agg backend before any matplotlib submodule
    from matplotlib.ticker import MaxNLocator

    epochs = [h["epoch"] for h in history]
    Line = tuple[str, str, "str | None", "str | None"]
    panels: list[tuple[str, list[Line]]] = []
    for m in metrics:
        gain = any(f"{e}/{m}/gain" in h["scores"] for h in history for e in explainers)
        suffix = "/gain" if gain else ""
        title = f"{m}: gain over random ↑" if gain else f"{m}{_arrow(directions.get(m))}"
        lines: list[Line] = [
            (e, f"{e}/{m}{suffix}", f"{e}/{m}/gain_ci_low" if gain else None, f"{e}/{m}/gain_ci_high" if gain else None) for e in explainers
        ]
        panels.append((title, lines))
    context = [k for k in ("context/confidence", "context/accuracy") if any(h["scores"].get(k) is not None for h in history)]
    if context:
        lines_ctx: list[Line] = [(k.split("/", 1)[1], k, None, None) for k in context]
        panels.append(("context", lines_ctx))
    stable: list[Line] = [(e, f"{e}/stability/previous", None, None) for e in explainers if any(h["scores"].get(f"{e}/stability/previous") is not None for h in history)]
    if stable:
        panels.append(("stability: Spearman to previous epoch's maps", stable))
    fig, axes = _panels(len(panels), height=3.4)
    for ax, (title, lines) in zip(axes.flat, panels):
        for label, key, lo, hi in lines:
            ys = [_nan(h["scores"].get(key)) for h in history]
            (line,) = ax.plot(epochs, ys, marker="o", label=label)
            if lo and hi:
                ax.fill_between(epochs, [_nan(h["scores"].get(lo)) for h in history], [_nan(h["scores"].get(hi)) for h in history],
                                color=line.get_color(), alpha=0.2)  # fmt: skip
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize=7)
    fig.tight_layout()
    return png_bytes(fig)


def _nan(v: Any) -> float:
    return float("nan") if v is None else float(v)
