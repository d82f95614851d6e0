"""LightningCLI with the saliency monitor configured from YAML, on scikit-learn's digits (offline).

    python examples/configs/digits_cli.py fit --config examples/configs/saliency_monitor.yaml
    python examples/configs/digits_cli.py fit --config examples/configs/saliency_monitor.yaml --print_config

The model is :class:`pl_saliency.demo.DigitsCNN`; :class:`DigitsDataModule` wraps
:func:`pl_saliency.demo.digits_datasets`. Needs ``pip install "jsonargparse[signatures]" scikit-learn``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.cli import LightningCLI
from torch.utils.data import DataLoader

from pl_saliency.demo import DigitsCNN
from pl_saliency.demo import digits_datasets


class DigitsDataModule(pl.LightningDataModule):
    """The digits' fixed train/validation split (``digits_datasets``) as a DataModule."""

    def __init__(self, size: int = 32, batch_size: int = 64, val_fraction: float = 0.2, seed: int = 0) -> None:
        super().__init__()
        self.size, self.batch_size, self.val_fraction, self.seed = size, batch_size, val_fraction, seed

    def setup(self, stage: str) -> None:
        self.train_set, self.val_set = digits_datasets(self.size, self.val_fraction, self.seed)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=self.batch_size)


CONFIG = Path(__file__).with_name("saliency_monitor.yaml")


def main(args: list[str] | None = None) -> LightningCLI:
    """Run the CLI (``args`` as on the command line; default ``sys.argv[1:]``)."""
    return LightningCLI(DigitsCNN, DigitsDataModule, args=args, save_config_kwargs={"overwrite": True})


if __name__ == "__main__":
    main(sys.argv[1:] or ["fit", "--config", str(CONFIG)])
