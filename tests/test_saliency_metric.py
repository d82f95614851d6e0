"""Saliency Metric and object localization error: hand computations on constructed maps, boxes and
models; the metric classes accumulate like the functional forms; errors name the argument."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.testing import assert_close

from pl_saliency.functional.saliency_metric import box_iou
from pl_saliency.functional.saliency_metric import crop_resize
from pl_saliency.functional.saliency_metric import object_localization_error
from pl_saliency.functional.saliency_metric import saliency_boxes
from pl_saliency.functional.saliency_metric import saliency_metric
from pl_saliency.metrics import ObjectLocalizationError
from pl_saliency.metrics import SaliencyMetric
from pl_saliency.perturbation.engine import BatchContext


class MeanModel(nn.Module):
    """logits = (s · mean(x), 0): p(class 0) = sigmoid(s · mean(x))."""

    def __init__(self, s: float = 3.0) -> None:
        super().__init__()
        self.s = s

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = x.mean(dim=(1, 2, 3))
        return torch.stack([self.s * m, torch.zeros_like(m)], 1)


def sigmoid(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v))


# --------------------------------------------------------------------------------------------------
# Boxes and crops
# --------------------------------------------------------------------------------------------------


def test_saliency_boxes_by_hand():
    sal = torch.zeros(3, 1, 6, 8)
    sal[0, 0, 1:3, 2:7] = 0.6
    sal[0, 0, 2, 4] = 1.0  # the peak
    sal[1, 0] = -1.0  # no positive value: the whole image
    sal[2, 0, 5, 7] = 2.0
    sal[2, 0, 0, 0] = 1.0  # 0.5 · max: included at α = 0.5
    assert saliency_boxes(sal, 0.5).tolist() == [[2, 1, 7, 3], [0, 0, 8, 6], [0, 0, 8, 6]]
    assert saliency_boxes(sal, 0.7).tolist() == [[4, 2, 5, 3], [0, 0, 8, 6], [7, 5, 8, 6]]
    both = saliency_boxes(sal, [0.5, 0.7])
    assert both.shape == (3, 2, 4) and both[:, 1].tolist() == saliency_boxes(sal, 0.7).tolist()
    assert saliency_boxes(sal, 0.0)[0].tolist() == [0, 0, 8, 6]  # α = 0: every non-negative position


def test_box_iou_by_hand():
    a = torch.tensor([[0.0, 0.0, 4.0, 4.0], [0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 0.0, 0.0]])
    b = torch.tensor([[0.0, 0.0, 4.0, 8.0], [1.0, 1.0, 3.0, 3.0], [0.0, 0.0, 0.0, 0.0]])
    assert_close(box_iou(a, b), torch.tensor([0.5, 1 / 7, 0.0], dtype=torch.float64))


def test_crop_resize_equals_interpolate_of_each_crop():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 3, 10, 13, generator=g)
    boxes = torch.tensor([[0, 0, 13, 10], [2, 3, 5, 4], [12, 9, 13, 10], [1, 0, 12, 7]], dtype=torch.float64)
    out = crop_resize(x, boxes)
    for i, (x0, y0, x1, y1) in enumerate(boxes.long().tolist()):
        ref = F.interpolate(x[i : i + 1, :, y0:y1, x0:x1], size=(10, 13), mode="bilinear", align_corners=False)
        assert_close(out[i : i + 1], ref, atol=1e-6, rtol=1e-5)


# --------------------------------------------------------------------------------------------------
# Saliency Metric
# --------------------------------------------------------------------------------------------------


def test_saliency_metric_by_hand():
    """Image: 1 inside rows 2:6 × columns 2:6, 0 elsewhere; p(crop) = sigmoid(3 · mean(crop))."""
    x = torch.zeros(3, 1, 8, 8)
    x[:, :, 2:6, 2:6] = 1.0
    sal = torch.zeros(3, 1, 8, 8)
    sal[0, 0, 2:6, 2:6] = 1.0  # the object's box: area 16/64, crop all ones → p = sigmoid(3)
    sal[1, 0, 3, 3] = 1.0  # one pixel: area 1/64 < 0.05 → floor; crop all ones
    sal[2] = 0.0  # nothing salient: the whole image, mean 1/4
    y = torch.zeros(3, dtype=torch.long)
    sm = saliency_metric(MeanModel(), x, sal, y, reduction="none")
    expected = torch.tensor(
        [
            math.log(0.25) - math.log(sigmoid(3.0)),
            math.log(0.05) - math.log(sigmoid(3.0)),
            0.0 - math.log(sigmoid(0.75)),
        ]
    )
    assert_close(sm, expected, atol=1e-6, rtol=1e-6)
    assert_close(saliency_metric(MeanModel(), x, sal, y), expected.mean(), atol=1e-6, rtol=1e-6)
    assert_close(saliency_metric(MeanModel(), x, sal, y, reduction="sum"), expected.sum(), atol=1e-5, rtol=1e-6)
    # the other class: log p = log(1 − sigmoid(·))
    other = saliency_metric(MeanModel(), x[:1], sal[:1], torch.tensor([1]), reduction="none")
    assert_close(other, torch.tensor([math.log(0.25) - math.log(1 - sigmoid(3.0))]), atol=1e-6, rtol=1e-6)


def test_saliency_metric_threshold_and_floor_change_the_box():
    x = torch.zeros(1, 1, 8, 8)
    x[:, :, 2:6, 2:6] = 1.0
    sal = torch.zeros(1, 1, 8, 8)
    sal[0, 0, 2:6, 2:6] = 0.6
    sal[0, 0, 0:8, 0:1] = 0.4  # joins the region below α = 0.4 / 0.6
    y = torch.tensor([0])
    wide = saliency_metric(MeanModel(), x, sal, y, threshold=0.5)  # box columns 0:6, rows 0:8 → area 48/64
    crop = F.interpolate(x[..., 0:8, 0:6], size=(8, 8), mode="bilinear", align_corners=False)
    assert_close(wide, torch.tensor(math.log(48 / 64) - math.log(sigmoid(3 * crop.mean().item()))), atol=1e-6, rtol=1e-6)
    tight = saliency_metric(MeanModel(), x, sal, y, threshold=0.8)
    assert_close(tight, torch.tensor(math.log(0.25) - math.log(sigmoid(3.0))), atol=1e-6, rtol=1e-6)
    floored = saliency_metric(MeanModel(), x, sal, y, threshold=0.8, area_floor=0.5)
    assert_close(floored, torch.tensor(math.log(0.5) - math.log(sigmoid(3.0))), atol=1e-6, rtol=1e-6)


def test_saliency_metric_is_finite_for_vanishing_probability():
    x = torch.ones(1, 1, 4, 4)
    sm = saliency_metric(MeanModel(s=-500.0), x, torch.ones(1, 1, 4, 4), torch.tensor([0]), reduction="none")
    assert torch.isfinite(sm).all() and sm.item() == pytest.approx(500.0, rel=1e-6)


def test_saliency_metric_class_accumulates_chunks_and_transform():
    g = torch.Generator().manual_seed(2)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 5)).eval()
    x, s, y = torch.rand(7, 3, 12, 12, generator=g), torch.rand(7, 1, 12, 12, generator=g), torch.randint(0, 5, (7,), generator=g)
    metric = SaliencyMetric(chunk_size=2, keep_per_sample=True)
    metric.update(net, x[:3], s[:3], y[:3])
    metric.update(net, x[3:], s[3:], y[3:], context=BatchContext())
    ref = saliency_metric(net, x, s, y, reduction="none")
    assert_close(metric.per_sample(), ref, atol=1e-5, rtol=1e-5)
    assert_close(metric.compute(), ref.mean(), atol=1e-5, rtol=1e-5)
    tup = SaliencyMetric(output_transform=lambda out: out[0])
    tup.update(lambda inp: (net(inp), None), x, s, y)
    assert_close(tup.compute(), ref.mean(), atol=1e-5, rtol=1e-5)
    assert metric.higher_is_better is False and metric.is_differentiable is False and metric.full_state_update is False
    assert metric.definition == {"metric": "SaliencyMetric", "higher_is_better": False, "threshold": 0.5, "area_floor": 0.05, "score": "probability"}
    assert metric.plot_lower_bound == pytest.approx(math.log(0.05)) and metric.plot_upper_bound is None


def test_saliency_metric_restores_model_mode():
    net = nn.Sequential(nn.Flatten(), nn.Dropout(0.5), nn.Linear(16, 2)).train()
    x = torch.rand(2, 1, 4, 4)
    a = saliency_metric(net, x, torch.rand(2, 1, 4, 4), torch.tensor([0, 1]), reduction="none")
    b = saliency_metric(net, x, torch.rand(2, 1, 4, 4), torch.tensor([0, 1]), reduction="none")
    assert net.training and torch.isfinite(a).all() and torch.isfinite(b).all()


# --------------------------------------------------------------------------------------------------
# Object localization
# --------------------------------------------------------------------------------------------------


def localization_case() -> tuple[torch.Tensor, torch.Tensor]:
    sal = torch.zeros(4, 1, 8, 8)
    sal[:, :, 2:6, 2:6] = 1.0  # map box (2, 2, 6, 6), area 16
    sal[3, 0, 0, 0] = 0.6  # level 0.5 → box (0, 0, 6, 6); level 0.7 → (2, 2, 6, 6)
    boxes = torch.tensor(
        [
            [2.0, 2.0, 6.0, 7.0],  # IoU 16/20 = 0.8: correct
            [2.0, 2.0, 6.0, 10.0 - 2.0],  # (2, 2, 6, 8): IoU 16/24 ≈ 0.67: correct
            [0.0, 0.0, 3.0, 3.0],  # IoU 1/24: wrong
            [2.0, 2.0, 6.0, 6.0],  # level 0.5: IoU 16/36 < 0.5 wrong; level 0.7: 1.0 correct
        ]
    )
    return sal, boxes


def test_object_localization_error_by_hand():
    sal, boxes = localization_case()
    assert object_localization_error(sal, boxes, reduction="none").tolist() == [0.0, 0.0, 1.0, 1.0]
    assert object_localization_error(sal, boxes).item() == 0.5
    assert object_localization_error(sal, boxes, reduction="sum").item() == 2.0
    per_level = object_localization_error(sal, boxes, thresholds=[0.5, 0.7], reduction="none")
    assert per_level.tolist() == [[0.0, 0.0], [0.0, 0.0], [1.0, 1.0], [1.0, 0.0]]
    assert_close(object_localization_error(sal, boxes, thresholds=(0.5, 0.7)), torch.tensor([0.5, 0.25]))
    # IoU exactly at the threshold counts as correct; iou_threshold moves the bar
    exact = torch.tensor([[2.0, 2.0, 6.0, 10.0]]).clamp(max=8)  # (2, 2, 6, 8): 16/24
    assert object_localization_error(sal[:1], exact, iou_threshold=16 / 24).item() == 0.0
    assert object_localization_error(sal[:1], exact, iou_threshold=0.7).item() == 1.0


def test_object_localization_multiple_boxes_padding_and_empty_ground_truth():
    sal, _ = localization_case()
    nan = float("nan")
    boxes = torch.tensor(
        [
            [[0.0, 0.0, 1.0, 1.0], [2.0, 2.0, 6.0, 6.0]],  # the second box matches
            [[0.0, 0.0, 1.0, 1.0], [nan, nan, nan, nan]],  # padding row; no match
            [[nan, nan, nan, nan], [nan, nan, nan, nan]],  # no ground truth: NaN
            [[3.0, 3.0, 3.0, 5.0], [nan, nan, nan, nan]],  # an empty box: NaN
        ]
    )
    err = object_localization_error(sal, boxes, thresholds=0.7, reduction="none")
    assert err[:2].tolist() == [0.0, 1.0] and torch.isnan(err[2:]).all()
    assert object_localization_error(sal, boxes, thresholds=0.7).item() == 0.5  # NaN excluded


def test_object_localization_class_levels_context_and_per_sample():
    sal, boxes = localization_case()
    x = torch.zeros(4, 1, 8, 8)
    metric = ObjectLocalizationError(thresholds=[0.5, 0.7], keep_per_sample=True)
    metric.update(None, x[:2], sal[:2], torch.zeros(2, dtype=torch.long), boxes=boxes[:2])
    metric.update(None, x[2:], sal[2:], torch.zeros(2, dtype=torch.long), context=BatchContext(extras={"boxes": boxes[2:]}))
    assert_close(metric.errors_per_threshold(), torch.tensor([0.5, 0.25]))
    assert metric.compute().item() == 0.25 and metric.best_threshold() == 0.7
    assert metric.per_sample().tolist() == [0.0, 0.0, 1.0, 1.0]  # the first level's
    assert metric.definition == {"metric": "ObjectLocalizationError", "higher_is_better": False, "thresholds": [0.5, 0.7], "iou_threshold": 0.5}
    with pytest.warns(UserWarning, match="called before the ``update``"):
        assert torch.isnan(ObjectLocalizationError().compute())


def test_object_localization_low_resolution_map_is_upsampled_to_the_image():
    sal = torch.zeros(1, 1, 4, 4)
    sal[0, 0, 1:3, 1:3] = 1.0
    metric = ObjectLocalizationError()
    with pytest.warns(UserWarning, match="upsampling it bilinearly"):
        metric.update(None, torch.zeros(1, 1, 16, 16), sal, torch.tensor([0]), boxes=torch.tensor([[4.0, 4.0, 12.0, 12.0]]))
    assert metric.compute().item() == 0.0


def test_plot_returns_a_figure():
    pytest.importorskip("matplotlib")
    sal, boxes = localization_case()
    metric = ObjectLocalizationError()
    metric.update(None, torch.zeros(4, 1, 8, 8), sal, torch.zeros(4, dtype=torch.long), boxes=boxes)
    fig, ax = metric.plot()
    assert fig is not None and ax is not None


# --------------------------------------------------------------------------------------------------
# Errors name the argument
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "boxes, exc, needle",
    [
        (None, ValueError, "`boxes` is required"),
        ([[0, 0, 1, 1]] * 4, TypeError, "`boxes` must be a torch.Tensor of shape"),
        (torch.zeros(4, 3), ValueError, r"`boxes` must have shape \(4, 4\) or \(4, B, 4\)"),
        (torch.zeros(3, 4), ValueError, r"`boxes` must have shape \(4, 4\)"),
        (torch.zeros(4, 4, dtype=torch.bool), TypeError, "`boxes` must hold pixel coordinates"),
        (torch.tensor([[2.0, 0.0, 1.0, 1.0]] * 4), ValueError, "`boxes` must have x0 <= x1 and y0 <= y1"),
        (torch.tensor([[0.0, 0.0, 9.0, 1.0]] * 4), ValueError, "`boxes` must lie inside the 8x8 image"),
        (torch.tensor([[0.0, float("nan"), 1.0, 1.0]] * 4), ValueError, "`boxes` must be finite"),
    ],
)
def test_bad_boxes_raise_naming_the_argument(boxes, exc, needle):
    sal, _ = localization_case()
    with pytest.raises(exc, match=needle):
        object_localization_error(sal, boxes)
    with pytest.raises(exc, match=needle):
        ObjectLocalizationError().update(None, torch.zeros(4, 1, 8, 8), sal, torch.zeros(4, dtype=torch.long), boxes=boxes)


@pytest.mark.parametrize(
    "build, exc, needle",
    [
        (lambda: ObjectLocalizationError(thresholds=1.5), ValueError, r"`thresholds` must hold numbers in \[0, 1\]"),
        (lambda: ObjectLocalizationError(thresholds=[]), TypeError, "`thresholds` must be a number in"),
        (lambda: ObjectLocalizationError(thresholds="half"), TypeError, "`thresholds` must be a number in"),
        (lambda: ObjectLocalizationError(iou_threshold=0.0), ValueError, r"`iou_threshold` must be a number in \(0, 1\]"),
        (lambda: SaliencyMetric(threshold=-0.1), ValueError, r"`threshold` must be a number in \[0, 1\]"),
        (lambda: SaliencyMetric(threshold=None), TypeError, r"`threshold` must be a number in \[0, 1\]"),
        (lambda: SaliencyMetric(area_floor=0.0), ValueError, r"`area_floor` must be a number in \(0, 1\]"),
        (lambda: SaliencyMetric(chunk_size=0), ValueError, "`chunk_size` must be an int >= 1"),
        (lambda: saliency_metric(MeanModel(), torch.rand(1, 1, 4, 4), torch.rand(1, 1, 4, 4), torch.tensor([0]), reduction="avg"), ValueError, "`reduction` must be one of"),
        (lambda: object_localization_error(torch.rand(1, 1, 4, 4), torch.zeros(1, 4), reduction="avg"), ValueError, "`reduction` must be one of"),
        (lambda: saliency_metric(MeanModel(), torch.rand(2, 1, 4, 4), torch.rand(3, 1, 4, 4), torch.tensor([0, 1])), ValueError, "`saliency` must have the batch size"),
        (lambda: saliency_metric(MeanModel(), torch.rand(2, 1, 4, 4), torch.rand(2, 1, 4, 4), torch.tensor([0])), ValueError, "`target` must have shape"),
    ],
)
def test_bad_arguments_raise_naming_the_argument(build, exc, needle):
    with pytest.raises(exc, match=needle):
        build()


# --------------------------------------------------------------------------------------------------
# In the monitor: boxes come from the batch extras; removal explainers run under inference mode
# --------------------------------------------------------------------------------------------------


def test_metrics_and_removal_explainers_in_the_monitor(tmp_path):
    pl = pytest.importorskip("pytorch_lightning")
    from torch.utils.data import DataLoader

    from pl_saliency import SaliencyMonitor
    from pl_saliency.datasets import LocalizationDigits
    from pl_saliency.datasets import localization_batch_transform
    from pl_saliency.demo import DigitsCNN
    from pl_saliency.explainers.removal import RISE
    from pl_saliency.explainers.removal import MeaningfulPerturbation
    from pl_saliency.explainers.removal import SlidingPatchOcclusion

    class BoxDigitsCNN(DigitsCNN):  # validation batches carry the extras: [x, y, {"boxes", "masks"}]
        def validation_step(self, batch, batch_idx):
            return super().validation_step(batch[:2], batch_idx)

    torch.manual_seed(0)
    model = BoxDigitsCNN()
    val = DataLoader(LocalizationDigits(canvas_size=24, digit_size=12, indices=range(8)), batch_size=4)
    monitor = SaliencyMonitor(
        explainers=[SlidingPatchOcclusion(patch_size=7, stride=4), RISE(num_masks=32, cells=4), MeaningfulPerturbation(mask_size=6, iterations=3)],
        metrics=[SaliencyMetric(), ObjectLocalizationError(thresholds=[0.3, 0.6])],
        num_samples=6,
        batch_transform=localization_batch_transform,
        on_error="raise",
        verbose=False,
    )
    trainer = pl.Trainer(
        accelerator="cpu", devices=1, logger=False, callbacks=[monitor], enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, inference_mode=True,
    )  # fmt: skip
    (results,) = trainer.validate(model, val, verbose=False)
    for e in ("occlusion", "rise", "meaningful_perturbation"):
        assert math.isfinite(results[f"val/saliency/{e}/saliency_metric"])
        assert 0.0 <= results[f"val/saliency/{e}/object_localization_error"] <= 1.0
    assert all(p.grad is None for p in model.parameters())
