"""Removal explainers (occlusion, LIME, meaningful perturbation, RISE): agreement with Captum, scikit-learn
and scikit-image references, closed forms, a step-by-step reference, invariants and argument errors."""

from __future__ import annotations

import math

import captum.attr as ca
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.testing import assert_close

from pl_saliency.explainers.removal import RISE
from pl_saliency.explainers.removal import Lime
from pl_saliency.explainers.removal import MeaningfulPerturbation
from pl_saliency.explainers.removal import RiseMasks
from pl_saliency.explainers.removal import SlidingPatchOcclusion
from pl_saliency.explainers.removal import binarize_threshold
from pl_saliency.explainers.removal import grid_segments
from pl_saliency.explainers.removal import lime_samples
from pl_saliency.explainers.removal import rise_masks
from pl_saliency.explainers.removal import seed_window_starts
from pl_saliency.explainers.removal import slic_segments
from pl_saliency.explainers.removal import tv_norm
from pl_saliency.explainers.removal import weighted_ridge
from pl_saliency.explainers.removal import window_starts
from pl_saliency.perturbation.fillers import Blur
from pl_saliency.perturbation.fillers import Constant
from pl_saliency.perturbation.fillers import UniformNoise
from pl_saliency.perturbation.imputation import InpainterFill
from pl_saliency.perturbation.imputation import Telea

TOL = {"atol": 1e-6, "rtol": 1e-6}


class TinyCNN(nn.Module):
    def __init__(self, channels: int = 3, num_classes: int = 5) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 6, 3, padding=1)
        self.head = nn.Linear(6, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.conv2(torch.relu(self.conv1(x)))).mean(dim=(2, 3)))


class BNDropCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.drop = nn.Dropout(0.5)
        self.head = nn.Linear(4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(torch.relu(self.bn(self.conv(x)))).mean(dim=(2, 3)))


class RegionModel(nn.Module):
    """Class 0's logit is 8 · (mean of the 4×4 region rows 4:8, columns 8:12 − 1/2); class 1's is 0.
    Nothing outside the region matters."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = x[:, :, 4:8, 8:12].mean(dim=(1, 2, 3))
        return torch.stack([8 * (r - 0.5), torch.zeros_like(r)], 1)


def region_case() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = 0.2 * torch.rand(2, 1, 16, 16, generator=g)
    x[:, :, 4:8, 8:12] = 1.0
    inside = torch.zeros(16, 16, dtype=torch.bool)
    inside[4:8, 8:12] = True
    return x, torch.tensor([0, 0]), inside


def const_inpainter(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """A stand-in generative inpainter: every hole becomes 0.1."""
    return torch.full_like(x, 0.1)


@pytest.fixture
def cnn() -> TinyCNN:
    torch.manual_seed(0)
    return TinyCNN().eval()


@pytest.fixture
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.rand(3, 3, 12, 12, generator=g), torch.tensor([0, 1, 4])


# Small, fast settings of each explainer.
FAST = {
    "occlusion": lambda **kw: SlidingPatchOcclusion(patch_size=4, stride=2, **kw),
    "lime": lambda **kw: Lime(num_samples=40, segmentation="grid", grid_size=4, **kw),
    "mp": lambda **kw: MeaningfulPerturbation(mask_size=4, iterations=6, **kw),
    "rise": lambda **kw: RISE(num_masks=40, cells=3, **kw),
}
fast_params = pytest.mark.parametrize("make", list(FAST.values()), ids=list(FAST))


# --------------------------------------------------------------------------------------------------
# Sliding-patch occlusion = Captum's Occlusion
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("patch, stride", [(4, 2), (5, 3), (3, 3), ((4, 3), (2, 1)), (12, 5)])
def test_occlusion_matches_captum_occlusion_logit(cnn, batch, patch, stride):
    x, y = batch
    sal = SlidingPatchOcclusion(patch_size=patch, stride=stride, filler=0.3, score="logit", chunk_size=7)(cnn, x, y)
    p = patch if isinstance(patch, tuple) else (patch, patch)
    s = stride if isinstance(stride, tuple) else (stride, stride)
    ref = ca.Occlusion(cnn).attribute(x, sliding_window_shapes=(3, *p), strides=(1, *s), baselines=0.3, target=y)
    assert_close(ref[:, :1], ref[:, 2:], **TOL)  # the window covers every channel
    assert_close(sal, ref[:, :1], **TOL)
    assert sal.abs().max() > 1e-3


def test_occlusion_probability_matches_captum_on_softmax(cnn, batch):
    x, y = batch
    sal = SlidingPatchOcclusion(patch_size=5, stride=2)(cnn, x, y)  # zeros, probability: the seed code's SP
    ref = ca.Occlusion(nn.Sequential(cnn, nn.Softmax(dim=1))).attribute(
        x, sliding_window_shapes=(3, 5, 5), strides=(1, 2, 2), baselines=0.0, target=y
    )
    assert_close(sal, ref[:, :1], **TOL)


def test_window_starts_cover_every_position():
    assert window_starts(12, 5, 3).tolist() == [0, 3, 6, 9]  # the last window is cut at the border
    assert window_starts(12, 4, 4).tolist() == [0, 4, 8]
    assert window_starts(7, 7, 2).tolist() == [0]


def formal_sp_reference(model: nn.Module, image: torch.Tensor, neuron: int, patch: int, stride: int, size: int) -> np.ndarray:
    """A numpy/torch port of the seed code's SP (anguyen8/generative-attribution-methods,
    ``formal_SP_single_image.py``): masks from ``view_as_windows`` over the index matrix (l. 157-172),
    batches of ``int((size - patch) / stride) + 1`` masks (l. 166, 174), ``delta = p0 - softmax(model(
    data * image))[:, neuron]`` (l. 35-49), concatenated and reshaped to (n, n) (l. 83-86)."""
    from skimage.util import view_as_windows

    c = image.shape[1]
    input_shape = (c, size, size)
    total_dim = int(np.prod(input_shape))
    index_matrix = np.arange(total_dim).reshape(input_shape)
    idx_patches = view_as_windows(index_matrix, (c, patch, patch), stride).reshape((-1, c, patch, patch))
    batch_mask = torch.zeros((idx_patches.shape[0],) + input_shape)
    for i, p in enumerate(idx_patches):
        mask = torch.ones(total_dim)
        mask[p.reshape(-1)] = 0
        batch_mask[i] = mask.reshape(input_shape)
    batch_size = int((size - patch) / stride) + 1
    loader = torch.utils.data.DataLoader(batch_mask, batch_size=batch_size, shuffle=False)
    with torch.no_grad():
        eval0 = torch.nn.Softmax(dim=1)(model(image)).data[0, neuron]
        heat = torch.Tensor()
        for data in loader:
            softmax_out = torch.nn.Softmax(dim=1)(model(data * image))
            heat = torch.cat((heat, eval0 - softmax_out.data[:, neuron]))
    sqrt_shape = len(loader)
    return np.reshape(heat.numpy(), (sqrt_shape, sqrt_shape))


@pytest.mark.parametrize("patch, stride", [(4, 2), (5, 3), (3, 4), (12, 5)])
def test_occlusion_window_rule_equals_the_seed_codes_formal_sp(cnn, batch, patch, stride):
    from skimage.transform import resize

    x, y = batch
    sp = SlidingPatchOcclusion(patch_size=patch, stride=stride, rule="window", chunk_size=5)
    grid = sp.window_scores(cnn, x, y)
    n = (12 - patch) // stride + 1
    assert grid.shape == (3, 1, n, n)
    for i in range(3):
        ref = formal_sp_reference(cnn, x[i : i + 1], int(y[i]), patch, stride, 12)
        assert_close(grid[i, 0], torch.from_numpy(ref).float(), **TOL)
        assert np.abs(ref).max() > 1e-4
    sal = sp(cnn, x, y)  # the grid resized as formal_plot_figure.py does: skimage resize to (H, W)
    for i in range(3):
        ref = resize(grid[i, 0].double().numpy(), (12, 12))
        assert_close(sal[i, 0], torch.from_numpy(ref).float(), **TOL)


def test_occlusion_window_rule_keeps_one_value_per_window_and_uses_the_filler(cnn, batch):
    x, y = batch
    grid = SlidingPatchOcclusion(patch_size=6, stride=6, rule="window", filler=0.5, score="logit").window_scores(cnn, x, y)
    with torch.no_grad():
        base = cnn(x).gather(1, y[:, None])[:, 0]
        for r in range(2):
            for c in range(2):
                xk = x.clone()
                xk[:, :, 6 * r : 6 * r + 6, 6 * c : 6 * c + 6] = 0.5
                assert_close(grid[:, 0, r, c], base - cnn(xk).gather(1, y[:, None])[:, 0], **TOL)
    # the mean rule spreads the same windows' drops on their pixels (no overlap at stride = patch)
    mean = SlidingPatchOcclusion(patch_size=6, stride=6, filler=0.5, score="logit")(cnn, x, y)
    assert_close(mean[:, :, :6, 6:], grid[:, :, :1, 1:].expand(-1, -1, 6, 6), **TOL)
    assert seed_window_starts(12, 5, 3).tolist() == [0, 3, 6]  # no cut window, unlike window_starts
    assert seed_window_starts(12, 3, 4).tolist() == [0, 4, 8]


def test_generative_without_inpainter_is_deprecated_and_named_after_telea():
    with pytest.warns(DeprecationWarning, match=r"SlidingPatchOcclusion.telea\(\)"):
        e = SlidingPatchOcclusion.generative(patch_size=4, stride=2)
    assert isinstance(e.filler, Telea) and e.name == "occlusion_telea" and e.patch_size == (4, 4)
    with pytest.warns(DeprecationWarning):
        e = RISE.generative(Telea(radius=5), name="old")
    assert e.filler.radius == 5 and e.name == "old"


def test_split_modules_reexport_the_same_objects():
    import pl_saliency.explainers as ex
    from pl_saliency.explainers import lime
    from pl_saliency.explainers import meaningful_perturbation
    from pl_saliency.explainers import occlusion
    from pl_saliency.explainers import removal
    from pl_saliency.explainers import removal_base
    from pl_saliency.explainers import rise

    assert removal.SlidingPatchOcclusion is occlusion.SlidingPatchOcclusion is ex.SlidingPatchOcclusion
    assert removal.Lime is lime.Lime and removal.LimeFit is lime.LimeFit
    assert removal.MeaningfulPerturbation is meaningful_perturbation.MeaningfulPerturbation
    assert removal.RISE is rise.RISE and removal.mirror_interpolation is rise.mirror_interpolation
    assert removal.RemovalExplainer is removal_base.RemovalExplainer
    for name in removal.__all__:
        assert getattr(removal, name) is not None


def test_occlusion_mask_dependent_filler_matches_step_by_step_reference(cnn, batch):
    """A mask-dependent filler (an inpainter) against a plain loop over images and windows."""

    def local_mean(x, m):  # fill each hole with the mean of the kept pixels, per channel
        kept = 1 - m
        return ((x * kept).sum((2, 3), keepdim=True) / kept.sum((2, 3), keepdim=True)).expand_as(x)

    fill = InpainterFill(local_mean)
    x, y = batch
    sal = SlidingPatchOcclusion(patch_size=6, stride=3, filler=fill, chunk_size=5)(cnn, x, y)
    ref = torch.zeros(3, 1, 12, 12, dtype=torch.float64)
    count = torch.zeros(1, 1, 12, 12, dtype=torch.float64)
    with torch.no_grad():
        for i in range(3):
            p0 = cnn(x[i : i + 1]).softmax(1)[0, y[i]].double()
            for r0 in (0, 3, 6):
                for c0 in (0, 3, 6):
                    m = torch.zeros(1, 1, 12, 12, dtype=torch.bool)
                    m[..., r0 : r0 + 6, c0 : c0 + 6] = True
                    xi = torch.where(m, local_mean(x[i : i + 1], m.float()), x[i : i + 1])
                    ref[i] += (p0 - cnn(xi).softmax(1)[0, y[i]].double()) * m[0]
                    if i == 0:
                        count += m
    assert_close(sal, (ref / count).float(), **TOL)


# --------------------------------------------------------------------------------------------------
# LIME: closed form on a linear model, scikit-learn's weighted ridge and distances
# --------------------------------------------------------------------------------------------------


def segment_sum_model(seg: torch.Tensor, num_seg: int, weights: torch.Tensor, bias: torch.Tensor) -> nn.Module:
    """logits[k] = sum_s weights[k, s] · (sum of x over segment s, all channels) + bias[k]."""

    class SegSum(nn.Module):
        def forward(self, x):
            onehot = F.one_hot(seg.flatten(), num_seg).to(x)  # (H*W, S)
            sums = x.sum(1).flatten(1) @ onehot  # (N, S)
            return sums @ weights.to(x).T + bias.to(x)

    return SegSum()


def test_lime_recovers_linear_segment_weights():
    """Filler zeros + a model linear in the segment sums ⇒ the score is exactly linear in the on/off
    pattern: f(z) = b + Σ_s W_s S_s z_s; with a vanishing penalty LIME's coefficients are W_s S_s."""
    g = torch.Generator().manual_seed(3)
    x = torch.rand(2, 2, 8, 8, generator=g, dtype=torch.float64)
    seg = grid_segments(8, 8, 4)
    weights, bias = torch.randn(3, 16, generator=g, dtype=torch.float64), torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    model = segment_sum_model(seg, 16, weights, bias)
    y = torch.tensor([2, 0])
    lime = Lime(num_samples=60, segmentation="grid", grid_size=4, score="logit", alpha=1e-9)
    fit = lime.fit(model, x, y)
    seg_sums = x.sum(1).flatten(1) @ F.one_hot(seg.flatten(), 16).double()  # (N, 16)
    expected = weights[y] * seg_sums
    assert_close(fit.coef, expected, atol=1e-6, rtol=1e-6)
    assert_close(fit.intercept, bias[y], atol=1e-6, rtol=1e-6)
    sal = lime(model, x, y)
    assert_close(sal, torch.gather(expected, 1, seg.flatten().expand(2, -1)).view(2, 1, 8, 8).float(), atol=1e-5, rtol=1e-5)


def test_lime_matches_sklearn_ridge_and_cosine_kernel(cnn, batch):
    from sklearn.linear_model import Ridge
    from sklearn.metrics import pairwise_distances

    x, y = batch
    fit = Lime(num_samples=80, n_segments=12).fit(cnn, x, y)
    for i in range(3):
        f = int(fit.num_features[i])
        z = fit.samples[i, :, :f].numpy()
        assert (fit.samples[i, :, f:] == 0).all()
        d = pairwise_distances(z, z[:1], metric="cosine").ravel()
        w = np.sqrt(np.exp(-(d**2) / 0.25**2))  # lime_image's kernel, width 0.25
        np.testing.assert_allclose(fit.weights[i].numpy(), w, atol=1e-12)
        ridge = Ridge(alpha=1.0, fit_intercept=True).fit(z, fit.scores[i].numpy(), sample_weight=w)
        np.testing.assert_allclose(fit.coef[i, :f].numpy(), ridge.coef_, atol=1e-9)
        np.testing.assert_allclose(fit.intercept[i].item(), ridge.intercept_, atol=1e-9)
    assert (fit.samples[:, 0] == (torch.arange(fit.samples.shape[-1]) < fit.num_features[:, None])).all()  # row 0: all on


def test_lime_scores_are_the_model_on_the_filled_patterns(cnn, batch):
    x, y = batch
    fit = Lime(num_samples=10, segmentation="grid", grid_size=3, filler=0.7, chunk_size=4).fit(cnn, x, y)
    i, j = 1, 5
    kept = fit.samples[i, j][fit.segments[i]].bool()
    xi = torch.where(kept, x[i], torch.full_like(x[i], 0.7)).unsqueeze(0)
    with torch.no_grad():
        assert math.isclose(fit.scores[i, j].item(), cnn(xi).softmax(1)[0, y[i]].item(), rel_tol=1e-6)


def test_weighted_ridge_zero_columns_get_zero_coefficients():
    g = torch.Generator().manual_seed(0)
    z = (torch.rand(1, 30, 4, generator=g) < 0.5).double()
    z[..., 3] = 0
    coef, _ = weighted_ridge(z, torch.rand(1, 30, generator=g, dtype=torch.float64), torch.rand(1, 30, generator=g, dtype=torch.float64), 1.0)
    assert coef[0, 3] == 0 and (coef[0, :3] != 0).all()


def test_slic_segments_match_scikit_image(batch):
    from skimage.segmentation import slic

    x, _ = batch
    seg = slic_segments(x, n_segments=10, compactness=30, sigma=1)
    img = x[0].double()
    img = (img - img.min()) / (img.max() - img.min())
    ref = slic(np.moveaxis(img.numpy(), 0, -1), n_segments=10, compactness=30, sigma=1, start_label=0, channel_axis=-1)
    assert seg.shape == (3, 12, 12) and seg.dtype == torch.long
    np.testing.assert_array_equal(seg[0].numpy(), np.unique(ref, return_inverse=True)[1].reshape(ref.shape))
    gray = slic_segments(x[:, :1], n_segments=10)  # one channel: scaled to [0, 100]
    assert gray.shape == (3, 12, 12) and int(gray.min()) == 0


def test_grid_segments():
    seg = grid_segments(5, 6, (2, 3))
    assert seg.tolist()[0] == [0, 0, 1, 1, 2, 2] and seg.tolist()[4] == [3, 3, 4, 4, 5, 5]


def test_lime_samples_are_column_stable():
    a = lime_samples(20, 7, torch.Generator().manual_seed(5))
    b = lime_samples(20, 3, torch.Generator().manual_seed(5))
    assert_close(a[:, :3], b)
    assert (a[0] == 1).all() and 0.3 < a[1:].mean() < 0.7


def test_lime_custom_segmentation_function(cnn, batch):
    x, y = batch

    def halves(inputs):
        seg = torch.zeros(inputs.shape[0], 12, 12, dtype=torch.int64)
        seg[:, :, 6:] = 7  # labels need not be contiguous
        return seg

    sal = Lime(num_samples=30, segmentation=halves)(cnn, x, y)
    assert (sal[:, :, :, :6] == sal[:, :, :1, :1]).all() and (sal[:, :, :, 6:] == sal[:, :, :1, 6:7]).all()


# --------------------------------------------------------------------------------------------------
# RISE: masks as the authors' code draws them; convergence to the closed form on a linear model
# --------------------------------------------------------------------------------------------------


def test_rise_masks_match_the_authors_skimage_recipe():
    from skimage.transform import resize

    ms = RiseMasks(5, (10, 11), 3, 0.5, torch.Generator().manual_seed(2))
    out = ms.masks(torch.arange(5))
    ch, cw = math.ceil(10 / 3), math.ceil(11 / 3)
    for i in range(5):
        up = resize(ms.grids[i].numpy(), ((3 + 1) * ch, (3 + 1) * cw), order=1, mode="reflect", anti_aliasing=False)
        r, c = int(ms.shift_r[i]), int(ms.shift_c[i])
        np.testing.assert_allclose(out[i, 0].numpy(), up[r : r + 10, c : c + 11], atol=1e-6)
    assert ((ms.shift_r >= 0) & (ms.shift_r < ch)).all() and ((ms.shift_c >= 0) & (ms.shift_c < cw)).all()


def test_rise_mask_i_does_not_depend_on_num_masks():
    a = rise_masks(9, (8, 8), 3, 0.3, torch.Generator().manual_seed(1))
    b = rise_masks(4, (8, 8), 3, 0.3, torch.Generator().manual_seed(1))
    assert_close(a[:4], b)


def test_rise_converges_to_closed_form_on_linear_model():
    r"""f = w·x + b (logit), zeros filler: S(k) = E[f(x ⊙ M) M_k] / p = (Σ_j a_j E[M_j M_k] + b p) / p
    with a_j = w_j x_j. Bilinear weights sum to 1, so E[M_j M_k] = p² + p(1 − p) E_shift[Σ_c φ_c(j) φ_c(k)],
    computed exactly by enumerating the shifts. Tolerance: 5 standard errors of the Monte-Carlo mean
    (per-pixel standard deviation estimated from an independent mask set)."""
    h = w = 12
    cells, p, num = 3, 0.5, 4000
    g = torch.Generator().manual_seed(11)
    x = torch.rand(1, 1, h, w, generator=g, dtype=torch.float64)
    lin = nn.Linear(h * w, 2).double()
    with torch.no_grad():
        lin.weight.copy_(torch.randn(2, h * w, generator=g, dtype=torch.float64))
        lin.bias.copy_(torch.tensor([0.7, -0.2]))
    model = nn.Sequential(nn.Flatten(), lin).eval()
    y = torch.tensor([0])
    est = RISE(num_masks=num, cells=cells, p=p, score="logit", chunk_size=500, seed=3)(model, x, y)[0, 0].double()

    from skimage.transform import resize

    cell = math.ceil(h / cells)
    up = (cells + 1) * cell
    onehot = np.eye(cells * cells).reshape(-1, cells, cells)  # φ_c: the upsampled one-hot grids, as RISE's code
    basis = torch.from_numpy(np.stack([resize(o, (up, up), order=1, mode="reflect", anti_aliasing=False) for o in onehot]))
    k = torch.zeros(h * w, h * w, dtype=torch.float64)
    for sr in range(cell):
        for sc in range(cell):
            phi = basis[:, sr : sr + h, sc : sc + w].reshape(cells * cells, -1).T  # (HW, cells²)
            k += phi @ phi.T
    k /= cell * cell
    second = p * p + p * (1 - p) * k
    a = (lin.weight[0] * x.flatten()).detach()
    exact = ((a @ second + lin.bias[0].detach() * p) / p).view(h, w)

    masks = rise_masks(2000, (h, w), cells, p, torch.Generator().manual_seed(99)).double()
    with torch.no_grad():
        f = model(x * masks)[:, 0]
    terms = f.view(-1, 1, 1) * masks[:, 0] / p
    tol = 5 * terms.std(0) / math.sqrt(num)
    assert ((est - exact).abs() <= tol).all(), float(((est - exact).abs() / tol).max())
    assert float(tol.max()) < 0.25 * float(exact.max() - exact.min())  # the test can tell maps apart


def test_rise_with_fillers_composites_soft_masks(cnn, batch):
    """Substrate filler: x ⊙ M + b ⊙ (1 − M); checked against the formula with the masks replayed."""
    x, y = batch
    sal = RISE(num_masks=20, cells=3, filler=0.5, seed=4)(cnn, x, y)
    masks = rise_masks(20, (12, 12), 3, 0.5, torch.Generator().manual_seed(4))
    with torch.no_grad():
        ref = torch.stack(
            [(cnn(x[i] * masks + 0.5 * (1 - masks)).softmax(1)[:, y[i]].view(-1, 1, 1, 1) * masks).sum(0) / (20 * 0.5) for i in range(3)]
        )
    assert_close(sal, ref, atol=1e-6, rtol=1e-5)


# --------------------------------------------------------------------------------------------------
# Meaningful perturbation
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda: MeaningfulPerturbation(mask_size=8),  # blur (sigma 10), soft composite
        lambda: MeaningfulPerturbation.generative(InpainterFill(const_inpainter), mask_size=8),  # binary, straight-through
    ],
    ids=["blur", "inpainter"],
)
def test_meaningful_perturbation_finds_the_informative_region(make):
    x, y, inside = region_case()
    model = RegionModel()
    explainer = make()
    sal = explainer(model, x, y)
    for i in range(2):
        top = sal[i, 0].flatten().topk(int(inside.sum())).indices
        assert inside.flatten()[top].all()  # the 16 highest pixels are the region's
        assert sal[i, 0][inside].mean() > 0.9
    if not explainer.filler.mask_dependent:  # deleting the found mask does kill the class
        keep = 1 - sal
        deleted = x * keep + explainer.filler.substrate(x) * (1 - keep)
        with torch.no_grad():
            assert (model(deleted).softmax(1)[:, 0] < 0.1 * model(x).softmax(1)[:, 0]).all()


def test_meaningful_perturbation_defaults_follow_the_seed_code():
    mp = MeaningfulPerturbation()
    assert (mp.iterations, mp.lr, mp.l1_coeff, mp.tv_coeff, mp.tv_beta, mp.jitter) == (300, 0.1, 1e-4, 1e-2, 3.0, 4)
    assert mp.filler.key == "blur(10,61)" and not mp.perturb_binary and mp._mask_shape(224, 224) == (28, 28)
    g = MeaningfulPerturbation.telea()
    assert isinstance(g.filler, Telea) and g.perturb_binary and g.name == "meaningful_perturbation_telea"


def test_tv_norm_and_binarize_threshold_by_hand():
    m = torch.tensor([[[[0.0, 1.0], [0.5, 0.5]]]])
    # rows: |0 - 0.5|^3 + |1 - 0.5|^3 = 0.25; columns: |0 - 1|^3 + |0.5 - 0.5|^3 = 1
    assert_close(tv_norm(m, 3.0), torch.tensor([1.25]))
    assert_close(tv_norm(m, 1.0), torch.tensor([2.0]))
    lv = binarize_threshold(torch.stack([m[0], 0.2 * m[0] + 0.8]))
    assert_close(lv.flatten(), torch.tensor([0.5, 0.9]))  # max(0.5, (max + min) / 2)


def test_meaningful_perturbation_under_inference_mode(batch, cnn):
    x, y = batch
    ref = MeaningfulPerturbation(mask_size=4, iterations=3)(cnn, x, y)
    with torch.inference_mode():
        out = MeaningfulPerturbation(mask_size=4, iterations=3)(cnn, x, y)
    assert_close(out, ref)


# --------------------------------------------------------------------------------------------------
# Shared invariants
# --------------------------------------------------------------------------------------------------


@fast_params
def test_chunk_size_and_batch_composition_do_not_change_maps(make, cnn, batch):
    x, y = batch
    full = make(chunk_size=64)(cnn, x, y)
    assert full.shape == (3, 1, 12, 12) and full.dtype == torch.float32 and torch.isfinite(full).all()
    assert_close(make(chunk_size=1)(cnn, x, y), full, atol=1e-6, rtol=1e-5)
    assert_close(make()(cnn, x[1:2], y[1:2]), full[1:2], atol=1e-6, rtol=1e-5)
    assert full.abs().max() > 0


@fast_params
def test_model_mode_params_grads_and_global_rng_untouched(make):
    torch.manual_seed(0)
    model = BNDropCNN()
    with torch.no_grad():
        model(torch.rand(8, 3, 12, 12) * 2 + 0.5)
    model.train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = torch.rand(2, 3, 12, 12), torch.tensor([0, 3])
    rng = torch.get_rng_state()
    a = make(filler=UniformNoise())(model, x, y)
    assert torch.equal(torch.get_rng_state(), rng)
    assert model.training and all(m.training for m in model.modules())
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    b = make(filler=UniformNoise())(model, x, y)
    assert_close(a, b)  # seeded per call: the same map every epoch


@fast_params
def test_generator_is_used_and_advances(make, cnn, batch):
    x, y = batch
    g = torch.Generator().manual_seed(123)
    first = make(generator=g, filler=UniformNoise())(cnn, x, y)
    second = make(generator=g, filler=UniformNoise())(cnn, x, y)
    again = make(generator=torch.Generator().manual_seed(123), filler=UniformNoise())(cnn, x, y)
    assert_close(first, again)
    assert not torch.allclose(first, second)


@fast_params
@pytest.mark.parametrize("filler", ["zeros", "blur", 0.25, Blur(sigma=1.0), "telea", InpainterFill(const_inpainter), "noisy_linear"])
def test_every_filler_is_accepted(make, filler, cnn, batch):
    x, y = batch
    sal = make(filler=filler)(cnn, x[:1], y[:1])
    assert sal.shape == (1, 1, 12, 12) and torch.isfinite(sal).all()


@fast_params
def test_output_transform_for_tuple_models(make, cnn, batch):
    class TupleModel(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = cnn

        def forward(self, x):
            return self.net(x), x.flatten(1)

    x, y = batch
    assert_close(make(output_transform=lambda out: out[0])(TupleModel(), x, y), make()(cnn, x, y))


def test_generative_variants():
    inp = nn.Identity()
    for cls in (SlidingPatchOcclusion, Lime, MeaningfulPerturbation, RISE):
        e = cls.telea(radius=2)
        assert isinstance(e.filler, Telea) and e.filler.radius == 2 and e.name == f"{cls.default_name}_telea"
        g = cls.generative(inp)
        assert isinstance(g.filler, InpainterFill) and g.name == f"{cls.default_name}_g"
    e = RISE.generative(lambda x, m: x, name="rise_inp")
    assert isinstance(e.filler, InpainterFill) and e.name == "rise_inp"
    assert SlidingPatchOcclusion.generative(Constant(0.5)).filler.key == "constant(0.5)"
    assert isinstance(Lime.generative(inp).filler, InpainterFill)


# --------------------------------------------------------------------------------------------------
# Errors name the argument
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "build, exc, needle",
    [
        (lambda: SlidingPatchOcclusion(patch_size=4, stride=5), ValueError, "`stride` (5, 5) must not exceed `patch_size`"),
        (lambda: SlidingPatchOcclusion(patch_size=0), ValueError, "`patch_size` must be an int >= 1"),
        (lambda: SlidingPatchOcclusion(patch_size=(2, 2, 2)), ValueError, "`patch_size` must be an int >= 1 or a pair"),
        (lambda: SlidingPatchOcclusion(filler="paint"), ValueError, "`filler` must be one of"),
        (lambda: SlidingPatchOcclusion(score="prob"), ValueError, "`score` must be one of"),
        (lambda: SlidingPatchOcclusion(chunk_size=0), ValueError, "`chunk_size` must be an int >= 1"),
        (lambda: SlidingPatchOcclusion(seed=1.5), TypeError, "`seed` must be an int"),
        (lambda: SlidingPatchOcclusion(generator=0), TypeError, "`generator` must be a torch.Generator"),
        (lambda: SlidingPatchOcclusion.generative(filler="zeros"), ValueError, "`filler` is set by `generative()`"),
        (lambda: SlidingPatchOcclusion.telea(filler="zeros"), ValueError, "`filler` is set by `telea()`"),
        (lambda: SlidingPatchOcclusion.generative(42), TypeError, "`inpainter` must be a callable"),
        (lambda: SlidingPatchOcclusion(rule="max"), ValueError, "`rule` must be one of"),
        (lambda: Lime(num_samples=1), ValueError, "`num_samples` must be an int >= 2"),
        (lambda: Lime(segmentation="quickshift"), ValueError, "`segmentation` must be one of"),
        (lambda: Lime(alpha=0.0), ValueError, "`alpha` must be a number in (0, inf]"),
        (lambda: Lime(kernel_width="wide"), TypeError, "`kernel_width` must be a finite number"),
        (lambda: Lime(compactness=-1.0), ValueError, "`compactness` must be a number in (0, inf]"),
        (lambda: Lime(sigma=-1.0), ValueError, "`sigma` must be a number in [0, inf]"),
        (lambda: Lime(slic_image=3), TypeError, "`slic_image` must be a function"),
        (lambda: MeaningfulPerturbation(iterations=0), ValueError, "`iterations` must be an int >= 1"),
        (lambda: MeaningfulPerturbation(lr=0.0), ValueError, "`lr` must be a number in (0, inf]"),
        (lambda: MeaningfulPerturbation(tv_beta=0.5), ValueError, "`tv_beta` must be a number in [1, inf]"),
        (lambda: MeaningfulPerturbation(l1_coeff=-1.0), ValueError, "`l1_coeff` must be a number in [0, inf]"),
        (lambda: MeaningfulPerturbation(tv_coeff=-1.0), ValueError, "`tv_coeff` must be a number in [0, inf]"),
        (lambda: MeaningfulPerturbation(mask_size=(0, 2)), ValueError, "`mask_size` must be an int >= 1"),
        (lambda: MeaningfulPerturbation(jitter=-1), ValueError, "`jitter` must be an int >= 0"),
        (lambda: MeaningfulPerturbation(upsample="cubic"), ValueError, "`upsample` must be one of"),
        (lambda: MeaningfulPerturbation(init="circular"), ValueError, "`init` must be one of"),
        (lambda: MeaningfulPerturbation(perturb_binary=1), TypeError, "`perturb_binary` must be a bool"),
        (lambda: RISE(p=0.0), ValueError, "`p` must be a number in (0, 1]"),
        (lambda: RISE(p=1.5), ValueError, "`p` must be a number in (0, 1]"),
        (lambda: RISE(num_masks=0), ValueError, "`num_masks` must be an int >= 1"),
        (lambda: RISE(cells=0), ValueError, "`cells` must be an int >= 1"),
        (lambda: grid_segments(4, 4, 5), ValueError, "`grid_size` (5, 5) must be at most the image size"),
    ],
)
def test_constructor_errors_name_the_argument(build, exc, needle):
    with pytest.raises(exc, match=needle.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        build()


@pytest.mark.parametrize(
    "explainer, needle",
    [
        (SlidingPatchOcclusion(patch_size=13, stride=2), r"`patch_size` \(13, 13\) must fit in the 12x12 inputs"),
        (MeaningfulPerturbation(mask_size=20), r"`mask_size` \(20, 20\) must fit in the 12x12 inputs"),
        (RISE(cells=13), "`cells` must be at most the image side 12"),
        (Lime(segmentation=lambda x: torch.zeros(3, 12, 12)), r"`segmentation` must return integer labels of shape \(3, 12, 12\)"),
        (Lime(slic_image=lambda x: x[:, :, :4]), r"`slic_image` must return \(N, C, H, W\) images of the inputs' size"),
    ],
)
def test_call_errors_name_the_argument(explainer, needle, cnn, batch):
    x, y = batch
    with pytest.raises(ValueError, match=needle):
        explainer(cnn, x, y)


def test_inputs_and_target_are_checked(cnn, batch):
    x, y = batch
    with pytest.raises(ValueError, match="`inputs` must have shape"):
        RISE(num_masks=4, cells=2)(cnn, x[0], y)
    with pytest.raises(ValueError, match="`target` must have shape"):
        RISE(num_masks=4, cells=2)(cnn, x, y[:2])


# --------------------------------------------------------------------------------------------------
# Hyper-parameter robustness
# --------------------------------------------------------------------------------------------------


def power_explainer(power: float = 1.0, filler: object = None, noise: float = 0.0):
    """A stand-in explainer: the map is x ** power (summed over channels) plus seeded noise scaled by
    ``noise · power`` — ``power`` is the swept setting, ``filler`` is ignored."""

    def explain(model, inputs, target):
        g = torch.Generator().manual_seed(int(power * 10))
        base = inputs.sum(1, keepdim=True) ** power
        return base + noise * power * torch.rand(base.shape, generator=g)

    return explain


def test_robustness_is_one_when_the_setting_is_ignored(cnn, batch):
    from pl_saliency.analysis import hyperparameter_robustness

    x, y = batch
    report = hyperparameter_robustness(
        cnn, x, y, lambda patch_size, filler="zeros", **kw: SlidingPatchOcclusion(patch_size=4, stride=2, filler=filler),
        "patch_size", [3, 5, 7], fillers=["zeros", "blur"], ssim_kernel_size=5,
    )  # fmt: skip
    for f in ("zeros", "blur"):
        assert report.scores[f]["spearman"] == pytest.approx(1.0, abs=1e-9)
        assert report.scores[f]["ssim"] == pytest.approx(1.0, abs=1e-6)
    assert report.fillers == ["zeros", "blur"] and report.similarities == ["spearman", "ssim"]
    assert len(report.rows()) == 4 and set(report.summary()) == {
        "robustness/patch_size/zeros/spearman", "robustness/patch_size/zeros/ssim",
        "robustness/patch_size/blur/spearman", "robustness/patch_size/blur/ssim",
    }  # fmt: skip


def test_robustness_matches_scipy_spearman_and_torchmetrics_ssim(cnn, batch):
    from scipy.stats import spearmanr
    from torchmetrics.functional.image import structural_similarity_index_measure as ssim

    from pl_saliency.analysis import hyperparameter_robustness

    x, y = batch
    values = [1.0, 2.0, 3.0]
    report = hyperparameter_robustness(
        cnn, x, y, power_explainer, "power", values, fixed={"noise": 0.5}, ssim_kernel_size=5, keep_maps=True
    )
    maps = [power_explainer(v, noise=0.5)(cnn, x, y) for v in values]
    assert_close(report.maps["default"], torch.stack(maps))

    def scaled(m):
        lo, hi = m.amin(dim=(1, 2, 3), keepdim=True), m.amax(dim=(1, 2, 3), keepdim=True)
        return ((m - lo) / (hi - lo)).double()

    pairs = [(0, 1), (0, 2), (1, 2)]
    sp = torch.tensor([[spearmanr(maps[i][n].flatten(), maps[j][n].flatten())[0] for n in range(3)] for i, j in pairs])
    ss = torch.stack([ssim(scaled(maps[i]), scaled(maps[j]), kernel_size=5, sigma=1.5, data_range=1.0, reduction="none") for i, j in pairs])
    assert_close(report.per_sample["default"]["spearman"], sp.mean(0).double(), atol=1e-6, rtol=1e-6)
    assert_close(report.per_sample["default"]["ssim"], ss.mean(0).double(), atol=1e-5, rtol=1e-5)
    assert report.scores["default"]["spearman"] == pytest.approx(float(sp.mean()), abs=1e-6)
    assert_close(report.pairwise["default"]["spearman"][0, 2], sp[1].mean().double(), atol=1e-6, rtol=1e-6)
    assert 0 < report.scores["default"]["spearman"] < 0.999  # the noise grows with the setting


def test_robustness_per_filler_with_real_occlusion(cnn, batch):
    from pl_saliency.analysis import hyperparameter_robustness

    x, y = batch
    report = hyperparameter_robustness(
        cnn, x[:2], y[:2], SlidingPatchOcclusion, "patch_size", [3, 5, 7],
        fillers={"gray": "zeros", "inpaint": InpainterFill(const_inpainter)}, fixed={"stride": 2},
        similarities="spearman",
    )  # fmt: skip
    assert set(report.scores) == {"gray", "inpaint"} and report.similarities == ["spearman"]
    for f in ("gray", "inpaint"):
        assert -1 <= report.scores[f]["spearman"] <= 1
        assert report.pairwise[f]["spearman"].shape == (3, 3) and (report.pairwise[f]["spearman"].diagonal() == 1).all()


@pytest.mark.parametrize(
    "kwargs, exc, needle",
    [
        (dict(explainer=3), TypeError, "`explainer` must be a factory"),
        (dict(param=""), TypeError, "`param` must be the name of a keyword argument"),
        (dict(values=[1]), ValueError, "`values` must be a sequence of at least two values"),
        (dict(values="ab"), ValueError, "`values` must be a sequence of at least two values"),
        (dict(fixed={"power": 1}), ValueError, "`fixed` must not set the swept `power`"),
        (dict(fillers=[]), ValueError, "`fillers` must hold at least one filler"),
        (dict(fillers=["zeros", "zeros"]), ValueError, "`fillers` must have distinct non-empty names"),
        (dict(fillers=["paint"]), ValueError, "`filler` must be one of"),
        (dict(similarities="kendall"), ValueError, "`similarities` must hold names in"),
        (dict(similarities=[]), ValueError, "`similarities` must be one of"),
        (dict(abs=1), TypeError, "`abs` must be a bool"),
        (dict(similarities=["ssim", "ssim"]), ValueError, "`similarities` must have distinct names"),
        (dict(ssim_kernel_size=0), ValueError, "`ssim_kernel_size` must be an int >= 1"),
        (dict(explainer=lambda **kw: 5), TypeError, "`explainer` must build a callable explainer"),
    ],
)
def test_robustness_errors_name_the_argument(kwargs, exc, needle, cnn, batch):
    from pl_saliency.analysis import hyperparameter_robustness

    x, y = batch
    args = dict(explainer=power_explainer, param="power", values=[1.0, 2.0], ssim_kernel_size=5)
    args.update(kwargs)
    with pytest.raises(exc, match=needle):
        hyperparameter_robustness(cnn, x, y, **args)


def test_robustness_report_plot(cnn, batch):
    pytest.importorskip("matplotlib")
    from pl_saliency.analysis import hyperparameter_robustness

    x, y = batch
    report = hyperparameter_robustness(cnn, x, y, power_explainer, "power", [1.0, 2.0], ssim_kernel_size=5)
    fig, ax = report.plot("ssim")
    assert fig is not None
    with pytest.raises(ValueError, match="`similarity` must be one of"):
        report.plot("hog")
