"""Localization digits: boxes contain the digit, masks lie inside boxes, seeded reproducibility,
default collation into [x, y, {"boxes", "masks"}]."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch.utils.data import DataLoader

from pl_saliency.datasets import LocalizationDigits
from pl_saliency.datasets import digits_datasets
from pl_saliency.datasets import digits_tensors
from pl_saliency.datasets import localization_batch_transform
from pl_saliency.datasets import localization_datasets
from pl_saliency.datasets import mask_boxes

IDX = list(range(0, 1797, 60))  # 30 digits spread over the set


@pytest.fixture(scope="module")
def ds() -> LocalizationDigits:
    return LocalizationDigits(indices=IDX, seed=3)


def test_collation_and_shapes(ds):
    x, y, extras = next(iter(DataLoader(ds, batch_size=8)))
    assert x.shape == (8, 1, 48, 48) and x.dtype == torch.float32
    assert y.shape == (8,) and y.dtype == torch.long
    assert extras["boxes"].shape == (8, 4) and extras["boxes"].dtype == torch.float32
    assert extras["masks"].shape == (8, 1, 48, 48) and extras["masks"].dtype == torch.bool
    inputs, target, ex = localization_batch_transform([x, y, extras])
    assert inputs is x and target is y and set(ex) == {"boxes", "masks"}


def test_digit_pasted_whole_with_its_label(ds):
    digits, labels = digits_tensors(16)
    for i, src in enumerate(IDX):
        img, label, extras = ds[i]
        assert int(label) == int(labels[src])
        assert float(img.sum()) == pytest.approx(float(digits[src].sum()), rel=1e-6)  # nothing cut off
        # the 16×16 square at the pasted position is the digit: find it from the box and check equality
        nz = (img[0] > 0).nonzero()
        r0, c0 = int(nz[:, 0].min()), int(nz[:, 1].min())
        rows, cols = (digits[src, 0] > 0).nonzero()[:, 0].min(), (digits[src, 0] > 0).nonzero()[:, 1].min()
        top, left = r0 - int(rows), c0 - int(cols)
        torch.testing.assert_close(img[0, top : top + 16, left : left + 16], digits[src, 0])


def test_boxes_contain_the_digit_and_masks_lie_inside_boxes(ds):
    for i in range(len(ds)):
        img, _, extras = ds[i]
        box, mask = extras["boxes"].long().tolist(), extras["masks"][0]
        x0, y0, x1, y1 = box
        assert 0 <= x0 < x1 <= 48 and 0 <= y0 < y1 <= 48
        assert torch.equal(mask, img[0] > ds.threshold)  # no noise: the mask is the ink above threshold
        inside = torch.zeros_like(mask)
        inside[y0:y1, x0:x1] = True
        assert not (mask & ~inside).any()  # masks inside boxes
        assert (img[0][~inside] <= ds.threshold).all()  # every digit pixel above threshold is in the box
        # tight: every border row / column of the box holds a mask pixel
        assert mask[y0, x0:x1].any() and mask[y1 - 1, x0:x1].any() and mask[y0:y1, x0].any() and mask[y0:y1, x1 - 1].any()


def test_reproducible_and_independent_of_selection(ds):
    again = LocalizationDigits(indices=IDX, seed=3)
    assert torch.equal(again.images, ds.images) and torch.equal(again.boxes, ds.boxes)
    other = LocalizationDigits(indices=IDX, seed=4)
    assert not torch.equal(other.boxes, ds.boxes)
    one = LocalizationDigits(indices=[IDX[5]], seed=3)  # the same digit, selected alone
    assert torch.equal(one.images[0], ds.images[5]) and torch.equal(one.boxes[0], ds.boxes[5])


def test_noise_background_keeps_positions_and_masks(ds):
    noisy = LocalizationDigits(indices=IDX, seed=3, noise=0.3)
    assert torch.equal(noisy.masks, ds.masks) and torch.equal(noisy.boxes, ds.boxes)
    assert (noisy.images >= ds.images).all() and float(noisy.images.max()) <= 1.0
    background = noisy.images[~(ds.images > 0)]
    assert float(background.max()) <= 0.3 and float(background.mean()) > 0.1


def test_split_matches_the_demo_split():
    train, val = localization_datasets(canvas_size=24, digit_size=8, seed=0)
    d_train, d_val = digits_datasets(size=8, seed=0)
    assert len(train) == len(d_train) and len(val) == len(d_val)
    assert torch.equal(val.labels, d_val.tensors[1]) and torch.equal(train.labels, d_train.tensors[1])
    assert not set(train.indices.tolist()) & set(val.indices.tolist())


def test_mask_boxes_against_a_loop():
    g = torch.Generator().manual_seed(0)
    masks = torch.rand(6, 1, 9, 7, generator=g) > 0.93
    masks[2] = False  # empty
    boxes = mask_boxes(masks)
    for i in range(6):
        pts = masks[i, 0].nonzero()
        if len(pts) == 0:
            assert boxes[i].tolist() == [0.0, 0.0, 0.0, 0.0]
            continue
        ref = [pts[:, 1].min(), pts[:, 0].min(), pts[:, 1].max() + 1, pts[:, 0].max() + 1]
        assert boxes[i].tolist() == [float(v) for v in ref]


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(canvas_size=16, digit_size=20), ValueError, "`digit_size` must be at most `canvas_size`"),
        (dict(digit_size=4), ValueError, "`digit_size`"),
        (dict(canvas_size=0), ValueError, "`canvas_size`"),
        (dict(threshold=1.0), ValueError, "`threshold` must be below 1"),
        (dict(threshold=-0.1), ValueError, "`threshold`"),
        (dict(noise=2.0), ValueError, "`noise`"),
        (dict(seed=-1), ValueError, "`seed`"),
        (dict(indices=[0, 5000]), ValueError, "`indices` must hold digit indices in \\[0, 1796\\]"),
        (dict(canvas_size=20, digit_size=16, margin=3), ValueError, "`margin` must leave room for the digit"),
        (dict(margin=-1), ValueError, "`margin`"),
    ],
)
def test_errors_name_the_argument(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        LocalizationDigits(**kwargs)


def test_more_errors():
    with pytest.raises(ValueError, match="`masks` must be a \\(N, 1, H, W\\)"):
        mask_boxes(torch.zeros(2, 5, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="`batch` must be \\[inputs, target"):
        localization_batch_transform((torch.zeros(1), torch.zeros(1)))
    with pytest.raises(ValueError, match="`val_fraction`"):
        localization_datasets(val_fraction=0)


def test_margin_keeps_the_border_free_and_margin_zero_is_unchanged(ds):
    same = LocalizationDigits(indices=IDX, seed=3, margin=0)
    assert torch.equal(same.images, ds.images) and torch.equal(same.boxes, ds.boxes)
    inner = LocalizationDigits(canvas_size=28, digit_size=16, indices=IDX, seed=3, margin=5)
    assert not inner.images[..., :5, :].any() and not inner.images[..., -5:, :].any()
    assert not inner.images[..., :5].any() and not inner.images[..., -5:].any()
    assert (inner.boxes[:, :2] >= 5).all() and (inner.boxes[:, 2:] <= 23).all()
    tight = LocalizationDigits(canvas_size=26, digit_size=16, indices=IDX, seed=3, margin=5)  # one position left
    digits, _ = digits_tensors(16)
    torch.testing.assert_close(tight.images[:, :, 5:21, 5:21], digits[IDX])


def test_import_graph_has_no_cycle_and_keeps_demo_code_out():
    """`pl_saliency.datasets` needs nothing from `pl_saliency.demo`; `import pl_saliency` imports
    neither the demo nor the demo CNN; every old name is still importable from where it was."""
    code = (
        "import sys, pl_saliency, pl_saliency.datasets as d\n"
        "assert 'pl_saliency.demo' not in sys.modules and 'pl_saliency.datasets.cnn' not in sys.modules, sorted(sys.modules)\n"
        "from pl_saliency.datasets import DigitsCNN\n"
        "from pl_saliency.demo import DigitsCNN as D2, digits_datasets, digits_tensors, main\n"
        "assert DigitsCNN is D2 and digits_datasets is d.digits_datasets and digits_tensors is d.digits_tensors\n"
        "from pl_saliency.datasets import LocalizationDigits, localization_batch_transform, localization_datasets, mask_boxes\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
