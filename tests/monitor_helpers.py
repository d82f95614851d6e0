"""A tiny LightningModule (TinyCNN on 1×8×8 images, 4 classes) and its seeded loaders, shared by the
monitor's schedule and bad-input tests."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from conftest import TinyCNN
from torch.utils.data import DataLoader
from torch.utils.data import TensorDataset


class LitTiny(pl.LightningModule):
    def __init__(self, lr: float = 0.05) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = TinyCNN(channels=1, num_classes=4)
        self.lr = lr

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, _):
        x, y = batch
        return F.cross_entropy(self(x), y)

    def validation_step(self, batch, _):
        x, y = batch
        self.log("val_loss", F.cross_entropy(self(x), y))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr)


def loader(n=8, seed=0):
    """``n`` seeded random 1×8×8 images with labels in 0..3, batches of 4."""
    g = torch.Generator().manual_seed(seed)
    return DataLoader(TensorDataset(torch.rand(n, 1, 8, 8, generator=g), torch.randint(0, 4, (n,), generator=g)), batch_size=4)
