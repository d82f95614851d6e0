"""DANCE's robustness claim on the digits demo, with the control that the first version lacked: do
decoy-enhanced maps move less than plain gradient maps under a small adversarial input perturbation
that keeps the prediction, *compared with how much they move between two seeds on the clean image*?

    python examples/decoy_robustness.py [--epochs 3] [--samples 16] [--eps 0.005]

Trains the demo CNN (offline, scikit-learn's digits, 32x32), explains validation digits with
``Gradient()`` and three ``DecoyEnhanced(Gradient(), layer="features.conv1")`` layouts:

* ``dance_full``: every 3x3 patch position (stride 3, every pixel covered exactly once; the default);
* ``dance_coarse16``: the budget ``num_patches=16`` met by coarser tiles (8x8, every pixel once);
* ``dance_random16``: the first release's budget, 16 randomly sampled 3x3 patches
  (``patch_sampling="random"``), which biases maps towards the sampled patches.

It perturbs the inputs with an L∞ FGSM of budget ``--eps`` (``adversarial_perturbation``), keeps the
samples whose prediction did not change, and reports per explainer the Spearman rank correlation of
the map before and after the attack (higher = more stable) next to the **seed-vs-seed control**: the
Spearman between two runs on the same clean image that differ only in the seed. A robustness number
is only meaningful when it is below that control; for deterministic explainers the control is 1.
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
    parser.add_argument("--attack-iterations", type=int, default=1, help="PGD iterations (1: FGSM)")
    parser.add_argument("--decoy-iterations", type=int, default=30)
    args = parser.parse_args(argv)

    import pytorch_lightning as pl
    from torch.utils.data import DataLoader

    from pl_saliency import DecoyEnhanced
    from pl_saliency import Gradient
    from pl_saliency.demo import DigitsCNN
    from pl_saliency.demo import digits_datasets
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
    with torch.no_grad():
        pred = model(x).argmax(1)
    delta = adversarial_perturbation(model, x, pred, eps=args.eps, iterations=args.attack_iterations, bounds=(0.0, 1.0))
    x_adv = x + delta
    with torch.no_grad():
        kept = model(x_adv).argmax(1) == pred
    if not bool(kept.any()):
        raise SystemExit(f"Every prediction changed under an attack of {args.eps}: use a smaller --eps.")
    common = dict(layer="features.conv1", iterations=args.decoy_iterations)

    def dance(seed: int, **layout: Any) -> DecoyEnhanced:
        return DecoyEnhanced(Gradient(), seed=seed, **common, **layout)

    layouts: dict[str, dict[str, Any]] = {
        "dance_full": {},
        "dance_coarse16": {"num_patches": 16},
        "dance_random16": {"num_patches": 16, "patch_sampling": "random"},
    }
    results: dict[str, dict[str, float]] = {}
    xs, ys, xa = x[kept], pred[kept], x_adv[kept]
    for name in ("gradient", *layouts):
        first = Gradient() if name == "gradient" else dance(0, **layouts[name])
        second = Gradient() if name == "gradient" else dance(1, **layouts[name])
        before = first(model, xs, ys).flatten(1)
        after = first(model, xa, ys).flatten(1)
        other_seed = second(model, xs, ys).flatten(1)
        unit_b = before / before.amax(1, keepdim=True).clamp_min(1e-12)
        unit_a = after / after.amax(1, keepdim=True).clamp_min(1e-12)
        rel = (unit_a - unit_b).norm(dim=1) / unit_b.norm(dim=1).clamp_min(1e-12)
        results[name] = {
            "spearman_attack": float(spearman_correlation(before, after).nanmean()),
            "spearman_seed": float(spearman_correlation(before, other_seed).nanmean()),
            "relative_change": float(rel.mean()),
        }
    print(f"\n{int(kept.sum())} of {args.samples} digits keep their prediction under an L-inf attack of {args.eps}")
    print(f"{'explainer':16s} {'Spearman attack':>16s} {'Spearman seed':>14s} {'rel. change':>12s}")
    for name, r in results.items():
        print(f"{name:16s} {r['spearman_attack']:16.4f} {r['spearman_seed']:14.4f} {r['relative_change']:12.4f}")
    return results


if __name__ == "__main__":
    run()
