"""Train a small ResNet-style CNN on CIFAR-10 with the saliency monitor attached, logging to W&B.

    python examples/cifar10_monitor.py --epochs 5 --data-root data/          # downloads CIFAR-10 once
    python examples/cifar10_monitor.py --fake-data --epochs 1                # random tensors, no download

After every validation epoch the monitor explains a fixed probe set of validation images with five
explainers (gradient, gradient × input, integrated gradients, SmoothGrad, Grad-CAM on ``layer3``) and
scores every map with deletion / insertion AUC, AOPC (MoRF) and ROAD (MoRF); the scores go to W&B
(with a heatmap table, overlays and curve charts), to a CSV log, and to the terminal.

W&B runs offline unless you pass ``--online``, even when a W&B API key is configured: nothing is
uploaded by surprise (upload an offline run later with ``wandb sync``). ``--online`` needs an API key
(``WANDB_API_KEY`` or ``wandb login``), and ``WANDB_MODE=offline``/``disabled`` still keeps it offline. The last checkpoint is written under ``--out``/checkpoints; score it offline with::

    pl-saliency score --checkpoint outputs/cifar10/checkpoints/last.ckpt \\
        --model-class examples/cifar10_monitor.py:CifarResNet --images my_pngs/ \\
        --mean 0.4914 0.4822 0.4465 --std 0.2470 0.2435 0.2616 --explainers gradient,gradcam:layer3
"""

from __future__ import annotations

import argparse
import netrc
import os
import urllib.error
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor
from torch import nn
from torch.utils.data import DataLoader
from torch.utils.data import Dataset
from torch.utils.data import TensorDataset

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


# ------------------------------------------------------------------------------------------- data
def cifar10_datasets(root: str | Path, download: bool = True) -> tuple[Dataset, Dataset]:
    """CIFAR-10 train (random crop + flip) and test splits, normalized with the CIFAR statistics.

    Raises:
        RuntimeError: if the data is not under ``root`` and cannot be downloaded (offline, or
            ``download=False``); the message says how to get it.
    """
    from torchvision import datasets
    from torchvision import transforms

    normalize = transforms.Normalize(CIFAR_MEAN, CIFAR_STD)
    train_tf = transforms.Compose(
        [transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(), transforms.ToTensor(), normalize]
    )
    val_tf = transforms.Compose([transforms.ToTensor(), normalize])
    root = Path(root)
    try:
        train = datasets.CIFAR10(str(root), train=True, transform=train_tf, download=download)
        val = datasets.CIFAR10(str(root), train=False, transform=val_tf, download=download)
    except (urllib.error.URLError, OSError, RuntimeError) as err:
        cause = f"{type(err).__name__}: {err}" if download else "downloading is disabled (--no-download)"
        raise RuntimeError(
            f"CIFAR-10 is not on disk under {root} and could not be downloaded ({cause}). Download it once with "
            f"network access: `python -c \"import torchvision; torchvision.datasets.CIFAR10('{root}', download=True)\"`, "
            "or pass --data-root to an existing copy (the folder holding cifar-10-batches-py), or run with --fake-data."
        ) from err
    return train, val


def fake_datasets(n_train: int = 256, n_val: int = 64, seed: int = 0) -> tuple[TensorDataset, TensorDataset]:
    """Random tensors of CIFAR shape (3, 32, 32), already "normalized", with random labels 0-9."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n_train + n_val, 3, 32, 32, generator=g)
    y = torch.randint(0, len(CLASSES), (n_train + n_val,), generator=g)
    return TensorDataset(x[:n_train], y[:n_train]), TensorDataset(x[n_train:], y[n_train:])


# ------------------------------------------------------------------------------------------ model
class BasicBlock(nn.Module):
    """conv3×3-BN-ReLU-conv3×3-BN plus a (projected) shortcut, then ReLU (He et al. 2016)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), nn.BatchNorm2d(out_channels)
            )

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class CifarResNet(pl.LightningModule):
    """A small ResNet for 32×32 images: ``stem`` → ``layer1`` (32×32) → ``layer2`` (16×16) →
    ``layer3`` (8×8, Grad-CAM's layer) → ``head``."""

    def __init__(self, num_classes: int = 10, width: int = 32, lr: float = 2e-3, weight_decay: float = 5e-4) -> None:
        super().__init__()
        self.save_hyperparameters()
        w = width
        self.stem = nn.Sequential(nn.Conv2d(3, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU())
        self.layer1 = BasicBlock(w, w)
        self.layer2 = BasicBlock(w, 2 * w, stride=2)
        self.layer3 = BasicBlock(2 * w, 4 * w, stride=2)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * w, num_classes))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.layer3(self.layer2(self.layer1(self.stem(x)))))

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        logits = self(x)
        self.log("val/loss", F.cross_entropy(logits, y), prog_bar=True)
        self.log("val/acc", (logits.argmax(1) == y).float().mean(), prog_bar=True)

    def configure_optimizers(self) -> Any:
        opt = torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        epochs = max(1, int(getattr(self.trainer, "max_epochs", 1) or 1))
        return {"optimizer": opt, "lr_scheduler": torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)}


# ---------------------------------------------------------------------------------------- monitor
def build_monitor(num_samples: int = 32, steps: int = 32, every_n_epochs: int = 1, verbose: bool = True) -> Any:
    """Five explainers × deletion, insertion, AOPC (MoRF) and ROAD (MoRF)."""
    from pl_saliency import DeletionAUC
    from pl_saliency import GradCAM
    from pl_saliency import Gradient
    from pl_saliency import GradientXInput
    from pl_saliency import InsertionAUC
    from pl_saliency import IntegratedGradients
    from pl_saliency import SaliencyMonitor
    from pl_saliency import SmoothGrad
    from pl_saliency.metrics import AOPCMorf
    from pl_saliency.metrics import ROADMorf

    return SaliencyMonitor(
        explainers=[
            Gradient(),
            GradientXInput(),
            IntegratedGradients(n_steps=16),
            SmoothGrad(nt_samples=8, stdevs=0.15),
            GradCAM(layer="layer3"),
        ],
        metrics=[
            DeletionAUC(steps=steps),
            InsertionAUC(steps=steps),
            AOPCMorf(steps=steps),
            ROADMorf(percentages=(10, 30, 50, 70, 90), generator=torch.Generator().manual_seed(0)),
        ],
        num_samples=num_samples,
        every_n_epochs=every_n_epochs,
        verbose=verbose,
        class_names=list(CLASSES),
    )


def wandb_key_configured() -> bool:
    """True when a W&B API key is configured (``WANDB_API_KEY`` or a ``~/.netrc`` entry for
    api.wandb.ai). Nothing is contacted."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def wandb_offline(online: bool = False) -> bool:
    """True (W&B runs offline) unless ``online`` was asked for explicitly (``--online``): a configured
    API key alone never makes a run upload. ``WANDB_MODE=offline``/``dryrun``/``disabled`` keeps even an
    ``--online`` run offline."""
    if not online:
        return True
    return os.environ.get("WANDB_MODE", "").lower() in ("offline", "dryrun", "disabled")


# ------------------------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data-root", type=Path, default=Path("data"), help="folder holding (or receiving) cifar-10-batches-py")
    p.add_argument("--no-download", action="store_true", help="never download; fail if the data is not on disk")
    p.add_argument("--fake-data", action="store_true", help="random tensors of CIFAR shape instead of CIFAR-10 (no download)")
    p.add_argument("--fake-size", type=int, default=256, help="number of fake training images (validation: a quarter)")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--width", type=int, default=32, help="channels of the first stage")
    p.add_argument("--num-workers", type=int, default=2)
    p.add_argument("--limit-train-batches", type=float, default=1.0, help="fraction (<= 1) or number of batches per epoch")
    p.add_argument("--limit-val-batches", type=float, default=1.0)
    p.add_argument("--num-samples", type=int, default=32, help="probe set size")
    p.add_argument("--steps", type=int, default=32, help="curve points of deletion / insertion / AOPC")
    p.add_argument("--every-n-epochs", type=int, default=1)
    p.add_argument("--accelerator", default="auto")
    p.add_argument("--project", default="pl_saliency-cifar10", help="W&B project")
    p.add_argument("--online", action="store_true", help="upload the run to W&B (needs an API key); without it W&B runs offline")
    p.add_argument("--offline", action="store_true", help="W&B offline (the default; kept for older command lines)")
    p.add_argument("--out", type=Path, default=Path("outputs/cifar10"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    check_online(p, args)
    return args


def check_online(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """``--online`` is explicit and needs an API key; it cannot be combined with ``--offline``."""
    if args.online and args.offline:
        parser.error("argument --online cannot be combined with --offline")
    if args.online and not wandb_key_configured():
        parser.error("argument --online needs a W&B API key: set WANDB_API_KEY or run `wandb login`")


def _limit(value: float) -> int | float:
    return int(value) if value > 1 else value


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    from pytorch_lightning.callbacks import ModelCheckpoint
    from pytorch_lightning.loggers import CSVLogger
    from pytorch_lightning.loggers import WandbLogger

    pl.seed_everything(args.seed, workers=True, verbose=False)
    if args.fake_data:
        train, val = fake_datasets(args.fake_size, max(1, args.fake_size // 4), args.seed)
    else:
        train, val = cifar10_datasets(args.data_root, download=not args.no_download)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    workers = 0 if args.fake_data else args.num_workers
    train_loader = DataLoader(
        train, batch_size=args.batch_size, shuffle=True, num_workers=workers,
        generator=torch.Generator().manual_seed(args.seed), persistent_workers=workers > 0,
    )  # fmt: skip
    val_loader = DataLoader(val, batch_size=args.batch_size, num_workers=workers, persistent_workers=workers > 0)

    model = CifarResNet(num_classes=len(CLASSES), width=args.width, lr=args.lr)
    monitor = build_monitor(args.num_samples, args.steps, args.every_n_epochs)
    offline = wandb_offline(online=args.online)
    wandb_logger = WandbLogger(project=args.project, save_dir=str(out), offline=offline, name="cifar10-monitor")
    csv_logger = CSVLogger(str(out), name="csv")
    checkpoint = ModelCheckpoint(dirpath=out / "checkpoints", save_last=True, save_top_k=0)
    trainer = pl.Trainer(
        max_epochs=args.epochs,
        accelerator=args.accelerator,
        devices=1,
        logger=[wandb_logger, csv_logger],
        callbacks=[monitor, checkpoint],
        limit_train_batches=_limit(args.limit_train_batches),
        limit_val_batches=_limit(args.limit_val_batches),
        enable_progress_bar=not args.no_progress,
        enable_model_summary=False,
        log_every_n_steps=10,
    )
    trainer.fit(model, train_loader, val_loader)
    run_dir = Path(wandb_logger.experiment.dir).parent
    wandb_logger.experiment.finish()
    print(f"\nW&B run ({'offline' if offline else 'online'}): {run_dir}" + ("   (upload with `wandb sync <dir>`)" if offline else ""))
    print(f"CSV metrics: {Path(csv_logger.log_dir) / 'metrics.csv'}")
    print(f"Checkpoint:  {out / 'checkpoints' / 'last.ckpt'}")
    return {
        "trainer": trainer,
        "model": model,
        "monitor": monitor,
        "scores": dict(monitor.last_scores),
        "run_dir": run_dir,
        "csv": Path(csv_logger.log_dir) / "metrics.csv",
        "checkpoint": out / "checkpoints" / "last.ckpt",
    }


if __name__ == "__main__":
    try:
        main()
    except RuntimeError as err:
        if "could not be downloaded" not in str(err):
            raise
        raise SystemExit(f"error: {err}") from None
