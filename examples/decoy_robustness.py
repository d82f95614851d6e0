"""DANCE's robustness claim on the digits demo: do decoy-enhanced maps move less than plain gradient
maps under a small adversarial input perturbation that leaves the prediction unchanged?

    python examples/decoy_robustness.py [--epochs 3] [--samples 16] [--eps 0.005]

Trains the demo CNN (offline, scikit-learn's digits), explains validation digits with
``Gradient()`` and ``DecoyEnhanced(Gradient(), layer="features.conv1")``, perturbs the inputs with
an L∞ PGD attack of budget ``--eps`` (``pl_saliency.perturbation.adversarial_perturbation``), keeps
the samples whose prediction did not change, and reports per explainer

* the Spearman rank correlation between the map before and after (higher = more stable), and
* the relative change ‖e(x+δ) − e(x)‖₂ / ‖e(x)‖₂ of the map scaled to unit maximum (lower = more stable).
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import torch


def run(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--eps", type=float, default=0.005, help="L-infinity budget of the input perturbation")
    parser.add_argument("--attack-steps", type=int, default=1, help="PGD steps (1: FGSM)")
    parser.add_argument("--num-patches", type=int, default=16, help="DANCE decoy patches per sample (cost budget)")
    parser.add_argument("--decoy-steps", type=int, default=30)
    args = parser.parse_args(argv)

    import pytorch_lightning as pl
    from torch.utils.data import DataLoader

    from pl_saliency import DecoyEnhanced, Gradient
    from pl_saliency.demo import DigitsCNN, digits_datasets
    from pl_saliency.functional.randomization import spearman_correlation
    from pl_saliency.perturbation import adversarial_perturbation

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    pl.seed_everything(0, verbose=False)
    train, val = digits_datasets(32)
    model = DigitsCNN()
    trainer = pl.Trainer(max_epochs=args.epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    trainer.fit(model, DataLoader(train, batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(0)))
    model.eval()

    x = torch.stack([val[i][0] for i in range(args.samples)])
    y = torch.tensor([val[i][1] for i in range(args.samples)])
    with torch.no_grad():
        pred = model(x).argmax(1)
    delta = adversarial_perturbation(model, x, pred, eps=args.eps, steps=args.attack_steps, bounds=(0.0, 1.0))
    x_adv = x + delta
    with torch.no_grad():
        kept = model(x_adv).argmax(1) == pred
    if not bool(kept.any()):
        raise SystemExit(f"Every prediction changed under an attack of {args.eps}: use a smaller --eps.")
    explainers: dict[str, Any] = {
        "gradient": Gradient(),
        "dance_gradient": DecoyEnhanced(Gradient(), layer="features.conv1", num_patches=args.num_patches, steps=args.decoy_steps, seed=0),
    }
    results: dict[str, dict[str, float]] = {}
    for name, explainer in explainers.items():
        before = explainer(model, x[kept], pred[kept]).flatten(1)
        after = explainer(model, x_adv[kept], pred[kept]).flatten(1)
        unit_b = before / before.amax(1, keepdim=True).clamp_min(1e-12)
        unit_a = after / after.amax(1, keepdim=True).clamp_min(1e-12)
        rel = (unit_a - unit_b).norm(dim=1) / unit_b.norm(dim=1).clamp_min(1e-12)
        rho = spearman_correlation(before, after)
        results[name] = {"spearman": float(rho.nanmean()), "relative_change": float(rel.mean())}
    print(f"\n{int(kept.sum())} of {args.samples} digits keep their prediction under an L-inf attack of {args.eps}")
    print(f"{'explainer':16s} {'Spearman ↑':>12s} {'rel. change ↓':>14s}")
    for name, r in results.items():
        print(f"{name:16s} {r['spearman']:12.4f} {r['relative_change']:14.4f}")
    return results


if __name__ == "__main__":
    run()
