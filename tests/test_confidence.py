"""Average Drop and Increase in Confidence: hand computations, a step-by-step port of the coherence
paper's ``evaluate.average_drop_confidence_increase`` (with their ``utils.normalize`` and the binarized
variant), the Metric classes against the functional ones, NaN handling and argument errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.testing import assert_close

from pl_saliency.functional.confidence import average_drop
from pl_saliency.functional.confidence import explanation_maps
from pl_saliency.functional.confidence import increase_in_confidence
from pl_saliency.metrics.confidence import AverageDrop
from pl_saliency.metrics.confidence import IncreaseInConfidence
from pl_saliency.perturbation.fillers import Blur


class PixelModel(nn.Module):
    """Logits (N, 2): class 0 = 4 · pixel (0, 0) − 2 · pixel (1, 1); class 1 = 0."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = 4 * x[:, 0, 0, 0] - 2 * x[:, 0, 1, 1]
        return torch.stack([z, torch.zeros_like(z)], 1)


def p0(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))  # softmax probability of class 0 against a 0 logit


def test_drop_and_increase_by_hand():
    x = torch.zeros(2, 1, 2, 2)
    x[:, 0, 0, 0], x[:, 0, 1, 1] = 1.0, 1.0
    sal = torch.zeros(2, 1, 2, 2)
    sal[0, 0, 0, 0], sal[0, 0, 1, 1] = 1.0, 0.25  # keeps the evidence, dims the counter-evidence
    sal[1, 0, 0, 0], sal[1, 0, 1, 1] = 0.5, 1.0  # dims the evidence
    y = torch.tensor([0, 0])
    base = p0(4 - 2)
    o0, o1 = p0(4 * 1.0 - 2 * 0.25), p0(4 * 0.5 - 2 * 1.0)
    drops = average_drop(PixelModel(), x, sal, y, normalize="none", reduction="none")
    assert_close(drops, torch.tensor([0.0, (base - o1) / base], dtype=torch.float64))
    inc = increase_in_confidence(PixelModel(), x, sal, y, normalize="none", reduction="none")
    assert inc.tolist() == [1.0, 0.0] and o0 > base
    assert_close(average_drop(PixelModel(), x, sal, y, normalize="none"), torch.tensor((base - o1) / base / 2, dtype=torch.float64))


def authors_reference(saliency: np.ndarray, net: nn.Module, images: torch.Tensor, labels: torch.Tensor, percentile: float | None):
    """Vandersmissen & Oramas: ``utils.normalize`` (utils.py l. 217-220) per map as ``main.py`` l. 98,
    then ``evaluate.average_drop_confidence_increase`` (saliency_methods/evaluate.py l. 58-84) with the
    threshold at the map's ``np.percentile``."""
    maps = []
    for sal in saliency:
        sal = sal.copy()
        sal[sal < 0] = 0
        sal = (sal - sal.min()) / np.maximum((sal.max() - sal.min()), 5e-6)
        if percentile is not None:
            threshold = np.percentile(sal, percentile)
            sal[sal >= threshold] = 1
            sal[sal < threshold] = 0
        maps.append(sal)
    saliency = np.stack(maps).astype(np.float32)
    batch_size = images.shape[0]
    with torch.no_grad():
        labels = labels.view((batch_size, -1)).to(dtype=torch.long)
        masked_images = images.detach().clone() * torch.tensor(saliency)
        score = torch.gather(torch.softmax(net(images), dim=1), 1, labels)
        new_score = torch.gather(torch.softmax(net(masked_images), dim=1), 1, labels)
        drop = torch.maximum(torch.zeros_like(score), (score - new_score)) / score
        return drop.numpy().reshape(-1), (new_score > score).numpy().reshape(-1)


class SmallCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Linear(4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.conv(x)).mean(dim=(2, 3)))


@pytest.mark.parametrize("percentile", [None, 90.0, 50.0])
def test_matches_the_authors_code_step_by_step(percentile):
    torch.manual_seed(0)
    net = SmallCNN().eval()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(6, 3, 10, 10, generator=g)
    sal = torch.randn(6, 1, 10, 10, generator=g)  # signed: the negative part is dropped
    y = torch.tensor([0, 1, 2, 3, 4, 0])
    ref_drop, ref_inc = authors_reference(sal.numpy(), net, x, y, percentile)
    drop = average_drop(net, x, sal, y, percentile=percentile, reduction="none", chunk_size=4)
    inc = increase_in_confidence(net, x, sal, y, percentile=percentile, reduction="none")
    assert_close(drop, torch.from_numpy(ref_drop).double(), atol=1e-6, rtol=1e-5)
    assert inc.tolist() == ref_inc.astype(float).tolist()
    for metric, ref in ((AverageDrop(percentile=percentile, keep_per_sample=True), drop), (IncreaseInConfidence(percentile=percentile, keep_per_sample=True), inc)):
        metric.update(net, x[:4], sal[:4], y[:4])
        metric.update(net, x[4:], sal[4:], y[4:])
        assert_close(metric.compute(), ref.mean().float(), atol=1e-6, rtol=1e-5)
        assert_close(metric.per_sample(), ref.float(), atol=1e-6, rtol=1e-5)


def test_binarized_maps_keep_the_top_share():
    sal = torch.arange(100.0).view(1, 1, 10, 10)
    b = explanation_maps(sal, percentile=90.0)
    assert set(b.unique().tolist()) == {0.0, 1.0} and int(b.sum()) == 10 and bool(b[0, 0, 9].all())
    tied = torch.zeros(1, 1, 10, 10)
    tied[..., 0, :5] = 1.0  # 95 % zeros: the 90th percentile is 0, every position is kept
    assert int(explanation_maps(tied, percentile=90.0).sum()) == 100


def test_filler_replaces_the_removed_part():
    torch.manual_seed(0)
    net = SmallCNN().eval()
    x = torch.rand(2, 3, 12, 12, generator=torch.Generator().manual_seed(2))
    sal = torch.rand(2, 1, 12, 12, generator=torch.Generator().manual_seed(3))
    y = torch.tensor([1, 2])
    blurred = Blur(sigma=5.0, kernel_size=11).substrate(x)
    s = explanation_maps(sal)
    with torch.no_grad():
        base = net(x).softmax(1).gather(1, y[:, None])[:, 0].double()
        new = net(s * x + (1 - s) * blurred).softmax(1).gather(1, y[:, None])[:, 0].double()
    expected = (base - new).clamp(min=0) / base
    assert_close(average_drop(net, x, sal, y, filler=Blur(sigma=5.0, kernel_size=11), reduction="none"), expected, atol=1e-6, rtol=1e-5)
    telea = average_drop(net, x, sal, y, filler="telea", percentile=80.0, reduction="none")
    assert telea.shape == (2,) and torch.isfinite(telea).all()


def test_zero_base_probability_is_nan_and_excluded():
    class Certain(nn.Module):
        def forward(self, x):
            z = x.flatten(1).sum(1)
            return torch.stack([torch.full_like(z, -1e4), z], 1)

    x, sal = torch.ones(2, 1, 2, 2), torch.rand(2, 1, 2, 2, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1])
    drops = average_drop(Certain(), x, sal, y, reduction="none")
    assert math.isnan(drops[0]) and math.isfinite(drops[1])
    metric = AverageDrop()
    metric.update(Certain(), x, sal, y)
    assert_close(metric.compute(), drops[1].float())
    assert int(metric.nan_count) == 1


def test_directions_bounds_and_definition():
    assert AverageDrop.higher_is_better is False and IncreaseInConfidence.higher_is_better is True
    d = AverageDrop(percentile=90).definition
    assert d["percentile"] == 90.0 and d["normalize"] == "positive_minmax" and d["filler"] == "zeros"


@pytest.mark.parametrize(
    "kwargs, exc, needle",
    [
        ({"percentile": 100}, ValueError, "`percentile` must be None or a number in [0, 100)"),
        ({"percentile": True}, ValueError, "`percentile` must be None"),
        ({"normalize": "zscore"}, ValueError, "`normalize` must be one of"),
        ({"filler": "telea"}, ValueError, "`filler` 'telea(3)' fills binary holes only"),
        ({"chunk_size": 0}, ValueError, "`chunk_size` must be an int >= 1"),
    ],
)
def test_errors_name_the_argument(kwargs, exc, needle):
    with pytest.raises(exc, match=needle.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        AverageDrop(**kwargs)
    x, sal, y = torch.ones(1, 1, 2, 2), torch.ones(1, 1, 2, 2), torch.tensor([0])
    with pytest.raises(exc, match=needle.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        average_drop(PixelModel(), x, sal, y, **kwargs)


def test_unnormalized_maps_outside_the_unit_range_are_rejected():
    with pytest.raises(ValueError, match=r"`saliency` must lie in \[0, 1\] with `normalize='none'`"):
        average_drop(PixelModel(), torch.ones(1, 1, 2, 2), torch.full((1, 1, 2, 2), 2.0), torch.tensor([0]), normalize="none")
