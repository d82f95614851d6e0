"""Measurements behind the controls' defaults (``docs/controls.md``), on the digits demo's data and CNN.

    python benchmarks/controls.py [--epochs 4] [--out benchmarks/controls_results.md]

It trains the demo's CNN (same data, model, optimiser and batch size as ``make demo``) with a
``SaliencyMonitor`` on a 64-sample stratified probe and records after every epoch:

* per filler (zeros, mean, blur), the no-op share — the fraction of features whose "removal" leaves
  the pixel unchanged — and the substrate score (target probability of the fully removed image);
* per filler, the raw deletion AUC of the gradient and of a random map, and their gains over the
  random-order control with 95 % bootstrap intervals;
* the gain interval's half-width on the first 16, 32, 48, 64 probe samples — the measurement behind
  ``SaliencyMonitor(num_samples=32)``.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import torch


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("controls_results.md"))
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    import pytorch_lightning as pl
    from torch.utils.data import DataLoader

    from pl_saliency import DeletionAUC
    from pl_saliency import GradCAM
    from pl_saliency import Gradient
    from pl_saliency import InsertionAUC
    from pl_saliency import SaliencyMonitor
    from pl_saliency.datasets import digits_datasets
    from pl_saliency.datasets.cnn import DigitsCNN
    from pl_saliency.explainers.random_map import RandomMap
    from pl_saliency.functional import bootstrap_ci
    from pl_saliency.functional import gain_over_random

    pl.seed_everything(0)
    train, val = digits_datasets(size=32)
    explainers = {"gradient": Gradient(), "gradcam": GradCAM(layer="features.conv3"), "random_map": RandomMap()}
    metrics = {f"deletion[{f}]": DeletionAUC(steps=args.steps, filler=f) for f in ("zeros", "mean", "blur")}
    metrics["insertion[blur]"] = InsertionAUC(steps=args.steps)
    monitor = SaliencyMonitor(explainers, metrics, num_samples=64, log_images=False)
    rows: list[dict] = []
    widths: list[dict] = []

    class Record(pl.Callback):
        """After the monitor: the grid's numbers, and the gain interval recomputed on the first n probe samples."""

        def on_validation_epoch_end(self, trainer, pl_module):
            grid = monitor.last_grid
            if trainer.sanity_checking or grid is None:
                return
            row = {"epoch": int(trainer.current_epoch), "accuracy": grid.context["accuracy"], "confidence": grid.context["confidence"]}
            row.update({k: v for k, v in grid.context.items() if k.startswith(("substrate", "noop"))})
            for m in metrics:
                row[f"{m}/random"] = grid.random.get(m)
                for e in explainers:
                    for key in ("value", "gain", "gain_ci_low", "gain_ci_high", "win_rate"):
                        row[f"{e}/{m}/{key}"] = grid.value(e, m, key)
                    parts = grid.metric_objects[(e, m)].per_sample()
                    for n in (16, 32, 48, 64):  # the probe is round-robin over classes: its first n are stratified too
                        gains = gain_over_random(parts["map"][:n], parts["random"][:n], metrics[m].higher_is_better, reduction="none")
                        lo, hi = bootstrap_ci(gains)
                        widths.append({"epoch": row["epoch"], "metric": m, "explainer": e, "num_samples": n,
                                       "gain": float(gains.nanmean()), "half_width": (hi - lo) / 2})  # fmt: skip
            rows.append(row)

    trainer = pl.Trainer(
        max_epochs=args.epochs, accelerator="cpu", logger=False, callbacks=[monitor, Record()], enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, deterministic=True, num_sanity_val_steps=0,
    )  # fmt: skip
    started = time.perf_counter()
    trainer.fit(
        DigitsCNN(), DataLoader(train, batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(0)),
        DataLoader(val, batch_size=128),
    )  # fmt: skip
    elapsed = time.perf_counter() - started
    result = {"rows": rows, "widths": widths, "seconds": elapsed}
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=1))
    args.out.write_text(render(result))
    print(render(result))
    return result


def render(result: dict) -> str:
    lines = ["# Controls: measurements on the digits demo", "", "Produced by `python benchmarks/controls.py` "
             f"({result['seconds']:.0f} s on this machine). Probe: 64 validation digits, stratified by class.", ""]
    lines += ["## No-op removal and substrate score per filler", "", "| epoch | accuracy | confidence | filler | no-op share | substrate p(target) |", "|---|---|---|---|---|---|"]
    for r in result["rows"]:
        for f in ("zeros", "mean", "blur(5,11)"):
            lines.append(f"| {r['epoch']} | {r['accuracy']:.2f} | {r['confidence']:.2f} | {f} | {r.get(f'noop_fraction/{f}', float('nan')):.3f} | {r.get(f'substrate/{f}', float('nan')):.3f} |")
    lines += ["", "## Raw deletion AUC vs gain over a random order (95 % CI)", "",
              "| epoch | metric | explainer | raw | random-order control | gain [CI] | win rate |", "|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        for m in ("deletion[zeros]", "deletion[mean]", "deletion[blur]", "insertion[blur]"):
            for e in ("gradient", "gradcam", "random_map"):
                v, g, lo, hi, w = (r[f"{e}/{m}/{k}"] for k in ("value", "gain", "gain_ci_low", "gain_ci_high", "win_rate"))
                if v is None or g is None:
                    continue
                lines.append(f"| {r['epoch']} | {m} | {e} | {v:.4f} | {r[f'{m}/random']:.4f} | {g:+.4f} [{lo:+.4f}, {hi:+.4f}] | {w:.2f} |")
    lines += ["", "## Gain interval half-width vs probe size (last epoch; worst over explainers and metrics per size)", "",
              "| num_samples | metric | explainer | gain | CI half-width |", "|---|---|---|---|---|"]
    last = max(w["epoch"] for w in result["widths"])
    for n in (16, 32, 48, 64):
        for w in sorted((w for w in result["widths"] if w["epoch"] == last and w["num_samples"] == n), key=lambda w: -w["half_width"]):
            lines.append(f"| {n} | {w['metric']} | {w['explainer']} | {w['gain']:+.4f} | {w['half_width']:.4f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
