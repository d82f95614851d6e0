"""``pl-saliency track``: score a run's checkpoints after the fact, on one fixed probe, and write the
over-epoch series a :class:`~pl_saliency.SaliencyMonitor` would have logged.

Checkpoints are ordered by the ``epoch`` and ``global_step`` recorded in them (by file name, numbers
compared as numbers, when a checkpoint lacks them); checkpoints with the same epoch and step as an
earlier one (``last.ckpt``) are skipped. Each is scored with :func:`pl_saliency.evaluate` under the
monitor's settings — random-order controls on (gain, 95 % interval, win rate, normalized gain),
context series, the maps' stability against the previous and the first checkpoint — and every key
follows :meth:`~pl_saliency.evaluation.ScoreGrid.flat` (the monitor's layout, under ``--log-prefix``).
"""

from __future__ import annotations

import argparse
import glob
import math
import re
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from pl_saliency.cli.common import CLIError
from pl_saliency.cli.common import ReportError
from pl_saliency.cli.common import ScoringError
from pl_saliency.cli.common import one_line
from pl_saliency.cli.common import print_warnings
from pl_saliency.cli.io import ProbeData
from pl_saliency.cli.io import find_images
from pl_saliency.cli.io import load_images
from pl_saliency.cli.io import load_probe
from pl_saliency.cli.io import model_loader
from pl_saliency.cli.names import build_explainers
from pl_saliency.cli.names import build_metrics
from pl_saliency.cli.report import curves_png
from pl_saliency.cli.report import definition
from pl_saliency.cli.report import grid_json
from pl_saliency.cli.report import keep_elsewhere
from pl_saliency.cli.report import overlays_png
from pl_saliency.cli.report import save_png
from pl_saliency.cli.report import series_png
from pl_saliency.cli.report import write_csv
from pl_saliency.cli.report import write_json
from pl_saliency.cli.score import check_common
from pl_saliency.cli.score import settings_of
from pl_saliency.loggers.text import format_scores_table
from pl_saliency.series import stability_scores
from pl_saliency.series import summary_directions

#: controlled keys whose W&B summary is the best (max) value, as the monitor's; others keep the last


@dataclass
class Checkpoint:
    path: Path
    epoch: int | None
    global_step: int | None


def _natural(name: str) -> list[Any]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def find_checkpoints(patterns: list[str]) -> list[Path]:
    """Files matching each glob pattern (``**`` recursive), folder (its ``*.ckpt``) or path, once each."""
    found: list[Path] = []
    for pattern in patterns:
        if glob.has_magic(pattern):
            matches = [Path(p) for p in sorted(glob.glob(pattern, recursive=True)) if Path(p).is_file()]
        elif Path(pattern).is_dir():
            matches = sorted(Path(pattern).glob("*.ckpt"))
        elif Path(pattern).is_file():
            matches = [Path(pattern)]
        else:
            raise CLIError("--checkpoints", f"no such file or folder: {pattern}.")
        if not matches:
            raise CLIError("--checkpoints", f"{pattern!r} matches no checkpoint file.")
        found += [p for p in matches if p.resolve() not in {f.resolve() for f in found}]
    return found


def _meta(path: Path) -> Checkpoint:
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - not a zip checkpoint: read it whole (weights_only still)
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001
            raise CLIError("--checkpoints", f"could not read {path} ({one_line(err)}).") from err
    get = ckpt.get if isinstance(ckpt, dict) else (lambda k: None)
    epoch, step = get("epoch"), get("global_step")
    return Checkpoint(path, epoch if isinstance(epoch, int) else None, step if isinstance(step, int) else None)


def order_checkpoints(paths: list[Path]) -> tuple[list[Checkpoint], str, list[str]]:
    """``(checkpoints in order, how they were ordered, notes on skipped duplicates)``."""
    metas = [_meta(p) for p in paths]
    if all(m.epoch is not None for m in metas):
        metas.sort(key=lambda m: (m.epoch, -1 if m.global_step is None else m.global_step, _natural(m.path.name)))
        order = "epoch and global step recorded in the checkpoints"
    else:
        metas.sort(key=lambda m: _natural(m.path.name))
        order = "file name (a checkpoint records no epoch)"
    kept: list[Checkpoint] = []
    notes = []
    for m in metas:
        same = next((k for k in kept if m.epoch is not None and (k.epoch, k.global_step) == (m.epoch, m.global_step)), None)
        if same is not None:
            notes.append(f"skipping {m.path.name}: the same epoch {m.epoch} and step {m.global_step} as {same.path.name}")
            continue
        kept.append(m)
    return kept, order, notes


def images_probe(args: argparse.Namespace, size: tuple[int, int] | None) -> ProbeData:
    images = find_images(args.images, args.limit)
    x = load_images(images.files, size=size, mean=args.mean, std=args.std, grayscale=args.grayscale)
    labels = None if images.labels is None else torch.tensor(images.labels)
    return ProbeData(x, labels, None, {}, images.names(), f"{images.root} ({images.layout})")


def run_track(args: argparse.Namespace) -> dict[str, Any]:
    """The ``track`` subcommand on parsed arguments; returns the series (``series.json``'s content)."""
    size, out = check_common(args)
    if (args.probe is None) == (args.images is None):
        raise CLIError("--probe/--images", "pass exactly one: --probe FILE (a saved probe or a checkpoint with a SaliencyMonitor) or --images FOLDER.")
    checkpoints, order, notes = order_checkpoints(find_checkpoints(args.checkpoints))
    probe = load_probe(args.probe) if args.probe is not None else images_probe(args, size)
    target = args.target or ("label" if probe.labels is not None else "prediction")
    if target == "label" and probe.labels is None:
        raise CLIError("--target", "'label' needs labels: class sub-folders in --images, or 'targets' in --probe; use --target prediction.")
    templates = build_metrics(args.metrics, args.steps, args.metric_kwargs)
    load = model_loader(args.model_class, args.model_factory, args.factory_kwargs, option="--checkpoints")
    model = load(checkpoints[0].path)
    explainers = build_explainers(args.explainers, model, args.explainer_kwargs)
    names = list(explainers)
    for note in notes:
        print(f"pl-saliency track: {note}", file=sys.stderr)
    from pl_saliency.evaluation import evaluate

    dev = torch.device(args.device)
    x = probe.inputs.to(dev)
    labels = (probe.labels if probe.labels is not None else torch.zeros(len(x), dtype=torch.long)).to(dev)
    extras = {k: v.to(dev) for k, v in probe.extras.items()}
    directions = {m: getattr(t, "higher_is_better", None) for m, t in templates.items()}
    history: list[dict[str, Any]] = []
    curves: list[dict[str, Any]] = []
    previous: dict[str, Tensor] = {}
    first: dict[str, Tensor] = {}
    shown: list[tuple[str, dict[str, Tensor]]] = []
    seen: set[str] = set()
    for i, ck in enumerate(checkpoints):
        if i:
            model = load(ck.path)
        model = model.to(dev).eval()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            grid = evaluate(
                model, x, labels, explainers, templates, extras=extras, sample_ids=probe.ids, batch_size=args.batch_size,
                target=target, on_error="warn", controls=not args.no_controls, repeats=args.repeats, seed=args.control_seed,
                num_resamples=args.num_resamples, context_series=True, label="pl-saliency track",
            )  # fmt: skip
        epoch = ck.epoch if ck.epoch is not None else i
        print_warnings(caught, seen, "track")
        if grid.failures and len(grid.failures) == len(names) * len(templates):
            reason = next(iter(grid.failures.values()))
            raise ScoringError(f"every score failed on {ck.path.name} (epoch {epoch}): {reason}")
        for (e, m), reason in grid.failures.items():
            print(f"pl-saliency track: warning: epoch {epoch}: {e}/{m} is absent: {reason.splitlines()[0]}", file=sys.stderr)
        scores = grid.flat()
        if probe.labels is None:
            scores.pop("context/accuracy", None)  # no labels: accuracy against nothing
        scores.update(stability_scores(grid.maps, previous, first, names, 0 if grid.predictions is None else len(grid.predictions)))
        history.append({
            "epoch": epoch, "global_step": ck.global_step if ck.global_step is not None else -1, "checkpoint": ck.path.name,
            "scores": scores, "failures": {f"{e}/{m}": r for (e, m), r in grid.failures.items()},
        })  # fmt: skip
        curves.append({"epoch": epoch, "checkpoint": ck.path.name, "curves": grid_json(grid, templates)["curves"]})
        if args.overlays and (i == 0 or i == len(checkpoints) - 1):
            shown.append((f"epoch {epoch} ({ck.path.name})", {e: m[: args.overlays] for e, m in grid.maps.items()}))
        title = f"saliency scores — epoch {epoch} ({ck.path.name})"
        print(format_scores_table(scores, names, directions, title) + "\n")
        del grid  # free the maps of every probe sample before the next checkpoint
    data = {
        "log_prefix": args.log_prefix.rstrip("/"),
        "order": order,
        "skipped": notes,
        "probe": {"source": probe.source, "size": len(x), "shape": list(x.shape[1:]), "target": target,
                  "targets": None if probe.labels is None else probe.labels.tolist(), "names": probe.names},  # fmt: skip
        "explainer_names": names,
        "explainers": {e: repr(fn) for e, fn in explainers.items()},
        "metrics": {m: definition(t) for m, t in templates.items()},
        "settings": {**settings_of(args), "controls": not args.no_controls},
        "history": history,
        "curves": curves,
    }
    inputs = probe.inputs[: args.overlays]
    try:
        written = write_series(data, templates, out, inputs, shown, probe, html=args.html)
    except OSError as err:
        kept = keep_elsewhere(data, "series.json")
        where = f"the series is kept in {kept}" if kept else "keeping the series elsewhere failed too"
        raise ReportError(f"--out: writing to {out} failed ({one_line(err)}); the tables are above and {where}.") from err
    if args.wandb:
        written.append(log_wandb(data, out, args))
    print(f"Series of {len(history)} checkpoints in {out}: " + ", ".join(p.name for p in written))
    return data


def _captions(probe: ProbeData, k: int) -> list[str]:
    if probe.labels is None:
        return probe.names[:k]
    return [f"{n}: target {int(t)}" for n, t in zip(probe.names[:k], probe.labels[:k])]


def write_series(data: dict[str, Any], templates: dict[str, Any], out: Path, inputs: Tensor, shown: list[tuple[str, dict[str, Tensor]]],
                 probe: ProbeData, *, html: bool = False) -> list[Path]:  # fmt: skip
    """``series.csv`` (one row per checkpoint, the monitor's keys), ``series.json``, ``series.png``,
    ``curves.png`` (last checkpoint), ``overlays.png`` (last checkpoint) and ``report.html``."""
    out.mkdir(parents=True, exist_ok=True)
    prefix, history = data["log_prefix"], data["history"]
    keys = list(dict.fromkeys(k for h in history for k in h["scores"]))
    rows = [[h["checkpoint"], h["epoch"], h["global_step"], *(h["scores"].get(k) for k in keys)] for h in history]
    written = [write_csv(out / "series.csv", ["checkpoint", "epoch", "global_step", *(f"{prefix}/{k}" for k in keys)], rows)]
    written.append(write_json(out / "series.json", data))
    directions = {m: getattr(t, "higher_is_better", None) for m, t in templates.items()}
    captions = _captions(probe, len(inputs))
    figures = {
        "series.png": series_png(history, data["explainer_names"], list(templates), directions),
        "curves.png": curves_png(data["curves"][-1]["curves"], directions) if data["curves"] else None,
        "overlays.png": overlays_png(inputs, shown[-1][1], captions) if shown and len(inputs) else None,
    }
    written += [save_png(out / name, png) for name, png in figures.items() if png is not None]
    if html:
        from pl_saliency.cli.html import overlay_section
        from pl_saliency.cli.html import track_html

        sections = [(title, overlay_section(inputs, maps, captions, table_id=f"overlays-{j}")) for j, (title, maps) in enumerate(shown)]
        path = out / "report.html"
        path.write_text(track_html(data, templates, figures, sections), encoding="utf-8")
        written.append(path)
    return written


def log_wandb(data: dict[str, Any], out: Path, args: argparse.Namespace) -> Path:
    """An offline W&B run under ``<out>/wandb``: the monitor's keys at each checkpoint's epoch (summary:
    best gain / win rate / normalized gain, last value otherwise), curve charts and series charts.
    Upload later with ``wandb sync <run folder>``."""
    from pl_saliency.loggers.wandb import curve_chart
    from pl_saliency.loggers.wandb import define_saliency_metrics
    from pl_saliency.loggers.wandb import import_wandb
    from pl_saliency.loggers.wandb import series_chart

    wandb = import_wandb()
    prefix, history = data["log_prefix"], data["history"]
    config = {"pl_saliency_track": {k: data[k] for k in ("order", "probe", "explainers", "metrics", "settings")}}
    run = wandb.init(project=args.wandb_project, name=args.wandb_name, dir=str(out), mode="offline", config=config,
                     settings=wandb.Settings(console="off", silent=True))  # fmt: skip
    try:
        keys = list(dict.fromkeys(f"{prefix}/{k}" for h in history for k in h["scores"]))
        define_saliency_metrics(run, summary_directions(keys))
        for h, c in zip(history, data["curves"]):
            row = {f"{prefix}/{k}": v for k, v in h["scores"].items() if v is not None and math.isfinite(v)}
            run.log({**row, "epoch": h["epoch"], "trainer/global_step": h["global_step"]})
            media = {
                f"{prefix}/curves/{m}": curve_chart(torch.tensor(e["x"]), {n: torch.tensor([math.nan if v is None else v for v in ys])
                                                                          for n, ys in e["by_explainer"].items()},
                                                    title=f"{m} (epoch {h['epoch']})", xname=e["xlabel"])
                for m, e in c["curves"].items()
            }  # fmt: skip
            if media:
                run.log({**media, "epoch": h["epoch"], "trainer/global_step": h["global_step"]})
        epochs = [h["epoch"] for h in history]
        charts = {}
        for m in data["metrics"]:
            gain = any(f"{e}/{m}/gain" in h["scores"] for h in history for e in data["explainer_names"])
            suffix = "/gain" if gain else ""
            series = {e: [h["scores"].get(f"{e}/{m}{suffix}") for h in history] for e in data["explainer_names"]}
            charts[f"{prefix}/history/{m}"] = series_chart(epochs, series, title=f"{m}: {'gain over random' if gain else 'raw score'} over epochs")
        run.log({**charts, "epoch": history[-1]["epoch"], "trainer/global_step": history[-1]["global_step"]})
        run_dir = Path(run.dir).parent
    finally:
        run.finish()
    return run_dir
