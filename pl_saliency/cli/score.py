"""``pl-saliency score``: explain and score a folder of images with one model, through the one scoring
loop (:class:`pl_saliency.evaluation.Evaluator`), and write the report."""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch import nn

from pl_saliency.cli.common import CLIError
from pl_saliency.cli.common import ReportError
from pl_saliency.cli.common import ScoringError
from pl_saliency.cli.common import check_device
from pl_saliency.cli.common import check_out
from pl_saliency.cli.common import one_line
from pl_saliency.cli.common import print_warnings
from pl_saliency.cli.io import ImageSet
from pl_saliency.cli.io import find_images
from pl_saliency.cli.io import load_images
from pl_saliency.cli.io import load_model
from pl_saliency.cli.names import build_explainers
from pl_saliency.cli.names import build_metrics
from pl_saliency.cli.report import curves_png
from pl_saliency.cli.report import definition
from pl_saliency.cli.report import finite
from pl_saliency.cli.report import grid_json
from pl_saliency.cli.report import keep_elsewhere
from pl_saliency.cli.report import overlays_png
from pl_saliency.cli.report import save_png
from pl_saliency.cli.report import write_csv
from pl_saliency.cli.report import write_json
from pl_saliency.loggers.text import format_scores_table


@dataclass
class ScoreResult:
    """What ``score`` computed: the images, the explainers, the :class:`~pl_saliency.evaluation.ScoreGrid`
    and the first ``--overlays`` inputs."""

    images: ImageSet
    explainers: dict[str, Any]
    grid: Any
    templates: dict[str, Any]
    target_mode: str
    overlay_inputs: Tensor | None

    @property
    def targets(self) -> list[int]:
        return self.grid.targets.tolist()

    @property
    def predictions(self) -> list[int]:
        return self.grid.predictions.tolist()

    @property
    def scores(self) -> dict[str, dict[str, float | None]]:
        return {e: {m: self.grid.value(e, m) for m in self.grid.metrics} for e in self.grid.explainers}

    @property
    def metrics(self) -> dict[str, dict[str, Any]]:
        """explainer → metric → the updated Metric."""
        return {e: {m: self.grid.metric_objects[(e, m)] for m in self.grid.metrics} for e in self.grid.explainers}

    @property
    def overlay_maps(self) -> dict[str, Tensor]:
        return dict(self.grid.maps)

    def flat(self) -> dict[str, float | None]:
        return self.grid.flat()

    def directions(self) -> dict[str, bool | None]:
        return {m: getattr(t, "higher_is_better", None) for m, t in self.templates.items()}

    def captions(self) -> list[str]:
        classes = self.images.classes
        out = []
        for t, p in zip(self.targets, self.predictions):
            shown = classes[t] if classes and self.target_mode == "label" else t
            out.append(f"target {shown}, pred {p}")
        return out


def score_images(
    model: nn.Module,
    images: ImageSet,
    explainers: Mapping[str, Any],
    metric_templates: Mapping[str, Any],
    *,
    target: str | None = None,
    batch_size: int = 32,
    size: tuple[int, int] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    grayscale: bool = False,
    device: str = "cpu",
    num_overlays: int = 8,
    progress: bool = True,
    controls: bool = True,
    repeats: int = 4,
    seed: int = 0,
    num_resamples: int = 1000,
) -> ScoreResult:
    """Explain and score ``images`` batch by batch: images are loaded per batch and fed to the one
    scoring loop (:class:`~pl_saliency.evaluation.Evaluator`, random-order controls on unless
    ``controls=False``); the first failure stops with its file."""
    from tqdm.auto import tqdm

    from pl_saliency.evaluation import Evaluator
    from pl_saliency.utils import model_logits

    if target is None:
        target = "prediction" if images.labels is None else "label"
    if target == "label" and images.labels is None:
        raise CLIError("--target", f"'label' needs class sub-folders, but {images.root} is a flat folder; use --target prediction.")
    dev = torch.device(device)
    model = model.to(dev).eval()
    evaluator = Evaluator(
        model, explainers, metric_templates, target=target, on_error="warn", controls=controls, repeats=repeats, seed=seed,
        num_resamples=num_resamples, context_series=True, label="pl-saliency", keep_maps=num_overlays,
    )  # fmt: skip
    overlay_x: list[Tensor] = []
    n = len(images.files)
    bar = tqdm(total=n, unit="img", desc="scoring", disable=not progress, file=sys.stderr, dynamic_ncols=True)
    try:
        for start in range(0, n, batch_size):
            paths = images.files[start : start + batch_size]
            x = load_images(paths, size=size, mean=mean, std=std, grayscale=grayscale).to(dev)
            if start == 0:
                first_size = tuple(x.shape[1:])
            elif tuple(x.shape[1:]) != first_size:
                raise CLIError("--size", f"images differ in size ({first_size} in the first batch, {tuple(x.shape[1:])} later); pass --size H [W].")
            try:
                with torch.no_grad():
                    logits = model_logits(model, x)
            except Exception as err:  # noqa: BLE001
                hint = " (check --grayscale, --size, --mean/--std)" if start == 0 else ""
                raise ScoringError(f"the model failed on images of shape {tuple(x.shape)}{hint}: {one_line(err)}") from err
            labels = logits.argmax(dim=1)
            if images.labels is not None:
                labels = torch.tensor(images.labels[start : start + len(paths)], device=dev)
                n_classes = len(images.classes or ())
                if target == "label" and n_classes > logits.shape[1]:
                    raise CLIError(
                        "--images",
                        f"{images.root} has {n_classes} class folders (labels 0 to {n_classes - 1}), but the model has "
                        f"{logits.shape[1]} outputs; use --target prediction or a folder with at most that many classes.",
                    )
            keep = max(0, min(num_overlays - sum(len(o) for o in overlay_x), len(x)))
            if keep:
                overlay_x.append(x[:keep].cpu())
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # failures are reported below, one line, with the file
                evaluator.add(x, labels)
            if evaluator.errors:
                failed = next(iter(evaluator.errors.values()))
                what, cause = getattr(failed, "what", "scoring"), getattr(failed, "error", failed)
                raise ScoringError(f"{what} failed on {paths[0].name}…: {one_line(cause)}") from cause
            bar.update(len(paths))
    finally:
        bar.close()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # e.g. a degenerate normalized gain (NaN, shown as absent): said once, on stderr
        grid = evaluator.finish()
    print_warnings(caught, set(), "score")
    return ScoreResult(
        images=images, explainers=dict(explainers), grid=grid, templates=dict(metric_templates), target_mode=target,
        overlay_inputs=torch.cat(overlay_x) if overlay_x else None,
    )  # fmt: skip


def report_data(result: ScoreResult, settings: Mapping[str, Any]) -> dict[str, Any]:
    """Everything ``scores.json`` holds."""
    data = grid_json(result.grid, result.templates)
    return {
        "settings": dict(settings),
        "images": {
            "root": str(result.images.root),
            "layout": result.images.layout,
            "classes": result.images.classes,
            "files": result.images.names(),
            "target": result.target_mode,
            "targets": result.targets,
            "predictions": result.predictions,
        },
        "explainers": {e: repr(fn) for e, fn in result.explainers.items()},
        "metrics": {m: definition(t) for m, t in result.templates.items()},
        **data,
    }


def write_report(result: ScoreResult, out: Path, settings: Mapping[str, Any], *, html: bool = False, data: dict[str, Any] | None = None) -> list[Path]:
    """Write ``scores.csv``, ``per_sample.csv``, ``scores.json``, ``curves.png``, ``overlays.png`` (and
    ``report.html`` with ``html=True``) into ``out``."""
    data = report_data(result, settings) if data is None else data
    out.mkdir(parents=True, exist_ok=True)
    grid = result.grid
    rows = []
    for e in grid.explainers:
        for m in grid.metrics:
            metric = grid.metric_objects.get((e, m))
            c = data["controls"].get(e, {}).get(m, {})
            rows.append([
                e, m, result.scores[e][m], getattr(result.templates[m], "higher_is_better", None),
                int(getattr(metric, "total", len(result.targets))), int(getattr(metric, "nan_count", 0)),
                *(c.get(k) for k in ("gain", "gain_ci_low", "gain_ci_high", "win_rate", "normalized_gain")),
                data["random"].get(m) if c else None,
            ])  # fmt: skip
    header = ["explainer", "metric", "mean", "higher_is_better", "samples", "undefined", "gain", "gain_ci_low",
              "gain_ci_high", "win_rate", "normalized_gain", "random"]  # fmt: skip
    written = [write_csv(out / "scores.csv", header, rows)]
    cols = [(e, m) for e in data["per_sample"] for m in data["per_sample"][e]]
    names = result.images.names()
    per_sample_rows = [
        [f, result.targets[i], result.predictions[i], *(data["per_sample"][e][m][i] if i < len(data["per_sample"][e][m]) else None for e, m in cols)]
        for i, f in enumerate(names)
    ]
    written.append(write_csv(out / "per_sample.csv", ["file", "target", "prediction", *(f"{e}/{m}" for e, m in cols)], per_sample_rows))
    written.append(write_json(out / "scores.json", data))
    figures = report_figures(result, data)
    for name, png in figures.items():
        if png is not None:
            written.append(save_png(out / name, png))
    if html:
        from pl_saliency.cli.html import score_html

        path = out / "report.html"
        path.write_text(score_html(result, data, figures), encoding="utf-8")
        written.append(path)
    return written


def report_figures(result: ScoreResult, data: Mapping[str, Any]) -> dict[str, bytes | None]:
    overlays = None
    if result.overlay_inputs is not None and result.overlay_maps:
        overlays = overlays_png(result.overlay_inputs, result.overlay_maps, result.captions())
    return {"curves.png": curves_png(data["curves"], result.directions()), "overlays.png": overlays}


def check_common(args: argparse.Namespace) -> tuple[tuple[int, int] | None, Path]:
    """Checks every command runs before any work: ``--size``, ``--overlays``, ``--device``, ``--out``."""
    size = None
    if getattr(args, "size", None) is not None:
        if len(args.size) > 2:
            raise CLIError("--size", f"expected H or H W, but got {len(args.size)} values {args.size}.")
        size = (args.size[0], args.size[-1])
    if args.overlays < 0:
        raise CLIError("--overlays", f"expected a non-negative integer, but got {args.overlays}.")
    check_device(args.device)
    out = check_out(args.out)
    return size, out


def settings_of(args: argparse.Namespace) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k not in ("debug", "no_progress", "func")}


def run_score(args: argparse.Namespace) -> ScoreResult:
    """The ``score`` subcommand on parsed arguments; returns the result after writing the report."""
    size, out = check_common(args)
    images = find_images(args.images, args.limit)
    metric_templates = build_metrics(args.metrics, args.steps, args.metric_kwargs)
    model = load_model(args.checkpoint, args.model_class, args.model_factory, args.factory_kwargs)
    explainers = build_explainers(args.explainers, model, args.explainer_kwargs)
    result = score_images(
        model, images, explainers, metric_templates, target=args.target, batch_size=args.batch_size, size=size,
        mean=args.mean, std=args.std, grayscale=args.grayscale, device=args.device, num_overlays=args.overlays,
        progress=not args.no_progress, controls=not args.no_controls, repeats=args.repeats, seed=args.control_seed,
        num_resamples=args.num_resamples,
    )  # fmt: skip
    title = f"saliency scores — {len(result.targets)} images, target: {result.target_mode}"
    table = format_scores_table(result.flat(), list(explainers), result.directions(), title)
    data = report_data(result, settings_of(args))
    try:
        written = write_report(result, out, settings_of(args), html=args.html, data=data)
    except OSError as err:
        print(table)
        kept = keep_elsewhere(data, "scores.json")
        where = f"the scores are kept in {kept}" if kept else "keeping the scores elsewhere failed too"
        raise ReportError(f"--out: writing the report to {out} failed ({one_line(err)}); the table is above and {where}.") from err
    print(table)
    print(f"\nReport in {out}: " + ", ".join(p.name for p in written))
    return result


__all__ = ["ScoreResult", "check_common", "finite", "report_data", "run_score", "score_images", "write_report"]
