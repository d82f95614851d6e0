"""Multi-label classifiers: sigmoid scores and one probe row per (sample, positive label)."""

from __future__ import annotations

import warnings

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import CSVLogger
from torch import nn
from torch.utils.data import DataLoader
from torch.utils.data import TensorDataset

from pl_saliency import DeletionAUC
from pl_saliency import Gradient
from pl_saliency import InsertionAUC
from pl_saliency import SaliencyMonitor
from pl_saliency.functional import deletion_auc
from pl_saliency.multilabel import multilabel_batch_transform
from pl_saliency.multilabel import multilabel_rows
from pl_saliency.utils import auc


def test_sigmoid_scores_by_hand():
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3, bias=False))
    model[1].weight.data.copy_(torch.tensor([[1.0, 1.0, 1.0, 1.0], [0.5, 0.0, 0.0, 0.0], [2.0, 2.0, 2.0, 2.0]]))
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    # label 0 with the exact map: logits 10, 6, 3, 1, 0 -> their sigmoids (not a softmax over the labels)
    got, curve = deletion_auc(model, x, x.clone(), torch.tensor([0]), steps=4, score="sigmoid", return_curves=True)
    expected = torch.tensor([10.0, 6.0, 3.0, 1.0, 0.0]).sigmoid()
    torch.testing.assert_close(curve[0], expected)
    assert float(got) == pytest.approx(float(auc(expected.view(1, -1))), abs=1e-6)
    # the other labels' logits do not move a label's score (they would under softmax)
    other = nn.Sequential(nn.Flatten(), nn.Linear(4, 3, bias=False))
    other[1].weight.data.copy_(model[1].weight.data)
    other[1].weight.data[2] *= 10
    assert float(deletion_auc(other, x, x.clone(), torch.tensor([0]), steps=4, score="sigmoid")) == pytest.approx(float(got))
    assert float(deletion_auc(other, x, x.clone(), torch.tensor([0]), steps=4)) != pytest.approx(float(deletion_auc(model, x, x.clone(), torch.tensor([0]), steps=4)))


def test_rows_expand_positive_labels_and_check_inputs():
    x = torch.rand(3, 1, 4, 4)
    rows, labels, extras = multilabel_rows(x, torch.tensor([[1, 1, 0], [0, 0, 0], [0, 0, 1]]), {"masks": torch.ones(3, 1, 4, 4)})
    assert labels.tolist() == [0, 1, 2] and extras["source_index"].tolist() == [0, 0, 2]
    assert torch.equal(rows[2], x[2]) and extras["masks"].shape[0] == 3
    with pytest.raises(ValueError, match="`targets` must be a multi-hot tensor of shape"):
        multilabel_rows(x, torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="`targets` must hold 0/1"):
        multilabel_rows(x, torch.full((3, 2), 0.5))


class MultiLabelNet(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 3))

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, _):
        x, y = batch
        return nn.functional.binary_cross_entropy_with_logits(self(x), y.float())

    def validation_step(self, batch, _):
        x, y = batch
        self.log("val/loss", nn.functional.binary_cross_entropy_with_logits(self(x), y.float()))

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-2)


def test_monitor_scores_a_multilabel_model_with_sigmoid(tmp_path):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(64, 1, 8, 8, generator=g)
    y = torch.stack([x[:, 0, :4].mean((1, 2)) > 0.5, x[:, 0, 4:].mean((1, 2)) > 0.5, x[:, 0, :, :4].mean((1, 2)) > 0.5], 1).long()
    data = DataLoader(TensorDataset(x, y), batch_size=16)
    monitor = SaliencyMonitor(
        [Gradient()], [DeletionAUC(score="sigmoid", steps=8, filler="mean"), InsertionAUC(score="sigmoid", steps=8)],
        num_samples=12, batch_transform=multilabel_batch_transform, log_images=False,
    )  # fmt: skip
    trainer = pl.Trainer(max_epochs=2, accelerator="cpu", logger=CSVLogger(str(tmp_path)), callbacks=[monitor],
                         enable_progress_bar=False, enable_checkpointing=False, enable_model_summary=False)  # fmt: skip
    pl.seed_everything(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(MultiLabelNet(), data, data)
    probe_x, probe_y = monitor.probe
    assert probe_x.shape[0] == 12 and set(probe_y.tolist()) <= {0, 1, 2}  # rows are (sample, positive label)
    assert len(monitor.history) == 2
    scores = monitor.history[-1]["scores"]
    for key in ("gradient/deletion_auc", "gradient/insertion_auc", "gradient/deletion_auc/gain"):
        assert scores[key] is not None, key
    assert 0.0 <= scores["gradient/insertion_auc"] <= 1.0
