"""Deletion / insertion: the engine against Quantus, an independent step-by-step reference, and closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from pl_saliency.functional import deletion_auc
from pl_saliency.functional import insertion_auc
from pl_saliency.metrics import DeletionAUC
from pl_saliency.metrics import InsertionAUC
from pl_saliency.perturbation import BatchContext
from pl_saliency.perturbation import Blur
from pl_saliency.perturbation import Constant
from pl_saliency.perturbation import Mean
from pl_saliency.perturbation import get_filler
from pl_saliency.perturbation import perturbation_curves
from pl_saliency.perturbation.orders import feature_grid
from pl_saliency.perturbation.orders import removal_order


def reference_curves(model, x, sal, y, *, mode, fill_value, steps, patch_size=1, order="morf", score="probability"):
    """Written from the RISE / pixel-flipping description, one image and one step at a time.

    ``fill_value(x_i)`` gives the replacement image; features are ranked by summed saliency, ties
    are not expected (continuous random maps)."""
    n, c, h, w = x.shape
    out = torch.zeros(n, steps + 1)
    gh, gw = math.ceil(h / patch_size), math.ceil(w / patch_size)
    nf = gh * gw
    for i in range(n):
        scores = []
        for f in range(nf):
            r, cc = divmod(f, gw)
            scores.append(float(sal[i, 0, r * patch_size : (r + 1) * patch_size, cc * patch_size : (cc + 1) * patch_size].sum()))
        ranked = sorted(range(nf), key=lambda f: -scores[f] if order == "morf" else scores[f])
        sub = fill_value(x[i])
        for k in range(steps + 1):
            n_k = (k * nf) // steps
            chosen = set(ranked[:n_k])
            img = x[i].clone() if mode == "deletion" else sub.clone()
            for f in range(nf):
                if f in chosen:
                    r, cc = divmod(f, gw)
                    sl = (slice(None), slice(r * patch_size, (r + 1) * patch_size), slice(cc * patch_size, (cc + 1) * patch_size))
                    img[sl] = sub[sl] if mode == "deletion" else x[i][sl]
            with torch.no_grad():
                logits = model(img.unsqueeze(0))[0]
            out[i, k] = logits.softmax(0)[y[i]] if score == "probability" else logits[y[i]]
    return out


def _zeros(xi):
    return torch.zeros_like(xi)


@pytest.mark.parametrize("chunk_size", [1, 7, 10_000])
@pytest.mark.parametrize("mode", ["deletion", "insertion"])
def test_engine_matches_step_by_step_reference_rgb(tiny_cnn, rgb_batch, chunk_size, mode):
    x, y = rgb_batch
    sal = torch.rand(4, 1, 12, 12, generator=torch.Generator().manual_seed(2))
    got = perturbation_curves(tiny_cnn, x, sal, y, mode=mode, filler="zeros", steps=12, chunk_size=chunk_size)
    ref = reference_curves(tiny_cnn, x, sal, y, mode=mode, fill_value=_zeros, steps=12)
    torch.testing.assert_close(got, ref, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize(
    "filler, fill_value",
    [
        (Mean(), lambda xi: xi.mean(dim=(1, 2), keepdim=True).expand_as(xi)),
        (Constant(0.25), lambda xi: torch.full_like(xi, 0.25)),
    ],
)
def test_engine_fillers_patches_lerf_logit(tiny_cnn, rgb_batch, filler, fill_value):
    x, y = rgb_batch
    sal = torch.randn(4, 3, 12, 12, generator=torch.Generator().manual_seed(3))  # channels summed, sign kept
    got = perturbation_curves(
        tiny_cnn, x, sal, y, mode="deletion", filler=filler, steps=6, patch_size=5, order="lerf", score="logit", chunk_size=5
    )
    ref = reference_curves(
        tiny_cnn, x, sal.sum(1, keepdim=True), y, mode="deletion", fill_value=fill_value, steps=6, patch_size=5,
        order="lerf", score="logit",
    )  # fmt: skip
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("steps", [8, 16, 64])
def test_deletion_curves_equal_quantus_pixel_flipping(steps):
    quantus = pytest.importorskip("quantus")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 6)).eval()
    g = torch.Generator().manual_seed(5)
    x = torch.rand(5, 1, 8, 8, generator=g)
    x[:, :, 0, 0] = 0.0  # every image's minimum is 0: Quantus "black" (per-image minimum) == our zeros
    y = torch.tensor([0, 1, 2, 3, 5])
    sal = torch.rand(5, 1, 8, 8, generator=g)
    ours = perturbation_curves(model, x, sal, y, mode="deletion", filler="zeros", steps=steps, chunk_size=16)
    metric = quantus.PixelFlipping(
        features_in_step=64 // steps, perturb_baseline="black", disable_warnings=True, display_progressbar=False
    )
    theirs = metric(
        model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=sal.numpy(), device="cpu", softmax=True
    )
    theirs = torch.tensor(np.asarray(theirs), dtype=torch.float32)
    assert theirs.shape == (5, steps)
    torch.testing.assert_close(ours[:, 1:], theirs, atol=1e-5, rtol=0)
    # and a map whose ranking differs gives a different curve: the comparison can fail
    other = perturbation_curves(model, x, 1 - sal, y, mode="deletion", filler="zeros", steps=steps)
    assert not torch.allclose(other[:, 1:], theirs, atol=1e-5)


class OnePixel(nn.Module):
    """logit_0 = 8 · (sum over channels of pixel (r, c)); the other logits are 0."""

    def __init__(self, r: int, c: int, num_classes: int = 4) -> None:
        super().__init__()
        self.r, self.c, self.k = r, c, num_classes

    def forward(self, x):
        out = torch.zeros(x.shape[0], self.k, dtype=x.dtype)
        out[:, 0] = 8.0 * x[:, :, self.r, self.c].sum(1)
        return out


def test_closed_form_one_pixel_model():
    r, c, k = 2, 3, 4
    model = OnePixel(r, c, k)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 2, 5, 5, generator=g) * 0.5
    x[:, :, r, c] = 1.0
    y = torch.zeros(3, dtype=torch.long)
    best = torch.rand(3, 1, 5, 5, generator=g)
    best[:, :, r, c] = 2.0  # ranks the pixel first
    nf = 25
    p_full = math.exp(16.0) / (math.exp(16.0) + k - 1)
    p_gone = 1.0 / k
    # closed form, one pixel per step: curve = [p_full, p_gone, ..., p_gone]
    expected = ((p_full + p_gone) / 2 + (nf - 1) * p_gone) / nf
    auc_best = deletion_auc(model, x, best, y, steps=nf, reduction="none")
    torch.testing.assert_close(auc_best, torch.full((3,), expected), atol=1e-6, rtol=0)
    for seed in range(20):
        other = torch.rand(3, 1, 5, 5, generator=torch.Generator().manual_seed(100 + seed))
        other[:, :, r, c] = -1.0 + seed / 100  # somewhere later in the order
        auc_other = deletion_auc(model, x, other, y, steps=nf, reduction="none")
        assert (auc_best < auc_other).all()
    # insertion: the best map restores the pixel first and has the largest area
    blurless = Constant(0.0)
    ins_best = insertion_auc(model, x, best, y, steps=nf, filler=blurless, reduction="none")
    ins_worst = insertion_auc(model, x, -best, y, steps=nf, filler=blurless, reduction="none")
    torch.testing.assert_close(ins_best, torch.full((3,), ((p_gone + p_full) / 2 + (nf - 1) * p_full) / nf), atol=1e-6, rtol=0)
    assert (ins_best > ins_worst).all()


def test_auc_is_trapezoid_over_fraction(tiny_cnn, rgb_batch):
    x, y = rgb_batch
    sal = torch.rand(4, 1, 12, 12, generator=torch.Generator().manual_seed(9))
    area, curves = deletion_auc(tiny_cnn, x, sal, y, steps=10, reduction="none", return_curves=True)
    # 144 features, 10 steps: points at floor(k*144/10)/144
    xs = torch.tensor([(k * 144 // 10) / 144 for k in range(11)], dtype=torch.float64)
    expected = torch.tensor([np.trapezoid(curves[i].double().numpy(), xs.numpy()) for i in range(4)], dtype=torch.float32)
    torch.testing.assert_close(area, expected, atol=1e-6, rtol=0)
    assert torch.allclose(deletion_auc(tiny_cnn, x, sal, y, steps=10), area.mean())
    assert torch.allclose(deletion_auc(tiny_cnn, x, sal, y, steps=10, reduction="sum"), area.sum())


def test_tie_break_random_is_unbiased_and_batch_independent():
    sal = torch.zeros(2, 1, 6, 6)  # all ties
    pos = removal_order(sal.view(2, -1).double(), "morf", tie_break="position")
    assert pos[0].tolist() == list(range(36))
    rnd = removal_order(sal.view(2, -1).double(), "morf", tie_break="random", tie_seed=0)
    assert rnd[0].tolist() != list(range(36))
    assert torch.equal(rnd[0], rnd[1])  # the same permutation for every sample: no batch dependence
    single = removal_order(sal[:1].view(1, -1).double(), "morf", tie_break="random", tie_seed=0)
    assert torch.equal(single[0], rnd[0])
    assert not torch.equal(removal_order(sal.view(2, -1).double(), "morf", tie_seed=1)[0], rnd[0])
    # ties only reorder within equal scores: a strictly larger feature still goes first
    sal2 = torch.zeros(1, 36, dtype=torch.float64)
    sal2[0, 30] = 1.0
    assert removal_order(sal2, "morf")[0, 0] == 30
    assert removal_order(sal2, "lerf")[0, -1] == 30


def test_random_order_is_seeded():
    s = torch.rand(3, 16, dtype=torch.float64)
    a = removal_order(s, "random", generator=torch.Generator().manual_seed(4))
    b = removal_order(s, "random", generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b)
    assert all(sorted(row.tolist()) == list(range(16)) for row in a)


def test_random_order_without_generator_leaves_global_rng_alone():
    s = torch.rand(2, 9, dtype=torch.float64)
    state = torch.get_rng_state()
    a = removal_order(s, "random")
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a, removal_order(s, "random"))


def test_feature_grid_handles_non_multiple_sizes():
    fid, nf = feature_grid(5, 7, 3)
    assert nf == 2 * 3
    assert fid[4, 6] == 5 and fid[0, 0] == 0 and fid[2, 2] == 0 and fid[3, 0] == 3


def test_blur_filler_is_normalized_gaussian():
    x = torch.ones(1, 2, 9, 9)
    torch.testing.assert_close(Blur(sigma=2.0, kernel_size=5).substrate(x), x)  # constant image unchanged
    impulse = torch.zeros(1, 1, 21, 21)
    impulse[0, 0, 10, 10] = 1.0
    out = Blur(sigma=1.5, kernel_size=9).substrate(impulse)[0, 0]
    g = torch.exp(-0.5 * (torch.arange(9) - 4.0) ** 2 / 1.5**2)
    g = g / g.sum()
    torch.testing.assert_close(out[6:15, 6:15], torch.outer(g, g), atol=1e-6, rtol=0)


def test_insertion_starts_from_filler_and_ends_at_input(tiny_cnn, rgb_batch):
    x, y = rgb_batch
    sal = torch.rand(4, 1, 12, 12)
    curves = perturbation_curves(tiny_cnn, x, sal, y, mode="insertion", filler="blur", steps=4)
    with torch.no_grad():
        p_in = tiny_cnn(x).softmax(1).gather(1, y[:, None])[:, 0]
        p_blur = tiny_cnn(Blur().substrate(x)).softmax(1).gather(1, y[:, None])[:, 0]
    torch.testing.assert_close(curves[:, 0], p_blur)
    torch.testing.assert_close(curves[:, -1], p_in)


def test_curve_cache_shares_model_calls(rgb_batch):
    x, y = rgb_batch
    calls = []

    class Counting(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3 * 12 * 12, 5)

        def forward(self, inp):
            calls.append(len(inp))
            return self.lin(inp.flatten(1))

    model = Counting()
    sal = torch.rand(4, 1, 12, 12)
    ctx = BatchContext()
    a, b = DeletionAUC(steps=6, chunk_size=8), DeletionAUC(steps=6, chunk_size=8)
    a.update(model, x, sal, y, context=ctx)
    n_single = len(calls)
    b.update(model, x, sal, y, context=ctx)
    assert len(calls) == n_single == math.ceil(4 * 7 / 8)
    assert ctx.hits == 1
    torch.testing.assert_close(a.compute(), b.compute())
    InsertionAUC(steps=6, chunk_size=8).update(model, x, sal, y, context=ctx)  # another curve: new calls
    assert len(calls) == 2 * n_single


def test_peak_chunk_never_exceeds_chunk_size(rgb_batch):
    x, y = rgb_batch
    sizes = []

    def model(inp):
        sizes.append(len(inp))
        return inp.flatten(1)[:, :5]

    perturbation_curves(model, x, torch.rand(4, 1, 12, 12), y, steps=30, chunk_size=16)
    assert max(sizes) <= 16 and sum(sizes) == 4 * 31


def test_model_mode_restored_and_no_grad(tiny_cnn, rgb_batch):
    x, y = rgb_batch
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Dropout(0.5), nn.Flatten(), nn.Linear(4 * 10 * 10, 5))
    model.train()
    stats = model[1].running_mean.clone()
    a = deletion_auc(model, x, torch.rand(4, 1, 12, 12), y, steps=4)
    b = deletion_auc(model, x, torch.rand(4, 1, 12, 12, generator=torch.Generator().manual_seed(0)), y, steps=4)
    assert model.training and all(m.training for m in model.modules())
    assert torch.equal(model[1].running_mean, stats)
    assert all(p.grad is None for p in model.parameters())
    assert torch.isfinite(a) and torch.isfinite(b)


def test_filler_resolution():
    assert get_filler("zeros").key == "zeros"
    assert get_filler(0.5).key == "constant(0.5)"
    assert get_filler("blur").key == "blur(5,11)"
    assert get_filler(lambda t: t * 0).key == "<lambda>"
