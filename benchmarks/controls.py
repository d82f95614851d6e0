"""Measurements behind the controls' defaults (``docs/controls.md``), on the digits demo's data and CNN.

    python benchmarks/controls.py [--epochs 4] [--out benchmarks/controls_results.md]

For each training epoch of the demo's CNN (same data, model and optimiser as ``make demo``) it records,
on stratified probes of the validation set:

* per filler (zeros, mean, blur), the no-op share — the fraction of features whose "removal" leaves
  the pixel unchanged — and the substrate score (target probability of the fully removed image);
* per filler, the raw deletion AUC of the gradient and of a random map, and their gains over the
  random-order control with 95 % bootstrap intervals;
* the gain interval's half-width as a function of the probe size (16, 32, 48, 64) — the measurement
  behind ``SaliencyMonitor(num_samples=32)``.
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

    from pl_saliency import DeletionAUC, GradCAM, Gradient, InsertionAUC, evaluate
    from pl_saliency.callbacks.probe import Probe
    from pl_saliency.datasets import digits_datasets
    from pl_saliency.datasets.cnn import DigitsCNN
    from pl_saliency.explainers.random_map import RandomMap

    pl.seed_everything(0)
    train, val = digits_datasets(size=32)
    xs, ys = torch.stack([val[i][0] for i in range(len(val))]), torch.tensor([int(val[i][1]) for i in range(len(val))])
    probe = Probe(64, stratify=True)
    probe.add(xs, ys, {})
    probe.finalize()
    px, py = probe.inputs, probe.targets
    model = DigitsCNN()
    trainer = pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    loader = DataLoader(train, batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(0))
    explainers = {"gradient": Gradient(), "gradcam": GradCAM(layer="features.conv3"), "random_map": RandomMap()}
    rows, widths = [], []
    started = time.perf_counter()
    for epoch in range(args.epochs + 1):
        if epoch:
            trainer.fit_loop.max_epochs = epoch
            trainer.fit(model, loader)
        model.eval()
        metrics = {f"deletion[{f}]": DeletionAUC(steps=args.steps, filler=f) for f in ("zeros", "mean", "blur")}
        metrics["insertion[blur]"] = InsertionAUC(steps=args.steps)
        grid = evaluate(model, px, py, explainers, metrics)
        row = {"epoch": epoch, "accuracy": grid.context["accuracy"], "confidence": grid.context["confidence"]}
        for k, v in grid.context.items():
            if k.startswith(("substrate", "noop")):
                row[k] = v
        for m in metrics:
            row[f"{m}/random"] = grid.random[m]
            for e in explainers:
                for key in ("value", "gain", "gain_ci_low", "gain_ci_high", "win_rate"):
                    row[f"{e}/{m}/{key}"] = grid.value(e, m, key)
        rows.append(row)
        for n in (16, 32, 48, 64):
            probe_n = Probe(n, stratify=True)
            probe_n.add(px, py, {})
            probe_n.finalize()
            g = evaluate(model, probe_n.inputs, probe_n.targets, {"gradient": Gradient()}, {"d": DeletionAUC(steps=args.steps, filler="blur")}, context_series=False)
            lo, hi, gain = (g.value("gradient", "d", k) for k in ("gain_ci_low", "gain_ci_high", "gain"))
            widths.append({"epoch": epoch, "num_samples": n, "gain": gain, "half_width": (hi - lo) / 2})
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
    lines += ["", "## Gain interval half-width vs probe size (gradient, deletion with blur)", "", "| epoch | num_samples | gain | CI half-width |", "|---|---|---|---|"]
    for w in result["widths"]:
        lines.append(f"| {w['epoch']} | {w['num_samples']} | {w['gain']:+.4f} | {w['half_width']:.4f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
