"""The offline demo: a small CNN trained on scikit-learn's handwritten digits with the saliency
monitor attached, logging to an offline W&B run and a CSV file.

Run it with ``python examples/digits_demo.py`` (or ``python -m pl_saliency.demo``). Nothing is
downloaded: the digits ship inside scikit-learn. The data and the model live in
:mod:`pl_saliency.datasets` (``digits_datasets``, ``DigitsCNN``; re-exported here); this module holds
the demo's monitor, plots and entry point, and is not imported by ``import pl_saliency``.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader
from torch.utils.data import Dataset

from pl_saliency.datasets import digits_datasets
from pl_saliency.datasets import digits_tensors
from pl_saliency.datasets import localization_batch_transform
from pl_saliency.datasets import localization_datasets
from pl_saliency.datasets.cnn import DigitsCNN

__all__ = [
    "default_monitor",
    "DigitsCNN",
    "digits_datasets",
    "digits_tensors",
    "fit_with_monitor",
    "main",
    "prepare_offline_run",
    "save_plots",
]


def default_monitor(num_samples: int = 32, steps: int = 32, verbose: bool = True, localization: bool = False) -> Any:
    """The demo's monitor: five explainers and a random map × deletion/insertion, each read against its
    random-order control (the printed table leads with the gain ± 95 % CI and the win rate), plus
    localization metrics against the digits' boxes and masks with ``localization=True``.

    Deletion removes pixels with ``blur``, not ``zeros``: about 30 % of the digits' pixels are already
    0, so a ``zeros`` deletion spends its first steps removing nothing (no-op share measured in
    ``benchmarks/controls_results.md``; the monitor logs ``context/noop_fraction/<filler>``)."""
    from pl_saliency import DeletionAUC
    from pl_saliency import EnergyPointingGame
    from pl_saliency import GradCAM
    from pl_saliency import Gradient
    from pl_saliency import GradientXInput
    from pl_saliency import InsertionAUC
    from pl_saliency import IntegratedGradients
    from pl_saliency import PointingGame
    from pl_saliency import RandomMap
    from pl_saliency import RelevanceMassAccuracy
    from pl_saliency import SaliencyMonitor
    from pl_saliency import SmoothGrad

    metrics: dict[str, Any] = {"deletion_auc": DeletionAUC(steps=steps, filler="blur"), "insertion_auc": InsertionAUC(steps=steps)}
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
            RandomMap(seed=0),  # the control explainer: its gain sits at 0
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

    from pl_saliency.loggers import display_uint8
    from pl_saliency.loggers import overlay

    written = []
    curves = monitor.last_curves
    if curves:
        fig, axes = plt.subplots(1, len(curves), figsize=(5 * len(curves), 4), squeeze=False)
        for ax, (m, by_expl) in zip(axes[0], curves.items()):
            x = monitor.last_grid.curve_x[m]
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


def prepare_offline_run(out: Path | str) -> Path:
    """Set up a demo process: W&B offline and silent (unless set already), at most 2 CPU threads, the
    output folder created, and W&B's data dir (logged tables) beside the runs for `wandb sync`."""
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("WANDB_SILENT", "true")
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    out_dir = Path(out).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("WANDB_DATA_DIR", str(out_dir / "wandb_data"))
    return out_dir


def fit_with_monitor(
    model: pl.LightningModule,
    train: Dataset,
    val: Dataset,
    monitor: Any,
    *,
    out_dir: Path,
    project: str,
    name: str,
    csv_name: str,
    epochs: int,
    seed: int = 0,
    batch_size: int = 32,
) -> dict[str, Any]:
    """Train ``model`` on CPU with ``monitor`` attached, logging to an offline W&B run (under
    ``out_dir/wandb``) and a CSV file (``out_dir/csv_name``); the W&B run is finished on return.

    Returns ``{"run_dir": offline W&B run folder, "csv": metrics.csv path, "trainer": the trainer}``."""
    from pytorch_lightning.loggers import CSVLogger
    from pytorch_lightning.loggers import WandbLogger

    wandb_logger = WandbLogger(project=project, save_dir=str(out_dir), offline=True, name=name)
    csv_logger = CSVLogger(str(out_dir), name=csv_name)
    trainer = pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        devices=1,
        logger=[wandb_logger, csv_logger],
        callbacks=[monitor],
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=False,
        deterministic=True,
        log_every_n_steps=10,
        num_sanity_val_steps=0,
    )
    try:
        trainer.fit(
            model,
            DataLoader(train, batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed)),
            DataLoader(val, batch_size=128),
        )
        run_dir = Path(wandb_logger.experiment.dir).parent
    finally:
        wandb_logger.experiment.finish()
    return {"run_dir": run_dir, "csv": Path(csv_logger.log_dir) / "metrics.csv", "trainer": trainer}


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

    out_dir = prepare_offline_run(args.out)
    started = time.perf_counter()

    pl.seed_everything(args.seed, workers=True, verbose=False)
    if args.localization:
        train, val = localization_datasets(canvas_size=max(48, args.size), digit_size=16)
    else:
        train, val = digits_datasets(args.size)
    model = DigitsCNN()
    monitor = default_monitor(num_samples=args.num_samples, steps=args.steps, localization=args.localization)
    name = "digits-localization-demo" if args.localization else "digits-demo"
    run = fit_with_monitor(
        model, train, val, monitor, out_dir=out_dir, project="pl_saliency-demo", name=name, csv_name="csv",
        epochs=args.epochs, seed=args.seed,
    )  # fmt: skip
    run_dir = run["run_dir"]
    plots = save_plots(monitor, model, out_dir)
    elapsed = time.perf_counter() - started
    print("\nDone in {:.0f} s.".format(elapsed))
    print(f"Offline W&B run:  {run_dir}   (upload later with `wandb sync {run_dir}`)")
    print(f"CSV metrics:      {run['csv']}")
    for p in plots:
        print(f"Plot:             {p}")
    return {"run_dir": run_dir, "csv": run["csv"], "plots": plots, "monitor": monitor}


if __name__ == "__main__":
    main()
