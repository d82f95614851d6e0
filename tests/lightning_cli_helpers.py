"""A tiny LightningModule and DataModule for the LightningCLI tests (random 1×8×8 images, 3 classes)."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor
from torch import nn
from torch.utils.data import DataLoader
from torch.utils.data import TensorDataset


class TinyClassifier(pl.LightningModule):
    """conv1 → ReLU → conv2 → ReLU → global mean → linear; Grad-CAM's layer is ``"conv2"``."""

    def __init__(self, num_classes: int = 3, lr: float = 0.05) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 8, 3, padding=1)
        self.head = nn.Linear(8, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(torch.relu(self.conv2(torch.relu(self.conv1(x)))).mean(dim=(2, 3)))

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        return F.cross_entropy(self(batch[0]), batch[1])

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self.log("val/loss", F.cross_entropy(self(batch[0]), batch[1]))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


class TinyDataModule(pl.LightningDataModule):
    """32 random images (seeded generator, not the global RNG) with random labels; the same set for
    training and validation."""

    def __init__(self, size: int = 8, num_classes: int = 3, batch_size: int = 8, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.x = torch.rand(32, 1, size, size, generator=g)
        self.y = torch.randint(0, num_classes, (32,), generator=g)
        self.batch_size = batch_size

    def train_dataloader(self) -> DataLoader:
        return DataLoader(TensorDataset(self.x, self.y), batch_size=self.batch_size)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(TensorDataset(self.x, self.y), batch_size=self.batch_size)
