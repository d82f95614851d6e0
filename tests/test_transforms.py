"""The coherence paper's map transforms and oracles (numpy ports of their scripts, torchvision's blur),
and deletion / insertion with neighbourhood removal against a step-by-step port of their
``_ins_del_region`` / ``_ins_del_pixel``."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.testing import assert_close

from pl_saliency.functional.neighbourhood import curve_auc
from pl_saliency.functional.neighbourhood import neighbourhood_auc
from pl_saliency.functional.neighbourhood import neighbourhood_curves
from pl_saliency.functional.neighbourhood import neighbourhood_schedule
from pl_saliency.functional.transforms import blur_maps
from pl_saliency.functional.transforms import box_maps
from pl_saliency.functional.transforms import clip_percentile
from pl_saliency.functional.transforms import map_percentile
from pl_saliency.functional.transforms import minmax_normalize
from pl_saliency.functional.transforms import normalize_maps
from pl_saliency.functional.transforms import positive_part
from pl_saliency.functional.transforms import transform_maps
from pl_saliency.metrics.neighbourhood import NeighbourhoodDeletionAUC
from pl_saliency.metrics.neighbourhood import NeighbourhoodInsertionAUC
from pl_saliency.perturbation.fillers import Blur
from pl_saliency.perturbation.fillers import UniformNoise


@pytest.fixture
def maps() -> torch.Tensor:
    return torch.randn(3, 1, 12, 12, generator=torch.Generator().manual_seed(0))


def test_normalize_is_the_authors_utils_normalize(maps):
    for m, out in zip(maps.numpy(), normalize_maps(maps)):
        sal = m.copy()
        sal[sal < 0] = 0
        sal = (sal - sal.min()) / np.maximum((sal.max() - sal.min()), 5e-6)  # utils.py l. 217-220
        assert_close(out, torch.from_numpy(sal).float())
    assert torch.equal(positive_part(maps), maps.clamp(min=0))
    assert minmax_normalize(torch.full((1, 1, 3, 3), 2.0)).abs().max() == 0  # constant map: 0, never NaN


def test_clip_percentile_is_remove_top_percentile(maps):
    for m, out in zip(maps.numpy(), clip_percentile(maps)):
        sal = m.copy()
        sal[sal < 0] = 0
        percentile_99 = np.nanpercentile(sal, 99)
        sal[sal >= percentile_99] = percentile_99
        sal = (sal - sal.min()) / (sal.max() - sal.min())  # remove_top_percentile.py l. 10-14
        assert_close(out, torch.from_numpy(sal).float())
    assert_close(map_percentile(maps, 37.5), torch.from_numpy(np.percentile(maps.flatten(1).numpy(), 37.5, axis=1)).float())


def test_blur_maps_is_coarseness_blur_saliency(maps):
    from torchvision.transforms import GaussianBlur

    blur = GaussianBlur(11, 5)
    for m, out in zip(maps.numpy(), blur_maps(maps)):
        sal = m.copy()
        sal[sal < 0] = 0
        sal = (sal - sal.min()) / (sal.max() - sal.min())
        blurred = blur(torch.from_numpy(sal)).detach().cpu().numpy()  # coarseness.py l. 61-75
        blurred = (blurred - blurred.min()) / (blurred.max() - blurred.min())
        assert_close(out, torch.from_numpy(blurred).float(), atol=1e-5, rtol=1e-5)
    assert_close(transform_maps(maps, "blur"), blur_maps(maps))
    assert_close(transform_maps(maps, "clip99"), clip_percentile(maps))


def test_box_maps_mark_the_boxes():
    boxes = torch.tensor([[[1.0, 2.0, 4.0, 5.0], [math.nan] * 4], [[0.0, 0.0, 2.0, 2.0], [5.0, 5.0, 6.0, 8.0]]])
    out = box_maps(boxes, (8, 8))
    ref = torch.zeros(2, 1, 8, 8)
    ref[0, 0, 2:5, 1:4] = 1  # rows y0:y1, columns x0:x1
    ref[1, 0, 0:2, 0:2] = 1
    ref[1, 0, 5:8, 5:6] = 1
    assert torch.equal(out, ref)
    assert torch.equal(box_maps(boxes[:, 0], (8, 8))[0], ref[0])


def test_transform_errors_name_the_argument(maps):
    with pytest.raises(ValueError, match="`transform` must be one of"):
        transform_maps(maps, "sharpen")
    with pytest.raises(ValueError, match=r"`q` must be a percentile in \[0, 100\]"):
        clip_percentile(maps, 101)
    with pytest.raises(ValueError, match="`saliency` must be finite"):
        normalize_maps(torch.full((1, 1, 2, 2), math.nan))
    with pytest.raises(ValueError, match="`boxes` must have shape"):
        box_maps(torch.zeros(2, 3), (4, 4))


# --------------------------------------------------------------------------------------------------
# Neighbourhood deletion / insertion = the authors' loops
# --------------------------------------------------------------------------------------------------


def importance(heatmaps: np.ndarray) -> np.ndarray:
    """saliency_methods/utils.py l. 54-61, with a stable sort (our tie rule; the test maps have no ties)."""
    shape = heatmaps.shape[2:]
    heatmaps = np.sum(heatmaps, axis=1).reshape(heatmaps.shape[0], -1)
    return np.transpose(np.array(np.unravel_index(np.argsort(-heatmaps, axis=1, kind="stable"), shape)), (1, 0, 2))


def ins_del_region(saliency, net, start, end, labels, nr_steps, region_shape):
    """evaluate.py _ins_del_region l. 134-198 (one minibatch). One addition, marked below: theirs indexes past
    its pixel list (IndexError) once every pixel is removed before the last point; we record the remaining
    points on the fully removed image there, as the implementation does."""
    batch_size = start.shape[0]
    labels = labels.view((batch_size, -1))
    saliency_importance = torch.tensor(importance(saliency))
    all_scores = np.ndarray((batch_size, nr_steps + 1))
    with torch.no_grad():
        batch_start, batch_end = start.clone(), end.clone()
        for k in range(batch_size):
            pixel_idx = 0
            shape = start.shape[2:]
            occluded = torch.zeros(shape)
            j = 0
            while True:
                if occluded.sum() >= j * occluded.numel() / nr_steps:
                    scores = torch.gather(torch.softmax(net(batch_start[k].unsqueeze(0)), 1), 1, labels[k].unsqueeze(0)).squeeze()
                    all_scores[k, j] = scores.numpy()
                    j += 1
                if j > nr_steps:
                    break
                if occluded.sum() == occluded.numel():  # addition: see the docstring
                    all_scores[k, j:] = all_scores[k, j - 1]
                    break
                x = saliency_importance[k, 0, pixel_idx].item()
                y = saliency_importance[k, 1, pixel_idx].item()
                while occluded[x, y]:
                    pixel_idx += 1
                    x = saliency_importance[k, 0, pixel_idx].item()
                    y = saliency_importance[k, 1, pixel_idx].item()
                left = max(x - region_shape[0] // 2, 0)
                right = min(x + (region_shape[0] - 1) // 2, shape[0] - 1)
                top = max(y - region_shape[1] // 2, 0)
                bottom = min(y + (region_shape[1] - 1) // 2, shape[1] - 1)
                occluded[left : right + 1, top : bottom + 1] = 1
                batch_start[k, :, left : right + 1, top : bottom + 1] = batch_end[k, :, left : right + 1, top : bottom + 1]
    return all_scores


def ins_del_pixel(saliency, net, start, end, labels, nr_steps):
    """evaluate.py _ins_del_pixel l. 87-131 (one minibatch)."""
    batch_size = start.shape[0]
    labels = labels.view((batch_size, -1))
    saliency_importance = torch.tensor(importance(saliency))
    step = math.ceil(start[0, 0].numel() / nr_steps)
    all_scores = np.ndarray((batch_size, nr_steps + 1))
    with torch.no_grad():
        batch_start = start.clone()
        for j in range(nr_steps + 1):
            scores = torch.gather(torch.softmax(net(batch_start), 1), 1, labels).reshape(-1)
            all_scores[:, j] = scores.numpy()
            if j == nr_steps:
                break
            indices = saliency_importance[:, :, j * step : (j + 1) * step]
            for k in range(batch_size):
                batch_start[k, :, indices[k, 0], indices[k, 1]] = end[k, :, indices[k, 0], indices[k, 1]]
    return all_scores


class SmallCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Linear(4 * 4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(nn.functional.adaptive_avg_pool2d(torch.relu(self.conv(x)), 2).flatten(1))


@pytest.fixture
def case():
    torch.manual_seed(0)
    net = SmallCNN().eval()
    g = torch.Generator().manual_seed(5)
    x = torch.randn(3, 3, 13, 11, generator=g)
    sal = torch.randn(3, 1, 13, 11, generator=g)
    return net, x, sal, torch.tensor([0, 2, 3])


@pytest.mark.parametrize("region, steps", [((9, 9), 10), ((3, 3), 25), ((4, 2), 7), ((1, 1), 9), ((15, 15), 5)])
@pytest.mark.parametrize("mode", ["deletion", "insertion"])
def test_neighbourhood_curves_equal_the_authors_region_loop(case, region, steps, mode):
    net, x, sal, y = case
    fill = Blur(sigma=5.0, kernel_size=11)
    sub = fill.substrate(x)
    start, end = (x, sub) if mode == "deletion" else (sub, x)
    ref = ins_del_region(sal.numpy(), net, start, end, y, steps, region)
    ours = neighbourhood_curves(net, x, sal, y, mode=mode, filler=fill, steps=steps, region=region, chunk_size=7)
    assert_close(ours, torch.from_numpy(ref), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("steps", [10, 7, 143])
def test_pixel_rule_equals_the_authors_pixel_loop(case, steps):
    net, x, sal, y = case
    ref = ins_del_pixel(sal.numpy(), net, x, torch.zeros_like(x), y, steps)
    ours = neighbourhood_curves(net, x, sal, y, steps=steps, region=None)
    assert_close(ours, torch.from_numpy(ref), atol=1e-6, rtol=1e-5)


def test_schedule_and_a_fully_removed_image():
    order, counts = neighbourhood_schedule(torch.arange(16.0).view(1, 1, 4, 4), steps=4, region=(3, 3))
    # most salient pixel (3, 3) first: its 3x3 block is cut at the border to rows 2-3, columns 2-3
    assert order[0, :4].tolist() == [10, 11, 14, 15] and counts[0, 0] == 0
    assert sorted(order[0].tolist()) == list(range(16))
    _, counts = neighbourhood_schedule(torch.rand(1, 1, 4, 4), steps=10, region=(9, 9))
    assert counts[0].tolist() == [0] + [16] * 10  # one block removes everything: later points at full removal


def test_metric_classes_and_auc(case):
    net, x, sal, y = case
    curves = neighbourhood_curves(net, x, sal, y, filler=UniformNoise(low=0.0, high=1.0), steps=8, region=(3, 3), generator=torch.Generator().manual_seed(0))
    x_axis = np.linspace(0, 1, 9)
    assert_close(curve_auc(curves), torch.from_numpy(np.trapezoid(curves.numpy(), x_axis, axis=1)))
    d = NeighbourhoodDeletionAUC(filler=UniformNoise(low=0.0, high=1.0), steps=8, region=(3, 3), keep_per_sample=True)
    d.update(net, x, sal, y)
    assert_close(d.per_sample(), curve_auc(curves).float())
    ins = NeighbourhoodInsertionAUC(filler=Blur(sigma=5.0, kernel_size=11), steps=8, region=3)
    ins.update(net, x, sal, y)
    assert_close(ins.compute(), neighbourhood_auc(net, x, sal, y, mode="insertion", filler=Blur(sigma=5.0, kernel_size=11), steps=8, region=3).mean().float())
    assert not NeighbourhoodDeletionAUC.higher_is_better and NeighbourhoodInsertionAUC.higher_is_better
    with pytest.raises(ValueError, match="`filler` must be mask-independent"):
        NeighbourhoodDeletionAUC(filler="telea")
    with pytest.raises(ValueError, match="`region` must be None, an int >= 1 or a pair"):
        NeighbourhoodDeletionAUC(region=(1, 2, 3))
    with pytest.raises(ValueError, match="`mode` must be one of"):
        neighbourhood_curves(net, x, sal, y, mode="both")
