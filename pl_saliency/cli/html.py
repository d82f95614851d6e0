"""One self-contained HTML file per ``score`` / ``track`` run (``--html``): tables of the scores with
their random-order controls and 95 % intervals, the curves, the maps overlaid on their images (PNG
data URIs), the series over epochs, and every metric's definition. No script, no external resource:
the file opens offline in any browser and can be attached to a ticket as it is.

Every number cell carries ``data-key`` (the monitor's key layout, e.g. ``gradient/deletion_auc/gain``)
and ``data-value`` (the exact value) next to the value shown rounded to 4 decimals.
"""

from __future__ import annotations

import base64
import html
import io
import re
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any

from torch import Tensor

from pl_saliency.cli.report import CONTROL_KEYS

CSS = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 1400px; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.6em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.9em; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: right; vertical-align: middle; }
th { background: #f3f3f3; } td.name, th.name { text-align: left; }
img.tile { width: 96px; height: auto; image-rendering: pixelated; }
img.figure { max-width: 100%; }
.note { color: #555; font-size: 0.9em; } code { background: #f5f5f5; padding: 0 3px; }
"""

CONTROL_TEXT = {
    "gain": "mean over samples of g_i = s·(M_i − R_i): the map's score M_i against the mean R_i of random feature "
    "orders on the same sample (s = +1 when higher is better, −1 otherwise); 0 for a random map, higher is better",
    "gain_ci_low / gain_ci_high": "paired percentile bootstrap 95 % interval of the gain over samples (contains 0 for a random map)",
    "win_rate": "share of samples with g_i > 0 (0.5 for a random map; higher is better)",
    "normalized_gain": "Σ g_i / Σ s·(A_i − R_i), A_i the score a perfect order approaches (1 = perfect order, 0 = random)",
    "random": "the random-order control's raw score (the same for every explainer)",
}


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def fmt(v: float | None, signed: bool = False) -> str:
    if v is None:
        return "—"
    return f"{v:+.4f}" if signed else f"{v:.4f}"


def num_td(key: str, v: float | None, *, signed: bool = False, extra: str = "") -> str:
    value = "" if v is None else repr(float(v))
    return f'<td data-key="{esc(key)}" data-value="{value}"{extra}>{fmt(v, signed)}</td>'


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def img(png: bytes | None, alt: str, cls: str = "figure") -> str:
    return "" if png is None else f'<img class="{cls}" alt="{esc(alt)}" src="{data_uri(png)}">'


def tile_png(array: Tensor) -> bytes:
    """(H, W, 3) uint8 tensor → PNG bytes."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array.numpy()).save(buf, format="PNG")
    return buf.getvalue()


def page(title: str, body: Sequence[str]) -> str:
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{esc(title)}</title><style>{CSS}</style></head>\n<body>\n<h1>{esc(title)}</h1>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )


def table(head: Sequence[str], rows: Sequence[Sequence[str]], table_id: str = "") -> str:
    """``rows`` are lists of ready ``<td>`` strings."""
    ident = f' id="{esc(table_id)}"' if table_id else ""
    heads = "".join(f"<th>{esc(h)}</th>" for h in head)
    body = "\n".join("<tr>" + "".join(r) + "</tr>" for r in rows)
    return f"<table{ident}><thead><tr>{heads}</tr></thead><tbody>\n{body}\n</tbody></table>"


def arrow_of(higher: bool | None) -> str:
    return "" if higher is None else (" ↑" if higher else " ↓")


def name_td(text: Any) -> str:
    return f'<td class="name">{esc(text)}</td>'


# ---------------------------------------------------------------------------------------- sections
def scores_section(flat: Mapping[str, float | None], explainers: Sequence[str], metrics: Sequence[str],
                   directions: Mapping[str, bool | None], table_id: str = "scores") -> str:  # fmt: skip
    """Explainer × metric rows: raw score, then gain, its 95 % interval, win rate, normalized gain."""
    rows = []
    for e in explainers:
        for m in metrics:
            arrow = arrow_of(directions.get(m))
            row = [name_td(e), name_td(m + arrow), num_td(f"{e}/{m}", flat.get(f"{e}/{m}"))]
            row.append(num_td(f"{e}/{m}/gain", flat.get(f"{e}/{m}/gain"), signed=True))
            row += [num_td(f"{e}/{m}/{k}", flat.get(f"{e}/{m}/{k}"), signed=k != "win_rate") for k in CONTROL_KEYS[1:]]
            rows.append(row)
    head = ["explainer", "metric", "raw score", "gain ↑", "gain 95% CI low", "gain 95% CI high", "win rate ↑", "normalized gain ↑"]
    return table(head, rows, table_id)


def controls_section(flat: Mapping[str, float | None], metrics: Sequence[str], table_id: str = "random") -> str:
    rows = [[name_td(m), num_td(f"{m}/random", flat.get(f"{m}/random"))] for m in metrics if f"{m}/random" in flat]
    if not rows:
        return '<p class="note">No random-order controls (none of the metrics is a curve metric, or --no-controls).</p>'
    return table(["metric", "random-order control (raw)"], rows, table_id)


def context_section(flat: Mapping[str, float | None], table_id: str = "context") -> str:
    keys = [k for k in flat if k.startswith("context/") or "/stability/" in k]
    if not keys:
        return ""
    return table(["context", "value"], [[name_td(k), num_td(k, flat[k])] for k in keys], table_id)


def overlay_section(inputs: Tensor | None, maps: Mapping[str, Tensor], captions: Sequence[str], *,
                    colormap: str = "auto", clip_percentile: float = 99.0, table_id: str = "overlays") -> str:  # fmt: skip
    """One row per sample: the image, its caption, then each explainer's overlay (PNG tiles)."""
    if inputs is None or not len(inputs) or not maps:
        return '<p class="note">No overlays (--overlays 0, or no explainer produced maps).</p>'
    from pl_saliency.loggers import display_uint8
    from pl_saliency.loggers import overlay_batch

    names = list(maps)
    k = min(len(inputs), *(len(v) for v in maps.values()))
    tiles = {e: overlay_batch(inputs[:k], maps[e][:k], colormap=colormap, clip_percentile=clip_percentile) for e in names}
    rows = []
    for i in range(k):
        row = [f"<td>{img(tile_png(display_uint8(inputs[i])), f'image {i}', 'tile')}</td>", name_td(captions[i])]
        row += [f"<td>{img(tile_png(tiles[e][i]), f'{e} overlay {i}', 'tile')}</td>" for e in names]
        rows.append(row)
    note = (f'<p class="note">Colormap {esc(colormap)} (signed maps: diverging, centred at 0; unsigned: sequential), '
            f"display clipped at the {clip_percentile:g}th percentile of |map|.</p>")  # fmt: skip
    return note + table(["image", "sample", *names], rows, table_id)


def _prose(cls: type) -> str:
    """The descriptive part of a class docstring (before ``Args:``/``Example:``), RST markup removed."""
    doc = (cls.__doc__ or "").strip()
    keep = []
    for line in doc.splitlines():
        if re.match(r"^\s*(Args|Arguments|Example|Examples|Raises|Returns|Note|Attributes)\s*:{1,2}\s*$", line):
            break
        keep.append(line.strip())
    text = " ".join(" ".join(keep).split())
    text = re.sub(r":[a-z]+:`~?([^`]+)`", lambda mt: mt.group(1).rsplit(".", 1)[-1], text)
    return text.replace("``", "").replace("**", "")


def definitions_section(templates: Mapping[str, Any], definitions: Mapping[str, Mapping[str, Any]], controls: bool) -> str:
    """Per metric: class, direction, the definition from its documentation and every setting."""
    parts = []
    for m, t in templates.items():
        d = dict(definitions.get(m, {}))
        higher = getattr(t, "higher_is_better", None)
        direction = "no direction" if higher is None else ("higher is better" if higher else "lower is better")
        settings = "".join(f"<tr><td class=\"name\">{esc(k)}</td><td class=\"name\"><code>{esc(v)}</code></td></tr>" for k, v in d.items())
        parts.append(
            f'<h3 id="def-{esc(m)}">{esc(m)}</h3><p><b>{esc(type(t).__name__)}</b>, {direction}. {esc(_prose(type(t)))}</p>'
            f'<table class="definition"><tbody>{settings}</tbody></table>'
        )
    if controls:
        rows = "".join(f"<li><b>{esc(k)}</b>: {esc(v)}</li>" for k, v in CONTROL_TEXT.items())
        parts.append(f"<h3>Random-order controls (curve metrics)</h3><ul>{rows}</ul>")
    return "\n".join(parts)


def settings_section(settings: Mapping[str, Any]) -> str:
    rows = [[name_td(k), f'<td class="name"><code>{esc(v)}</code></td>'] for k, v in settings.items()]
    return table(["setting", "value"], rows, "settings")


def failures_section(failures: Mapping[str, str]) -> str:
    if not failures:
        return ""
    return "<h2>Failures</h2>" + table(["explainer/metric", "reason"], [[name_td(k), name_td(v)] for k, v in failures.items()], "failures")


# ---------------------------------------------------------------------------------------- pages
def score_html(result: Any, data: Mapping[str, Any], figures: Mapping[str, bytes | None]) -> str:
    """The ``score`` report (``result`` a :class:`~pl_saliency.cli.score.ScoreResult`)."""
    grid = result.grid
    flat = result.flat()
    es, ms = grid.explainers, grid.metrics
    n = len(result.targets)
    body = [
        f'<p class="note">{n} images from <code>{esc(result.images.root)}</code> ({esc(result.images.layout)}), '
        f"target: {esc(result.target_mode)}. Raw scores move with the model's confidence; the gain reads each curve "
        "metric against random feature orders on the same images (higher = better than random).</p>",
        "<h2>Scores</h2>", scores_section(flat, es, ms, result.directions()),
        "<h2>Random-order controls</h2>", controls_section(flat, ms),
        "<h2>Context</h2>", context_section(flat) or '<p class="note">No context values.</p>',
        "<h2>Curves</h2>", img(figures.get("curves.png"), "mean curves") or '<p class="note">No curve metric.</p>',
        "<h2>Overlays</h2>", overlay_section(result.overlay_inputs, result.overlay_maps, result.captions()),
        failures_section(data.get("failures", {})),
        "<h2>Per-sample scores</h2>", _per_sample_table(result.images.names(), result.targets, result.predictions, data["per_sample"]),
        "<h2>Metric definitions</h2>", definitions_section(result.templates, data["metrics"], bool(data["random"])),
        "<h2>Settings</h2>", settings_section(data["settings"]),
    ]  # fmt: skip
    return page("pl-saliency score report", body)


def _per_sample_table(files: Sequence[str], targets: Sequence[int], predictions: Sequence[int],
                      per_sample: Mapping[str, Mapping[str, Sequence[float | None]]]) -> str:  # fmt: skip
    cols = [(e, m) for e in per_sample for m in per_sample[e]]
    rows = []
    for i, f in enumerate(files):
        row = [name_td(f), f"<td>{targets[i]}</td>", f"<td>{predictions[i]}</td>"]
        row += [num_td(f"{e}/{m}", per_sample[e][m][i] if i < len(per_sample[e][m]) else None, extra=f' data-sample="{i}"') for e, m in cols]
        rows.append(row)
    return "<details open><summary>one row per image</summary>" + table(
        ["file", "target", "prediction", *(f"{e}/{m}" for e, m in cols)], rows, "per-sample"
    ) + "</details>"


def track_html(data: Mapping[str, Any], templates: Mapping[str, Any], figures: Mapping[str, bytes | None],
               overlays: Sequence[tuple[str, str]]) -> str:  # fmt: skip
    """The ``track`` report: the series over checkpoints, the last checkpoint's curves, overlays of
    the first and last checkpoint (``overlays``: (title, ready HTML))."""
    history = data["history"]
    es, ms = data["explainer_names"], list(templates)
    directions = {m: getattr(t, "higher_is_better", None) for m, t in templates.items()}
    ckpt_rows = [[name_td(h["checkpoint"]), f"<td>{h['epoch']}</td>", f"<td>{h['global_step']}</td>"] for h in history]
    body = [
        f'<p class="note">{len(history)} checkpoints ordered by {esc(data["order"])}, scored on the same probe '
        f"({data['probe']['size']} samples, {esc(data['probe']['source'])}). Keys as the monitor logs them, "
        f"under <code>{esc(data['log_prefix'])}/</code>.</p>",
        "<h2>Checkpoints</h2>", table(["checkpoint", "epoch", "global step"], ckpt_rows, "checkpoints"),
        "<h2>Over epochs</h2>", img(figures.get("series.png"), "scores over epochs"),
    ]  # fmt: skip
    for m in ms:
        body.append(f"<h3>{esc(m)}</h3>" + _series_table(history, es, m, directions.get(m)))
    last = history[-1]
    body += [
        f"<h2>Last checkpoint (epoch {last['epoch']})</h2>",
        scores_section(last["scores"], es, ms, directions, table_id="last-scores"),
        controls_section(last["scores"], ms, table_id="last-random"),
        "<h3>Curves</h3>", img(figures.get("curves.png"), "mean curves, last checkpoint") or '<p class="note">No curve metric.</p>',
    ]  # fmt: skip
    for title, section in overlays:
        body += [f"<h2>Overlays: {esc(title)}</h2>", section]
    keys = list(dict.fromkeys(k for h in history for k in h["scores"]))
    rows = [[name_td(k), *(num_td(k, h["scores"].get(k), extra=f' data-epoch="{h["epoch"]}"') for h in history)] for k in keys]
    body += [
        "<h2>Every value</h2>",
        "<details><summary>every key of every checkpoint</summary>"
        + table(["key", *(f"epoch {h['epoch']}" for h in history)], rows, "series") + "</details>",
        failures_section({f"epoch {h['epoch']}: {k}": v for h in history for k, v in h.get("failures", {}).items()}),
        "<h2>Metric definitions</h2>", definitions_section(templates, data["metrics"], data["settings"].get("controls", True)),
        "<h2>Settings</h2>", settings_section(data["settings"]),
    ]  # fmt: skip
    return page("pl-saliency track report", body)


def _series_table(history: Sequence[Mapping[str, Any]], explainers: Sequence[str], m: str, higher: bool | None) -> str:
    """Epoch rows × explainer columns: gain [CI] and win rate where controlled, else the raw score."""
    rows = []
    for h in history:
        s = h["scores"]
        row = [f"<td>{h['epoch']}</td>"]
        for e in explainers:
            if f"{e}/{m}/gain" in s:
                lo, hi, win = s.get(f"{e}/{m}/gain_ci_low"), s.get(f"{e}/{m}/gain_ci_high"), s.get(f"{e}/{m}/win_rate")
                ci = "" if lo is None or hi is None else f" [{lo:+.4f}, {hi:+.4f}]"
                rate = "" if win is None else f", win {win:.0%}"
                g = s.get(f"{e}/{m}/gain")
                value = "" if g is None else repr(float(g))
                row.append(f'<td data-key="{esc(e)}/{esc(m)}/gain" data-epoch="{h["epoch"]}" data-value="{value}">{fmt(g, True)}{ci}{rate}</td>')
            else:
                row.append(num_td(f"{e}/{m}", s.get(f"{e}/{m}"), extra=f' data-epoch="{h["epoch"]}"'))
        rows.append(row)
    controlled = any(f"{e}/{m}/gain" in h["scores"] for h in history for e in explainers)
    what = "gain over random ↑ [95% CI], win rate" if controlled else "raw" + arrow_of(higher)
    return table(["epoch", *(f"{e}: {what}" for e in explainers)], rows, f"series-{m}")
