"""Shared fixtures. Tests never reach the network: W&B runs offline under a tmp dir."""

from __future__ import annotations

import math
import os
import sys

import pytest
import torch
from torch import nn

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
torch.set_num_threads(1)


class TinyCNN(nn.Module):
    """conv(3→4) → ReLU → conv(4→6) → ReLU → global average → linear(6→5)."""

    def __init__(self, channels: int = 3, num_classes: int = 5) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 6, 3, padding=1)
        self.head = nn.Linear(6, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        return self.head(h.mean(dim=(2, 3)))


#: the region :class:`RegionModel` looks at: rows 3-6, columns 4-8, 4 x 5 = 20 of 144 pixels
ROWS, COLS = slice(3, 7), slice(4, 9)


class RegionModel(nn.Module):
    """Linear classifier (5 classes) of the pixels in rows 3-6, columns 4-8 of a (3, 12, 12) image."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.lin = nn.Linear(3 * 4 * 5, 5)
        with torch.no_grad():
            self.lin.weight.copy_(torch.randn(5, 60, generator=g))
            self.lin.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x[:, :, ROWS, COLS].flatten(1))


class NaNForFlagged(nn.Module):
    """Linear logits over ``features`` inputs (seeded); NaN for images holding a pixel above 5 (a flag)."""

    def __init__(self, features: int) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.lin = nn.Linear(features, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.lin(x.flatten(1))
        flagged = x.flatten(1).amax(dim=1) > 5
        return torch.where(flagged[:, None], torch.full_like(out, math.nan), out)


@pytest.fixture()
def problem():
    """(TinyCNN, 6 RGB 12×12 images, their maps, targets), seeded."""
    torch.manual_seed(0)
    model = TinyCNN().eval()
    g = torch.Generator().manual_seed(1)
    x = torch.rand(6, 3, 12, 12, generator=g)
    sal = torch.rand(6, 1, 12, 12, generator=g)
    y = torch.randint(0, 5, (6,), generator=g)
    return model, x, sal, y


@pytest.fixture
def tiny_cnn() -> TinyCNN:
    torch.manual_seed(0)
    return TinyCNN().eval()


@pytest.fixture
def rgb_batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.rand(4, 3, 12, 12, generator=g), torch.tensor([0, 1, 2, 4])


@pytest.fixture(autouse=True)
def _wandb_tmp(tmp_path, monkeypatch):
    """Every test's W&B files (runs, artifact staging, cache) go under its tmp dir."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_DATA_DIR", str(tmp_path / "wandb_data"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb_cache"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb_config"))
    yield
    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:  # never let a run leak into the next test
        wandb.run.finish()
