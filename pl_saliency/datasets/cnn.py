"""The demos' small CNN (a Lightning module). Importing this module imports PyTorch Lightning; it is
reached through ``pl_saliency.datasets.DigitsCNN`` (loaded on first use) or ``pl_saliency.demo``."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor
from torch import nn

from pl_saliency._keywords import keyword_only


class DigitsCNN(pl.LightningModule):
    """A small CNN with BatchNorm and dropout: ``features`` (three conv blocks) then ``classifier``.

    Grad-CAM's usual layer is ``"features.conv3"``, the last convolution (8×8 maps for 32×32 inputs).
    """

    @keyword_only
    def __init__(self, *, num_classes: int = 10, lr: float = 5e-3, channels: int = 1) -> None:
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
