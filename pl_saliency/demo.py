"""The offline demo: a small CNN trained on scikit-learn's handwritten digits with the saliency
monitor attached, logging to an offline W&B run and a CSV file.

Run it with ``python examples/digits_demo.py`` (or ``python -m pl_saliency.demo``). Nothing is
downloaded: the digits ship inside scikit-learn. The pieces (``digits_datasets``, ``DigitsCNN``)
are reused by the test suite.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset


def digits_tensors(size: int = 32) -> tuple[Tensor, Tensor]:
    """All 1,797 digits as (N, 1, size, size) floats in [0, 1] (bilinear upsampling of the 8×8
    originals, values 0–16 scaled by 1/16) and (N,) int64 labels."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as err:
        raise ModuleNotFoundError("The digits demo needs scikit-learn: `pip install scikit-learn`.") from err
    if size < 8:
        raise ValueError(f"Argument `size` must be at least 8, but got {size}.")
    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    if size != 8:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 1)
    return x, torch.tensor(digits.target, dtype=torch.long)


def digits_datasets(size: int = 32, val_fraction: float = 0.2, seed: int = 0) -> tuple[TensorDataset, TensorDataset]:
    """A fixed train/validation split of the digits (a seeded permutation, independent of the global RNG)."""
    x, y = digits_tensors(size)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    n_val = int(round(len(x) * val_fraction))
    val, train = perm[:n_val], perm[n_val:]
    return TensorDataset(x[train], y[train]), TensorDataset(x[val], y[val])


class DigitsCNN(pl.LightningModule):
    """A small CNN with BatchNorm and dropout: ``features`` (three conv blocks) then ``classifier``.

    Grad-CAM's usual layer is ``"features.conv3"``, the last convolution (8×8 maps for 32×32 inputs).
    """

    def __init__(self, num_classes: int = 10, lr: float = 5e-3, channels: int = 1) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.features = nn.Sequential()
        self.features.add_module("conv1", nn.Conv2d(channels, 16, 3, padding=1))
        self.features.add_module("bn1", nn.BatchNorm2d(16))
        self.features.add_module("relu1", nn.ReLU())
        self.features.add_module("pool1", nn.MaxPool2d(2))
        self.features.add_module("conv2", nn.Conv2d(16, 32, 3, padding=1))
        self.features.add_module("bn2", nn.BatchNorm2d(32))
        self.features.add_module("relu2", nn.ReLU())
        self.features.add_module("pool2", nn.MaxPool2d(2))
        self.features.add_module("conv3", nn.Conv2d(32, 64, 3, padding=1))
        self.features.add_module("relu3", nn.ReLU())
        self.classifier = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(64, num_classes))

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        x, y = batch[0], batch[1]  # a third item (localization ground truth) is ignored
        loss = F.cross_entropy(self(x), y)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch[0], batch[1]
        logits = self(x)
        self.log("val/loss", F.cross_entropy(logits, y), prog_bar=True)
        self.log("val/acc", (logits.argmax(1) == y).float().mean(), prog_bar=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)


def default_monitor(num_samples: int = 32, steps: int = 32, verbose: bool = True, localization: bool = False) -> Any:
    """The demo's monitor: five explainers × deletion/insertion (+ localization metrics against the
    digits' boxes and masks with ``localization=True``)."""
    from pl_saliency import (
        DeletionAUC,
        EnergyPointingGame,
        GradCAM,
        Gradient,
        GradientXInput,
        InsertionAUC,
        IntegratedGradients,
        PointingGame,
        RelevanceMassAccuracy,
        SaliencyMonitor,
        SmoothGrad,
    )
    from pl_saliency.datasets import localization_batch_transform

    metrics: dict[str, Any] = {"deletion_auc": DeletionAUC(steps=steps), "insertion_auc": InsertionAUC(steps=steps)}
    if localization:
        metrics.update(
            pointing_game=PointingGame(tolerance=2.0),
            energy_pointing_game=EnergyPointingGame(),
            relevance_mass=RelevanceMassAccuracy(),
        )
    return SaliencyMonitor(
        explainers=[
            Gradient(),
            GradientXInput(),
            IntegratedGradients(n_steps=16),
            SmoothGrad(nt_samples=8, stdevs=0.1),
            GradCAM(layer="features.conv3"),
        ],
        metrics=metrics,
        num_samples=num_samples,
        verbose=verbose,
        class_names=[str(i) for i in range(10)],
        batch_transform=localization_batch_transform if localization else None,
    )


def save_plots(monitor: Any, model: nn.Module, out_dir: Path) -> list[Path]:
    """Write the last epoch's mean curves and an overlay grid of the probe set as PNG files."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pl_saliency.loggers import display_uint8, overlay

    written = []
    curves = monitor.last_curves
    if curves:
        fig, axes = plt.subplots(1, len(curves), figsize=(5 * len(curves), 4), squeeze=False)
        for ax, (m, by_expl) in zip(axes[0], curves.items()):
            x = monitor._metrics[next(iter(by_expl))][m].curve_x()
            for e, c in by_expl.items():
                ax.plot(x.numpy(), c.numpy(), label=e)
            ax.set_title(m)
            ax.set_xlabel("fraction of pixels " + ("inserted" if "insertion" in m else "removed"))
            ax.set_ylabel("p(target)")
            ax.legend(fontsize=8)
        path = out_dir / "curves.png"
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    inputs, labels = monitor.probe
    if inputs is not None:
        k = min(8, len(inputs))
        names = list(monitor.explainers)
        fig, axes = plt.subplots(k, len(names) + 1, figsize=(1.6 * (len(names) + 1), 1.6 * k), squeeze=False)
        x, y = inputs[:k], labels[:k]
        for j, name in enumerate(names):
            maps = monitor.explainers[name](model, x, y)
            for i in range(k):
                axes[i, j + 1].imshow(overlay(x[i], maps[i]).numpy())
                if i == 0:
                    axes[i, j + 1].set_title(name, fontsize=7)
        for i in range(k):
            axes[i, 0].imshow(display_uint8(x[i]).numpy())
            axes[i, 0].set_ylabel(f"y={int(y[i])}")
        for ax in axes.flat:
            ax.set_xticks([])
            ax.set_yticks([])
        path = out_dir / "overlays.png"
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--size", type=int, default=32, help="image side after upsampling (>= 32 recommended)")
    parser.add_argument("--num-samples", type=int, default=32, help="probe set size")
    parser.add_argument("--steps", type=int, default=32, help="deletion/insertion curve points")
    parser.add_argument("--out", type=Path, default=Path("outputs/demo"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--localization",
        action="store_true",
        help="digits at random positions on a 48x48 canvas, with boxes and masks: adds pointing game, energy "
        "pointing game and relevance mass to the scores",
    )
    args = parser.parse_args(argv)

    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("WANDB_SILENT", "true")
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    out_dir = args.out.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    # W&B keeps logged tables as run artifacts in its data dir; keep them beside the run for `wandb sync`
    os.environ.setdefault("WANDB_DATA_DIR", str(out_dir / "wandb_data"))
    started = time.perf_counter()

    from pytorch_lightning.loggers import CSVLogger, WandbLogger

    pl.seed_everything(args.seed, workers=True, verbose=False)
    if args.localization:
        from pl_saliency.datasets import localization_datasets

        train, val = localization_datasets(canvas_size=max(48, args.size), digit_size=16)
    else:
        train, val = digits_datasets(args.size)
    model = DigitsCNN()
    monitor = default_monitor(num_samples=args.num_samples, steps=args.steps, localization=args.localization)
    name = "digits-localization-demo" if args.localization else "digits-demo"
    wandb_logger = WandbLogger(project="pl_saliency-demo", save_dir=str(out_dir), offline=True, name=name)
    csv_logger = CSVLogger(str(out_dir), name="csv")
    trainer = pl.Trainer(
        max_epochs=args.epochs,
        accelerator="cpu",
        devices=1,
        logger=[wandb_logger, csv_logger],
        callbacks=[monitor],
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=False,
        deterministic=True,
        log_every_n_steps=10,
    )
    trainer.fit(
        model,
        DataLoader(train, batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(args.seed)),
        DataLoader(val, batch_size=128),
    )
    run_dir = Path(wandb_logger.experiment.dir).parent
    wandb_logger.experiment.finish()
    plots = save_plots(monitor, model, out_dir)
    elapsed = time.perf_counter() - started
    print("\nDone in {:.0f} s.".format(elapsed))
    print(f"Offline W&B run:  {run_dir}   (upload later with `wandb sync {run_dir}`)")
    print(f"CSV metrics:      {Path(csv_logger.log_dir) / 'metrics.csv'}")
    for p in plots:
        print(f"Plot:             {p}")
    return {"run_dir": run_dir, "csv": Path(csv_logger.log_dir) / "metrics.csv", "plots": plots, "monitor": monitor}


if __name__ == "__main__":
    main()
