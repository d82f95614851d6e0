"""Catch a model learning a shortcut: the same CNN trained twice, with the saliency monitor watching.

    python examples/shortcut_demo.py [--epochs 8] [--p 0.95] [--seed 0] [--out outputs/shortcut]

The data are scikit-learn's digits on a small canvas with a bright 3x3 marker in the border
(:class:`pl_saliency.datasets.ShortcutDigits`). In the *shortcut* run the marker's position gives
away the class in a fraction ``p`` of the training images; in the *clean* run (``p = 0``) it sits at
random. Both models are validated on the same shortcut-free data (marker at random), and the monitor
scores, every epoch, how much of each explainer's relevance falls on the digit and how much on the
marker (relevance mass accuracy with ``mask_key="masks"`` and ``mask_key="marker_masks"``).

It writes, under ``--out``: one offline W&B run and one CSV log per model, ``shortcut_relevance.png``
(object vs marker relevance over epochs, both runs), and ``verdict.json``; and prints a verdict
table: per explainer, the last epoch's marker relevance of the shortcut run against the clean run's,
and both models' accuracy on the shortcut-free validation data. Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch

from pl_saliency import DeletionAUC
from pl_saliency import GradCAM
from pl_saliency import Gradient
from pl_saliency import IntegratedGradients
from pl_saliency import RelevanceMassAccuracy
from pl_saliency import SaliencyMonitor
from pl_saliency.datasets import MARKER_KEY
from pl_saliency.datasets import DigitsCNN
from pl_saliency.datasets import localization_batch_transform
from pl_saliency.datasets import shortcut_datasets
from pl_saliency.demo import fit_with_monitor
from pl_saliency.demo import prepare_offline_run

OBJECT, MARKER, DELETION = "relevance_mass_object", "relevance_mass_marker", "deletion_auc"
RUNS = ("shortcut", "clean")


def shortcut_monitor(num_samples: int = 32, ig_steps: int = 16, log_images: bool = False) -> SaliencyMonitor:
    """Gradient, integrated gradients and Grad-CAM × relevance mass on the digit and on the marker.

    The maps explain the model's *prediction* (what the model looked at for the class it chose), and
    relevance is the positive part of a map (``relevance="positive"``, Arras et al.'s "sum,pos"): the
    share of the evidence *for* that class that lies on the region. Gradient and Grad-CAM maps are
    non-negative already; for integrated gradients it leaves out evidence against the class.

    Beside the regions, the controlled deletion score (``deletion_auc/gain``: removing the map's most
    relevant pixels, replaced by the image's mean, vs removing random ones) says whether each map is faithful to the
    model at all: a shortcut model's maps can be faithful — to the shortcut."""
    return SaliencyMonitor(
        explainers=[Gradient(), IntegratedGradients(n_steps=ig_steps), GradCAM(layer="features.conv3")],
        metrics={
            OBJECT: RelevanceMassAccuracy(relevance="positive"),
            MARKER: RelevanceMassAccuracy(relevance="positive", mask_key=MARKER_KEY),
            DELETION: DeletionAUC(filler="mean", steps=16),  # blur leaves the wide black canvas unchanged
        },
        num_samples=num_samples,
        target="prediction",
        batch_transform=localization_batch_transform,
        class_names=[str(i) for i in range(10)],
        log_images=log_images,
    )


@torch.no_grad()
def accuracy(model: torch.nn.Module, data: Any) -> float:
    """Top-1 accuracy of ``model`` (eval mode) on a :class:`ShortcutDigits`."""
    was_training = model.training
    model.eval()
    try:
        return float((model(data.images).argmax(dim=1) == data.labels).float().mean())
    finally:
        model.train(was_training)


def series(monitor: SaliencyMonitor, explainer: str, metric: str) -> tuple[list[int], list[float]]:
    """(epochs, values) of one score from the monitor's history (absent epochs skipped)."""
    points = [(h["epoch"], h["scores"].get(f"{explainer}/{metric}")) for h in monitor.history]
    points = [(e, v) for e, v in points if v is not None]
    return [e for e, _ in points], [v for _, v in points]


def save_plot(results: dict[str, dict[str, Any]], chance: dict[str, float], path: Path) -> Path:
    """Marker (top) and object (bottom) relevance mass over epochs, one column per explainer;
    solid: shortcut run, dashed: clean run; dotted grey: a uniform map (the region's area share)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    explainers = list(results["shortcut"]["monitor"].explainers)
    fig, axes = plt.subplots(2, len(explainers), figsize=(4 * len(explainers), 6), squeeze=False, sharex=True)
    for j, e in enumerate(explainers):
        for i, (metric, region, color) in enumerate(((MARKER, "marker", "tab:red"), (OBJECT, "digit", "tab:blue"))):
            ax = axes[i, j]
            for run, style in zip(RUNS, ("-", "--")):
                x, y = series(results[run]["monitor"], e, metric)
                ax.plot(x, y, style, color=color, marker="o", ms=3, label=f"{run} run (p={results[run]['p']:g})")
            ax.axhline(chance[region], ls=":", color="grey", label="uniform map")
            ax.set_title(f"{e}: relevance on the {region}", fontsize=10)
            ax.set_ylim(bottom=0)
            if j == 0:
                ax.set_ylabel("relevance mass accuracy")
            if i == 1:
                ax.set_xlabel("epoch")
            ax.legend(fontsize=7)
    fig.suptitle("Relevance on the planted marker vs on the digit (shortcut-free validation probe)", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def verdict_rows(results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Per explainer: the last epoch's marker and object relevance mass of both runs and the ratio."""
    rows = []
    for e in results["shortcut"]["monitor"].explainers:
        s, c = (results[r]["monitor"].last_scores for r in RUNS)
        ms, mc = s.get(f"{e}/{MARKER}"), c.get(f"{e}/{MARKER}")
        ratio = ms / mc if ms is not None and mc else None
        rows.append({
            "explainer": e, "marker_shortcut": ms, "marker_clean": mc, "marker_ratio": ratio,
            "object_shortcut": s.get(f"{e}/{OBJECT}"), "object_clean": c.get(f"{e}/{OBJECT}"),
            "deletion_gain_shortcut": s.get(f"{e}/{DELETION}/gain"), "deletion_gain_clean": c.get(f"{e}/{DELETION}/gain"),
        })  # fmt: skip
    return rows


def format_verdict(rows: list[dict[str, Any]], results: dict[str, dict[str, Any]]) -> str:
    def f(v: float | None, spec: str = ".3f") -> str:
        return "n/a" if v is None else format(v, spec)

    lines = [
        "Relevance mass at the last epoch (share of each map on the region; probe: shortcut-free validation images)",
        f"{'explainer':<22}{'marker: shortcut':>18}{'clean':>8}{'ratio':>8}{'digit: shortcut':>18}{'clean':>8}",
    ]
    for r in rows:
        ratio = "n/a" if r["marker_ratio"] is None else f"{r['marker_ratio']:.1f}x"
        lines.append(
            f"{r['explainer']:<22}{f(r['marker_shortcut']):>18}{f(r['marker_clean']):>8}{ratio:>8}"
            f"{f(r['object_shortcut']):>18}{f(r['object_clean']):>8}"
        )
    lines.append("Controlled deletion (gain over a random order, higher = more faithful than chance):")
    for r in rows:
        lines.append(f"  {r['explainer']:<20} shortcut run {f(r['deletion_gain_shortcut'], '+.4f')}, clean run {f(r['deletion_gain_clean'], '+.4f')}")
    acc = {r: results[r]["val_accuracy"] for r in RUNS}
    lines.append(f"Accuracy on shortcut-free validation data: shortcut run {acc['shortcut']:.3f}, clean run {acc['clean']:.3f}")
    flagged = [r["explainer"] for r in rows if r["marker_ratio"] is not None and r["marker_ratio"] >= 3]
    lines.append(
        f"Marker relevance >= 3x the clean run's for {len(flagged)} of {len(rows)} explainers"
        + (f" ({', '.join(flagged)}): the monitor flags the shortcut." if flagged else ".")
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--epochs", type=int, default=8, help="training epochs of each run")
    parser.add_argument("--p", type=float, default=0.95, help="share of shortcut training images whose marker gives away the class")
    parser.add_argument("--seed", type=int, default=0, help="seeds data (split, positions, markers), initialization and shuffling")
    parser.add_argument("--out", type=Path, default=Path("outputs/shortcut"), help="output folder")
    parser.add_argument("--num-samples", type=int, default=32, help="probe set size (validation images scored every epoch)")
    parser.add_argument("--ig-steps", type=int, default=16, help="integrated-gradients steps")
    parser.add_argument("--batch-size", type=int, default=16, help="training batch size")
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    parser.add_argument("--canvas-size", type=int, default=28, help="image side (digit 16 px inside a 5 px marker band)")
    parser.add_argument("--marker-size", type=int, default=3, help="side of the square marker in pixels")
    parser.add_argument(
        "--log-images", action="store_true",
        help="also log overlays and heatmap tables to W&B each epoch (several seconds per epoch on 2 CPU cores)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if not 0.0 <= args.p <= 1.0:
        parser.error(f"argument --p: must lie in [0, 1], but got {args.p}")

    out_dir = prepare_offline_run(args.out)
    started = time.perf_counter()
    data = {"canvas_size": args.canvas_size, "marker_size": args.marker_size}
    results: dict[str, dict[str, Any]] = {}
    for run, p in zip(RUNS, (args.p, 0.0)):
        train, val = shortcut_datasets(p=p, seed=args.seed, **data)
        pl.seed_everything(args.seed, workers=True, verbose=False)  # the same initial weights for both runs
        model = DigitsCNN(lr=args.lr)
        monitor = shortcut_monitor(args.num_samples, args.ig_steps, log_images=args.log_images)
        fitted = fit_with_monitor(
            model, train, val, monitor, out_dir=out_dir, project="pl_saliency-shortcut", name=f"{run}-p{p:g}",
            csv_name=f"csv_{run}", epochs=args.epochs, seed=args.seed, batch_size=args.batch_size,
        )  # fmt: skip
        results[run] = {"p": p, "monitor": monitor, "val_accuracy": accuracy(model, val), "run_dir": fitted["run_dir"], "csv": fitted["csv"]}
        print(f"{run} run (p={p:g}) done: accuracy on shortcut-free validation data {results[run]['val_accuracy']:.3f}", flush=True)

    probe_extras = results["shortcut"]["monitor"].probe_extras
    chance = {region: float(probe_extras[key].float().mean()) for region, key in (("marker", MARKER_KEY), ("digit", "masks"))}
    plot = save_plot(results, chance, out_dir / "shortcut_relevance.png")
    rows = verdict_rows(results)
    summary = {
        "p": args.p, "epochs": args.epochs, "seed": args.seed, "rows": rows, "uniform_map": chance,
        "val_accuracy": {r: results[r]["val_accuracy"] for r in RUNS},
    }  # fmt: skip
    (out_dir / "verdict.json").write_text(json.dumps(summary, indent=2))
    print()
    print(format_verdict(rows, results))
    print(f"\nDone in {time.perf_counter() - started:.0f} s.")
    for r in RUNS:
        print(f"Offline W&B run ({r}): {results[r]['run_dir']}   (upload later with `wandb sync`)")
        print(f"CSV metrics ({r}):     {results[r]['csv']}")
    print(f"Plot:                  {plot}")
    return {"runs": results, "rows": rows, "plot": plot, "verdict": out_dir / "verdict.json", "uniform_map": chance}


if __name__ == "__main__":
    main()
