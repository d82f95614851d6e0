"""Generative feature removal, end to end and offline (Agarwal & Nguyen, ACCV 2020, on digits).

1. Train the digits classifier (:class:`pl_saliency.demo.DigitsCNN`) for a few epochs.
2. Train a tiny convolutional inpainter (:class:`pl_saliency.inpainting.TinyInpainter`) on the same
   training digits, with random rectangular holes (well under a minute on 2 CPU cores).
3. Compare removal operators on held-out digits with held-out holes: zeros, blur, OpenCV's Telea and the
   inpainter (mean absolute error over the holes).
4. Explain validation digits with sliding-patch occlusion and meaningful perturbation, each with its
   classical removal (gray = zeros / blur) and with the inpainter (the "-G" variants), and score the
   maps with deletion AUC and the Saliency Metric.
5. Hyper-parameter robustness of occlusion over patch sizes, per removal operator.

Run ``python examples/inpainter_demo.py [--out DIR]``; ``--quick`` runs a seconds-long smoke version.
Nothing is downloaded (the digits ship inside scikit-learn) and no weights are shipped: the
inpainter is trained here. With a real inpainter (LaMa, DeepFill), wrap it as a module
``forward(inputs, mask)`` and pass ``InpainterFill(module)`` instead; see docs/removal_explainers.md.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from pl_saliency.analysis import hyperparameter_robustness
from pl_saliency.demo import DigitsCNN
from pl_saliency.demo import digits_datasets
from pl_saliency.explainers.removal import MeaningfulPerturbation
from pl_saliency.explainers.removal import SlidingPatchOcclusion
from pl_saliency.functional import deletion_auc
from pl_saliency.functional import saliency_metric
from pl_saliency.inpainting import fill_error
from pl_saliency.inpainting import random_holes
from pl_saliency.inpainting import train_inpainter
from pl_saliency.perturbation.fillers import Blur
from pl_saliency.perturbation.imputation import InpainterFill


def train_classifier(x: torch.Tensor, y: torch.Tensor, epochs: int = 8, batch_size: int = 64, seed: int = 0) -> DigitsCNN:
    """A plain training loop (no Trainer needed): Adam, cross-entropy, then one pass re-estimating the
    BatchNorm statistics; seeded, global RNG forked."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = DigitsCNN()
    opt = model.configure_optimizers()
    g = torch.Generator().manual_seed(seed)
    model.train()
    with torch.random.fork_rng():  # dropout draws from the global RNG
        torch.manual_seed(seed)
        for _ in range(epochs):
            for idx in torch.randperm(len(x), generator=g).split(batch_size):
                loss = F.cross_entropy(model(x[idx]), y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
    # Re-estimate the BatchNorm statistics of the final weights (a few epochs at a high learning rate
    # leave the running averages behind the weights, which hurts eval-mode accuracy).
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the pass below
    with torch.no_grad(), torch.random.fork_rng():  # train mode: dropout would draw from the global RNG
        for idx in torch.arange(len(x)).split(256):
            model(x[idx])
    for bn in bns:
        bn.momentum = 0.1
    opt.zero_grad(set_to_none=True)
    return model.eval()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("inpainter_demo_out"), help="where to write results.json and figures")
    parser.add_argument("--size", type=int, default=32, help="image side (digits are upsampled from 8x8)")
    parser.add_argument("--epochs", type=int, default=8, help="classifier epochs")
    parser.add_argument("--inpainter-steps", type=int, default=400)
    parser.add_argument(
        "--time-limit", type=float, default=50.0,
        help="seconds of inpainter training at most (0: none; with a limit, a loaded machine trains fewer steps)",
    )  # fmt: skip
    parser.add_argument("--samples", type=int, default=8, help="validation digits to explain")
    parser.add_argument("--mp-iterations", type=int, default=150)
    parser.add_argument(
        "--mp-l1", type=float, default=1e-2,
        help="MP's L1 weight; the seed code's 1e-4 (for 28x28 masks on 224² photos) lets MP delete almost the whole digit",
    )  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="tiny settings: a smoke test in seconds")
    args = parser.parse_args(argv)
    if args.quick:
        args.size, args.epochs, args.inpainter_steps, args.samples, args.mp_iterations = 16, 2, 30, 2, 10
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    results: dict[str, Any] = {}

    train, val = digits_datasets(size=args.size)
    (xt, yt), (xv, yv) = train.tensors, val.tensors
    model = train_classifier(xt, yt, epochs=args.epochs)
    with torch.no_grad():
        acc = float((model(xv).argmax(1) == yv).float().mean())
    results["classifier_val_accuracy"] = acc
    print(f"[{time.perf_counter() - t0:5.1f} s] classifier: validation accuracy {acc:.3f}")

    inpainter = train_inpainter(xt, steps=args.inpainter_steps, time_limit=args.time_limit or None, log_every=max(1, args.inpainter_steps // 4))
    inpaint_fill = InpainterFill(inpainter, name="tiny_inpainter")
    print(f"[{time.perf_counter() - t0:5.1f} s] inpainter trained")

    holes = random_holes(len(xv), (args.size, args.size), torch.Generator().manual_seed(123))
    fillers = {"zeros": "zeros", "blur": Blur(sigma=2.0), "telea": "telea", "inpainter": inpaint_fill}
    results["fill_error"] = {name: fill_error(f, xv, holes) for name, f in fillers.items()}
    print("hole-filling error (mean |fill - truth| on held-out holes):")
    for name, err in results["fill_error"].items():
        note = "  (blurs the original image: the removed pixels leak into the fill)" if name == "blur" else ""
        print(f"  {name:>10s}  {err:.4f}{note}")

    with torch.no_grad():
        right = (model(xv).argmax(1) == yv).nonzero().flatten()[: args.samples]
    x, y = xv[right], yv[right]
    patch = max(3, args.size // 4 + 1)
    mask_size = max(2, args.size // 4)
    explainers = {
        "SP": SlidingPatchOcclusion(patch_size=patch, stride=2),
        "SP-G": SlidingPatchOcclusion.generative(inpainter, patch_size=patch, stride=2),
        "MP": MeaningfulPerturbation(mask_size=mask_size, iterations=args.mp_iterations, l1_coeff=args.mp_l1, filler=Blur(sigma=2.0)),
        "MP-G": MeaningfulPerturbation.generative(inpainter, mask_size=mask_size, iterations=args.mp_iterations, l1_coeff=args.mp_l1),
    }
    maps: dict[str, torch.Tensor] = {}
    results["scores"] = {}
    print(f"{'explainer':>10s}  {'deletion AUC (zeros) ↓':>22s}  {'deletion AUC (inpainter) ↓':>26s}  {'Saliency Metric ↓':>17s}")
    for name, explainer in explainers.items():
        sal = explainer(model, x, y)
        maps[name] = sal
        scores = {
            "deletion_auc_zeros": float(deletion_auc(model, x, sal, y, steps=16)),
            "deletion_auc_inpainter": float(deletion_auc(model, x, sal, y, steps=16, filler=inpaint_fill)),
            "saliency_metric": float(saliency_metric(model, x, sal, y)),
        }
        results["scores"][name] = scores
        print(f"{name:>10s}  {scores['deletion_auc_zeros']:22.3f}  {scores['deletion_auc_inpainter']:26.3f}  {scores['saliency_metric']:17.3f}")
    print(f"[{time.perf_counter() - t0:5.1f} s] explained {len(x)} digits")

    sizes = [max(3, args.size // 8 + 1), patch, min(args.size, 3 * args.size // 8 + 1)]
    report = hyperparameter_robustness(
        model, x, y, SlidingPatchOcclusion, "patch_size", sizes, fillers={"zeros": "zeros", "inpainter": inpaint_fill},
        fixed={"stride": 2}, ssim_kernel_size=min(11, args.size // 2 * 2 - 1),
    )  # fmt: skip
    results["occlusion_robustness"] = {"patch_sizes": sizes, **report.scores}
    print(f"occlusion robustness over patch sizes {sizes} (mean pairwise similarity, higher = more robust):")
    for f in report.fillers:
        print(f"  {f:>10s}  " + "  ".join(f"{s} {v:.3f}" for s, v in report.scores[f].items()))

    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    try:
        _save_figure(args.out / "maps.png", x, holes[right], xv[right], inpainter, maps)
    except ImportError:  # pragma: no cover - matplotlib is optional
        pass
    print(f"[{time.perf_counter() - t0:5.1f} s] wrote {args.out / 'results.json'}")
    return results


def _save_figure(path: Path, x: torch.Tensor, holes: torch.Tensor, originals: torch.Tensor, inpainter: Any, maps: dict[str, torch.Tensor]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pl_saliency.inpainting import inpaint

    filled = inpaint(inpainter, originals, holes)
    k = min(4, len(x))
    cols = ["image", "holes", "inpainted", *maps]
    fig, axes = plt.subplots(k, len(cols), figsize=(1.7 * len(cols), 1.7 * k), squeeze=False)
    for i in range(k):
        panels = [x[i, 0], torch.where(holes[i, 0], 0.5, originals[i, 0]), filled[i, 0], *(m[i, 0] for m in maps.values())]
        for j, (title, img) in enumerate(zip(cols, panels)):
            ax = axes[i, j]
            ax.imshow(img.numpy(), cmap="gray" if j < 3 else "magma")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
