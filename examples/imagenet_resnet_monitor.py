"""Monitor the saliency maps of an ImageNet-pretrained ResNet-18 on your images, logging to W&B.

    # evaluate the pretrained model (trainer.validate) on an ImageFolder (one sub-folder per class)
    python examples/imagenet_resnet_monitor.py --data path/to/images
    # fine-tune on DATA/train, validate on DATA/val, monitoring the maps every epoch
    python examples/imagenet_resnet_monitor.py --data path/to/data --epochs 3 --freeze-backbone
    # offline smoke run: random weights, random tensors
    python examples/imagenet_resnet_monitor.py --fake-data --random-weights --epochs 1

The weights are torchvision's ``ResNet18_Weights.DEFAULT``, downloaded once into the torch hub cache
(``$TORCH_HOME/hub/checkpoints``) when the network is reachable; offline, pass ``--weights-file`` to a
local copy or ``--random-weights``. The monitor explains a fixed probe set with gradient, integrated
gradients, SmoothGrad and Grad-CAM on ``net.layer4``, and scores the maps with deletion / insertion
AUC and Gini sparseness.

Targets: when the model's head matches the folder's classes (fine-tuning, or a 1000-class ImageNet
folder whose sorted class folders are the ImageNet synsets) the monitor explains the labels;
otherwise it explains the model's predictions (``--target`` overrides).

W&B runs offline unless you pass ``--online``, even when a W&B API key is configured: nothing is
uploaded by surprise (upload an offline run later with ``wandb sync``). ``--online`` needs an API key
(``WANDB_API_KEY`` or ``wandb login``), and ``WANDB_MODE=offline``/``disabled`` still keeps it offline.
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
from torch.utils.data import DataLoader
from torch.utils.data import Dataset
from torch.utils.data import TensorDataset

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# ------------------------------------------------------------------------------------------ model
def imagenet_state_dict() -> dict[str, Tensor]:
    """The ``ResNet18_Weights.DEFAULT`` state dict from the torch hub cache, downloaded if missing.

    Raises:
        RuntimeError: if the weights are not cached and cannot be downloaded; the message says how to
            get them.
    """
    from torchvision.models import ResNet18_Weights

    weights = ResNet18_Weights.DEFAULT
    cache = Path(torch.hub.get_dir()) / "checkpoints"
    try:
        return torch.hub.load_state_dict_from_url(weights.url, map_location="cpu", progress=True, check_hash=True)
    except (urllib.error.URLError, OSError, RuntimeError) as err:
        raise RuntimeError(
            f"The ImageNet weights of ResNet-18 ({weights.url.rsplit('/', 1)[-1]}) are not in the torch hub cache "
            f"under {cache} and could not be downloaded ({type(err).__name__}: {err}). Download them once with network "
            "access: `python -c \"import torchvision; torchvision.models.resnet18(weights='DEFAULT')\"`, or pass "
            "--weights-file to a local copy, or --random-weights."
        ) from err


class ResNetClassifier(pl.LightningModule):
    """torchvision's ResNet-18 as ``self.net`` (randomly initialized here; load weights into ``net``).

    Grad-CAM's usual layer is ``"net.layer4"`` (7×7 maps for 224×224 inputs).
    """

    def __init__(self, num_classes: int = 1000, lr: float = 1e-3, freeze_backbone: bool = False) -> None:
        super().__init__()
        self.save_hyperparameters()
        from torchvision.models import resnet18

        self.net = resnet18(weights=None, num_classes=num_classes)
        self.labels_match = True  # set False when the data's labels are not this head's classes
        if freeze_backbone:
            for name, p in self.net.named_parameters():
                p.requires_grad_(name.startswith("fc."))

    def load_backbone(self, state_dict: dict[str, Tensor]) -> None:
        """Load ImageNet weights; the classifier ``fc`` is kept from them only when it has 1000 outputs."""
        if self.net.fc.out_features != 1000:
            state_dict = {k: v for k, v in state_dict.items() if not k.startswith("fc.")}
        missing, unexpected = self.net.load_state_dict(state_dict, strict=False)
        if unexpected or any(not k.startswith("fc.") for k in missing):
            raise ValueError(f"Argument `state_dict` does not fit ResNet-18: missing {missing}, unexpected {unexpected}.")

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        logits = self(x)
        if self.labels_match:  # accuracy only when the labels are classes of this head
            self.log("val/loss", F.cross_entropy(logits, y), prog_bar=True)
            self.log("val/acc", (logits.argmax(1) == y).float().mean(), prog_bar=True)
        else:
            self.log("val/confidence", logits.softmax(1).amax(1).mean(), prog_bar=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW([p for p in self.parameters() if p.requires_grad], lr=self.hparams.lr)


# ------------------------------------------------------------------------------------------- data
def image_folders(data: Path, image_size: int, finetune: bool) -> tuple[Dataset | None, Dataset, list[str]]:
    """``(train, val, classes)``: ``DATA/train`` + ``DATA/val`` when both exist, else ``DATA`` alone as
    the validation set (``train`` None; fine-tuning then needs the split)."""
    from torchvision import datasets
    from torchvision import transforms

    normalize = transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)
    val_tf = transforms.Compose(
        [transforms.Resize(round(image_size * 256 / 224)), transforms.CenterCrop(image_size), transforms.ToTensor(), normalize]
    )
    train_tf = transforms.Compose(
        [transforms.RandomResizedCrop(image_size), transforms.RandomHorizontalFlip(), transforms.ToTensor(), normalize]
    )
    if not data.is_dir():
        raise ValueError(f"Argument `--data` must be a folder of class sub-folders, but {data} is not a folder.")
    split = (data / "train").is_dir() and (data / "val").is_dir()
    if finetune and not split:
        raise ValueError(f"Argument `--data`: fine-tuning (--epochs > 0) needs {data}/train and {data}/val class folders.")
    try:
        val = datasets.ImageFolder(str(data / "val" if split else data), transform=val_tf)
        train = datasets.ImageFolder(str(data / "train"), transform=train_tf) if split else None
    except FileNotFoundError as err:
        raise ValueError(f"Argument `--data` must hold one sub-folder of images per class: {err}") from err
    if train is not None and train.classes != val.classes:
        raise ValueError(f"Argument `--data`: {data}/train and {data}/val must have the same class folders.")
    return train, val, list(val.classes)


def fake_datasets(n: int, image_size: int, num_classes: int, seed: int = 0) -> tuple[TensorDataset, TensorDataset]:
    """Random normalized tensors (3, image_size, image_size) with random labels: n to train, n to validate."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2 * n, 3, image_size, image_size, generator=g)
    y = torch.randint(0, num_classes, (2 * n,), generator=g)
    return TensorDataset(x[:n], y[:n]), TensorDataset(x[n:], y[n:])


# ---------------------------------------------------------------------------------------- monitor
def build_monitor(num_samples: int, steps: int, target: str, class_names: list[str] | None, verbose: bool = True) -> Any:
    """Gradient, integrated gradients, SmoothGrad, Grad-CAM (``net.layer4``) × deletion, insertion, Gini."""
    from pl_saliency import DeletionAUC
    from pl_saliency import GradCAM
    from pl_saliency import Gradient
    from pl_saliency import InsertionAUC
    from pl_saliency import IntegratedGradients
    from pl_saliency import SaliencyMonitor
    from pl_saliency import SmoothGrad
    from pl_saliency.metrics import GiniSparseness

    return SaliencyMonitor(
        explainers=[
            Gradient(),
            IntegratedGradients(n_steps=16, internal_batch_size=64),
            SmoothGrad(nt_samples=8, stdevs=0.15, nt_samples_batch_size=8),
            GradCAM(layer="net.layer4"),
        ],
        metrics=[DeletionAUC(steps=steps, chunk_size=32), InsertionAUC(steps=steps, chunk_size=32), GiniSparseness()],
        num_samples=num_samples,
        batch_size=8,
        target=target,
        verbose=verbose,
        class_names=class_names,
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
    p.add_argument("--data", type=Path, help="ImageFolder (class sub-folders), or a folder holding train/ and val/ ones")
    p.add_argument("--fake-data", action="store_true", help="random tensors instead of --data (no files needed)")
    p.add_argument("--fake-size", type=int, default=16, help="fake images per split")
    p.add_argument("--num-classes", type=int, default=10, help="classes of the fake data")
    p.add_argument("--random-weights", action="store_true", help="no ImageNet weights (nothing downloaded)")
    p.add_argument("--weights-file", type=Path, help="a local copy of the ResNet-18 ImageNet state dict")
    p.add_argument("--epochs", type=int, default=0, help="0: evaluate with trainer.validate; > 0: fine-tune")
    p.add_argument("--freeze-backbone", action="store_true", help="fine-tune the classifier only")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--num-workers", type=int, default=4)
    p.add_argument("--limit-train-batches", type=float, default=1.0, help="fraction (<= 1) or number of batches")
    p.add_argument("--limit-val-batches", type=float, default=1.0)
    p.add_argument("--num-samples", type=int, default=16, help="probe set size")
    p.add_argument("--steps", type=int, default=32, help="deletion / insertion curve points")
    p.add_argument("--target", choices=("label", "prediction"), help="explain labels or predictions (default: see above)")
    p.add_argument("--accelerator", default="auto")
    p.add_argument("--project", default="pl_saliency-imagenet", help="W&B project")
    p.add_argument("--online", action="store_true", help="upload the run to W&B (needs an API key); without it W&B runs offline")
    p.add_argument("--offline", action="store_true", help="W&B offline (the default; kept for older command lines)")
    p.add_argument("--out", type=Path, default=Path("outputs/imagenet_resnet"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    if args.data is None and not args.fake_data:
        p.error("argument --data is required unless --fake-data is given")
    if args.random_weights and args.weights_file is not None:
        p.error("argument --weights-file cannot be combined with --random-weights")
    if args.online and args.offline:
        p.error("argument --online cannot be combined with --offline")
    if args.online and not wandb_key_configured():
        p.error("argument --online needs a W&B API key: set WANDB_API_KEY or run `wandb login`")
    return args


def _limit(value: float) -> int | float:
    return int(value) if value > 1 else value


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    from pytorch_lightning.loggers import CSVLogger
    from pytorch_lightning.loggers import WandbLogger
    from torchvision.models import ResNet18_Weights

    pl.seed_everything(args.seed, workers=True, verbose=False)
    finetune = args.epochs > 0
    if args.fake_data:
        train, val = fake_datasets(args.fake_size, args.image_size, args.num_classes, args.seed)
        classes = [str(c) for c in range(args.num_classes)]
    else:
        train, val, classes = image_folders(args.data, args.image_size, finetune)

    pretrained = not args.random_weights
    state = None
    if args.weights_file is not None:
        state = torch.load(args.weights_file, map_location="cpu", weights_only=True)
    elif pretrained:
        state = imagenet_state_dict()
    # evaluation keeps the ImageNet head; fine-tuning (or random weights) gets one output per class folder
    num_classes = 1000 if (state is not None and not finetune) else len(classes)
    model = ResNetClassifier(num_classes=num_classes, lr=args.lr, freeze_backbone=args.freeze_backbone)
    if state is not None:
        model.load_backbone(state)
    labels_match = num_classes == len(classes)
    target = args.target or ("label" if labels_match else "prediction")
    model.labels_match = labels_match
    if labels_match:
        class_names: list[str] | None = classes
    else:
        class_names = list(ResNet18_Weights.DEFAULT.meta["categories"]) if num_classes == 1000 else None
    if not labels_match:
        print(f"Note: the model has {num_classes} outputs and the data {len(classes)} classes: the monitor explains {target}s.")

    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    workers = 0 if args.fake_data else args.num_workers
    val_loader = DataLoader(val, batch_size=args.batch_size, num_workers=workers)
    monitor = build_monitor(args.num_samples, args.steps, target, class_names)
    offline = wandb_offline(online=args.online)
    wandb_logger = WandbLogger(project=args.project, save_dir=str(out), offline=offline, name="resnet18-monitor")
    csv_logger = CSVLogger(str(out), name="csv")
    trainer = pl.Trainer(
        max_epochs=max(1, args.epochs),
        accelerator=args.accelerator,
        devices=1,
        logger=[wandb_logger, csv_logger],
        callbacks=[monitor],
        limit_train_batches=_limit(args.limit_train_batches),
        limit_val_batches=_limit(args.limit_val_batches),
        enable_checkpointing=finetune,
        enable_progress_bar=not args.no_progress,
        enable_model_summary=False,
        log_every_n_steps=10,
    )
    results: Any
    if finetune:
        train_loader = DataLoader(
            train, batch_size=args.batch_size, shuffle=True, num_workers=workers,  # type: ignore[arg-type]
            generator=torch.Generator().manual_seed(args.seed),
        )  # fmt: skip
        trainer.fit(model, train_loader, val_loader)
        results = dict(monitor.last_scores)
    else:
        results = trainer.validate(model, val_loader)
    run_dir = Path(wandb_logger.experiment.dir).parent
    wandb_logger.experiment.finish()
    print(f"\nW&B run ({'offline' if offline else 'online'}): {run_dir}" + ("   (upload with `wandb sync <dir>`)" if offline else ""))
    print(f"CSV metrics: {Path(csv_logger.log_dir) / 'metrics.csv'}")
    return {
        "trainer": trainer,
        "model": model,
        "monitor": monitor,
        "scores": dict(monitor.last_scores),
        "results": results,
        "target": target,
        "run_dir": run_dir,
        "csv": Path(csv_logger.log_dir) / "metrics.csv",
    }


if __name__ == "__main__":
    try:
        main()
    except RuntimeError as err:
        if "could not be downloaded" not in str(err):
            raise
        raise SystemExit(f"error: {err}") from None
