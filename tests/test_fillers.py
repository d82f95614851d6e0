"""Fillers: noise (closed forms from the generator, Quantus' perturbation functions), noisy linear
imputation (pytorch-grad-cam's ROAD ``NoisyLinearImputer``), Telea (OpenCV's own 8-bit path), generative
inpainters, and every filler through the batched engine against a step-by-step reference."""

from __future__ import annotations

import math
import warnings

import cv2
import numpy as np
import pytest
import torch
from pytorch_grad_cam.metrics.road import NoisyLinearImputer
from torch import nn

from pl_saliency.perturbation import FILLER_NAMES
from pl_saliency.perturbation import GaussianNoise
from pl_saliency.perturbation import InpainterFill
from pl_saliency.perturbation import NoisyLinear
from pl_saliency.perturbation import Telea
from pl_saliency.perturbation import UniformNoise
from pl_saliency.perturbation import gaussian_noise
from pl_saliency.perturbation import get_filler
from pl_saliency.perturbation import noisy_linear
from pl_saliency.perturbation import perturbation_curves
from pl_saliency.perturbation import telea
from pl_saliency.perturbation import uniform_noise


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _masks(n: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    """Masks of several kinds: sparse, half, dense random; a square blob; a border strip; one pixel kept."""
    g = _gen(seed)
    dens = torch.tensor([0.1, 0.5, 0.9])
    m = torch.rand(3, 1, h, w, generator=g) < dens.view(3, 1, 1, 1)
    blob = torch.zeros(1, 1, h, w, dtype=torch.bool)
    blob[..., h // 4 : h // 4 + h // 2, w // 4 : w // 4 + w // 2] = True
    border = torch.zeros(1, 1, h, w, dtype=torch.bool)
    border[..., :, : w // 3] = True
    one_kept = torch.ones(1, 1, h, w, dtype=torch.bool)
    one_kept[..., h - 1, 2] = False
    return torch.cat([m, blob, border, one_kept])[:n]


# --------------------------------------------------------------------------------------------- noise


@pytest.mark.parametrize("additive", [False, True])
def test_uniform_noise_is_the_generators_draw(additive):
    x = torch.rand(3, 2, 5, 6, generator=_gen(0))
    mask = torch.rand(3, 1, 5, 6, generator=_gen(1)) < 0.4
    out = UniformNoise(low=-2.0, high=3.0, additive=additive)(x, mask, _gen(7))
    noise = -2.0 + 5.0 * torch.rand(3, 2, 5, 6, generator=_gen(7))
    expected = torch.where(mask, x + noise if additive else noise, x)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)
    assert out[~mask.expand_as(x)].equal(x[~mask.expand_as(x)])


@pytest.mark.parametrize("additive", [False, True])
def test_gaussian_noise_is_the_generators_draw(additive):
    x = torch.rand(3, 2, 5, 6, generator=_gen(0))
    mask = torch.rand(3, 1, 5, 6, generator=_gen(1)) < 0.4
    out = GaussianNoise(std=0.3, mean=0.5, additive=additive)(x, mask, _gen(9))
    noise = 0.5 + 0.3 * torch.randn(3, 2, 5, 6, generator=_gen(9))
    torch.testing.assert_close(out, torch.where(mask, x + noise if additive else noise, x), rtol=0, atol=1e-6)


def test_noise_statistics():
    x = torch.zeros(4, 3, 32, 32)
    u = UniformNoise(low=0.0, high=1.0).substrate(x, _gen(0))
    assert 0 <= float(u.min()) and float(u.max()) < 1
    assert abs(float(u.mean()) - 0.5) < 0.01 and abs(float(u.var()) - 1 / 12) < 0.005
    z = GaussianNoise(std=2.0, mean=-1.0).substrate(x, _gen(0))
    assert abs(float(z.mean()) + 1) < 0.05 and abs(float(z.std()) - 2) < 0.05


@pytest.mark.parametrize(
    "filler, patch_name, kwargs",
    [
        (GaussianNoise(std=0.2, mean=0.1, additive=True), "normal", {"perturb_mean": 0.1, "perturb_std": 0.2}),
        (UniformNoise(low=-0.3, high=0.5, additive=True), "uniform", {"lower_bound": -0.3, "upper_bound": 0.5}),
    ],
)
def test_additive_noise_equals_quantus_perturb_funcs(monkeypatch, filler, patch_name, kwargs):
    """Quantus' ``gaussian_noise`` / ``uniform_noise`` add noise at the indices; with its numpy draw
    replaced by ours (same distribution parameters), its output must equal our additive filler's."""
    from quantus.functions import perturb_func

    x = torch.rand(1, 3, 6, 5, generator=_gen(0), dtype=torch.float64)
    mask = torch.rand(1, 1, 6, 5, generator=_gen(1)) < 0.5
    ours = filler(x, mask, _gen(4))

    def fake(low=0.0, high=1.0, size=None, loc=None, scale=None):
        if patch_name == "normal":
            return loc + scale * torch.randn(size, generator=_gen(4), dtype=torch.float64).numpy()
        return low + (high - low) * torch.rand(size, generator=_gen(4), dtype=torch.float64).numpy()

    if patch_name == "normal":
        monkeypatch.setattr(np.random, "normal", lambda loc, scale, size: fake(loc=loc, scale=scale, size=size))
        fn = perturb_func.gaussian_noise
    else:
        monkeypatch.setattr(np.random, "uniform", lambda low, high, size: fake(low=low, high=high, size=size))
        fn = perturb_func.uniform_noise
    flat = [int(i) for i in torch.nonzero(mask[0, 0].flatten()).flatten()]
    theirs = fn(x[0].numpy(), indices=flat, indexed_axes=[1, 2], **kwargs)
    torch.testing.assert_close(ours[0], torch.from_numpy(theirs), rtol=0, atol=1e-12)


def test_noise_generator_reproducible_and_global_rng_untouched():
    x = torch.rand(2, 3, 4, 4, generator=_gen(0))
    mask = torch.ones(2, 1, 4, 4, dtype=torch.bool)
    state = torch.get_rng_state()
    for fill in (UniformNoise(), GaussianNoise(), NoisyLinear(noise=0.5)):
        a, b, c = fill(x, mask, _gen(3)), fill(x, mask, _gen(3)), fill(x, mask, _gen(4))
        assert a.equal(b) and not a.equal(c)
        assert fill(x, mask).equal(fill(x, mask, _gen(0)))  # no generator: a fresh one seeded 0
    assert torch.equal(state, torch.get_rng_state())


# ------------------------------------------------------------------------------------ noisy linear


def _gradcam_imputation(x: torch.Tensor, removed: torch.Tensor) -> torch.Tensor:
    """pytorch-grad-cam's ROAD imputer (tleemann/road_evaluation), one image at a time, noise 0;
    their mask is 1 = kept."""
    return torch.stack([NoisyLinearImputer(noise=0.0)(x[i], (~removed[i, 0]).float()) for i in range(x.shape[0])])


@pytest.mark.parametrize("solver", ["auto", "banded", "direct", "cg"])
@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 12, 12), (3, 7, 10)])
def test_noisy_linear_equals_pytorch_grad_cam(solver, shape):
    c, h, w = shape
    x = torch.rand(6, c, h, w, generator=_gen(c * h + w))
    removed = _masks(6, h, w, seed=w)
    ours = NoisyLinear(noise=0.0, solver=solver)(x, removed)
    ref = _gradcam_imputation(x, removed)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-5)
    # the comparison can fail: a different weighting does not match
    assert not torch.allclose(NoisyLinear(noise=0.0, neighbors=4, solver=solver)(x, removed), ref, atol=1e-3)


def _road_chunk(n: int, c: int, h: int, w: int, smooth: bool, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A chunk as the engine builds it for ROAD: row i·P + k is image i with its top
    (0, 20, 40, 60, 80) % of a saliency map removed (random maps: scattered holes; smooth maps: blobs)."""
    g = _gen(seed)
    x = torch.rand(n, c, h, w, generator=g, dtype=torch.float64)
    s = torch.rand(n, 1, h, w, generator=g, dtype=torch.float64)
    if smooth:
        for _ in range(4):
            s = torch.nn.functional.avg_pool2d(torch.nn.functional.pad(s, (2, 2, 2, 2), mode="replicate"), 5, 1)
    rank = s.flatten(1).argsort(dim=1, descending=True).argsort(dim=1).view(n, 1, h, w)
    pct = (0, 20, 40, 60, 80)
    rows = torch.stack([x[i] for i in range(n) for _ in pct])
    removed = torch.stack([rank[i] < round(q / 100 * h * w) for i in range(n) for q in pct])
    return rows, removed


@pytest.mark.parametrize("neighbors", [4, 8])
@pytest.mark.parametrize(("shape", "smooth"), [((1, 32, 32), False), ((1, 32, 32), True), ((3, 24, 17), False), ((3, 17, 24), True)])
def test_noisy_linear_banded_equals_direct(neighbors, shape, smooth):
    """The new default CPU solver (band Cholesky) gives today's SuperLU numbers (issue 19: <= 1e-5;
    both are exact, so they agree to rounding) on ROAD-shaped chunks: mixed removal fractions and
    fully kept rows in one call, scattered and blob-shaped holes, non-square images, RGB."""
    x, removed = _road_chunk(3, *shape, smooth=smooth, seed=sum(shape) + smooth)
    banded = NoisyLinear(noise=0.0, neighbors=neighbors, solver="banded")(x, removed)
    direct = NoisyLinear(noise=0.0, neighbors=neighbors, solver="direct")(x, removed)
    torch.testing.assert_close(banded, direct, rtol=0, atol=1e-10)
    assert not banded.equal(x)  # something was filled
    assert NoisyLinear(noise=0.0, neighbors=neighbors)(x, removed).equal(banded)  # "auto" is "banded" on the CPU
    x32 = x.float()  # float32 inputs come back float32, the solve itself is float64
    torch.testing.assert_close(NoisyLinear(noise=0.0, neighbors=neighbors, solver="banded")(x32, removed), direct.float())


def test_noisy_linear_banded_equals_pytorch_grad_cam_on_road_chunks():
    """pytorch-grad-cam's imputer, one image at a time, at noise 0 (issue 19), on ROAD-shaped chunks."""
    for smooth in (False, True):
        x, removed = _road_chunk(2, 3, 16, 20, smooth=smooth, seed=5)
        x = x.float()  # grad-cam's imputer works in float32
        torch.testing.assert_close(NoisyLinear(noise=0.0)(x, removed), _gradcam_imputation(x, removed), rtol=0, atol=1e-5)


def test_noisy_linear_is_per_image_and_rgb_shares_the_system():
    """One block-diagonal system for the batch gives each image its own solution."""
    x = torch.rand(6, 3, 9, 9, generator=_gen(2))
    removed = _masks(6, 9, 9, seed=3)
    whole = NoisyLinear(noise=0.0)(x, removed)
    for i in range(6):
        torch.testing.assert_close(whole[i : i + 1], NoisyLinear(noise=0.0)(x[i : i + 1], removed[i : i + 1]))
    for ch in range(3):  # channels are independent right-hand sides of the same matrix
        torch.testing.assert_close(whole[:, ch : ch + 1], NoisyLinear(noise=0.0)(x[:, ch : ch + 1], removed))


@pytest.mark.parametrize("neighbors", [4, 8])
def test_noisy_linear_reproduces_a_linear_ramp_closed_form(neighbors):
    """Linear images are exact fixed points of both symmetric stencils: interior holes get the ramp back."""
    yy, xx = torch.meshgrid(torch.arange(10.0, dtype=torch.float64), torch.arange(11.0, dtype=torch.float64), indexing="ij")
    x = torch.stack([0.3 * yy - 0.2 * xx + 1.0, 0.05 * xx]).unsqueeze(0)
    removed = torch.zeros(1, 1, 10, 11, dtype=torch.bool)
    removed[..., 1:9, 2:6] = True
    removed[..., 4, 6:10] = True
    for solver in ("banded", "direct", "cg"):
        out = NoisyLinear(noise=0.0, neighbors=neighbors, solver=solver)(x, removed)
        assert out.dtype == torch.float64
        torch.testing.assert_close(out, x, rtol=0, atol=1e-5 if solver == "cg" else 1e-10)


def test_noisy_linear_noise_is_seeded_and_added_to_removed_pixels_only():
    x = torch.rand(3, 3, 8, 8, generator=_gen(0))
    removed = _masks(3, 8, 8)
    clean = NoisyLinear(noise=0.0)(x, removed)
    noisy = NoisyLinear(noise=0.05)(x, removed, _gen(11))
    eps = torch.randn(3, 3, 8, 8, generator=_gen(11))
    torch.testing.assert_close(noisy, torch.where(removed, clean + 0.05 * eps, x), rtol=0, atol=1e-6)
    assert noisy.equal(NoisyLinear(noise=0.05)(x, removed, _gen(11)))
    assert not noisy.equal(NoisyLinear(noise=0.05)(x, removed, _gen(12)))


def test_noisy_linear_edge_cases():
    x = torch.rand(2, 3, 5, 5, generator=_gen(0)) + 1
    none = torch.zeros(2, 1, 5, 5, dtype=torch.bool)
    every = torch.ones(2, 1, 5, 5, dtype=torch.bool)
    for solver in ("banded", "direct", "cg"):
        assert NoisyLinear(solver=solver)(x, none, _gen(0)).equal(x)
        assert NoisyLinear(noise=0.0, solver=solver)(x, every).equal(torch.zeros_like(x))
        mixed = torch.cat([every[:1], none[:1]])  # one fully removed image beside an intact one
        out = NoisyLinear(noise=0.0, solver=solver)(x, mixed)
        assert out[0].abs().max() == 0 and out[1].equal(x[1])


def test_noisy_linear_cg_warns_when_not_converged():
    x = torch.rand(1, 1, 16, 16, generator=_gen(0))
    removed = torch.ones(1, 1, 16, 16, dtype=torch.bool)
    removed[..., 0, :3] = False
    with pytest.warns(RuntimeWarning, match=r"conjugate gradients stopped after 2 iterations .* raise `max_iter`"):
        NoisyLinear(noise=0.0, solver="cg", max_iter=2)(x, removed)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        NoisyLinear(noise=0.0, solver="cg")(x, removed)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_noisy_linear_cg_on_cuda_matches_direct():  # pragma: no cover - runs on GPU machines
    x = torch.rand(4, 3, 12, 12, generator=_gen(0))
    removed = _masks(4, 12, 12)
    out = NoisyLinear(noise=0.01)(x.cuda(), removed.cuda(), _gen(1))
    assert out.device.type == "cuda"
    torch.testing.assert_close(out.cpu(), NoisyLinear(noise=0.01, solver="direct")(x, removed, _gen(1)), rtol=0, atol=1e-5)


# ------------------------------------------------------------------------------------------- telea


def test_telea_fills_a_smooth_gradient_far_better_than_zeros():
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 24), torch.linspace(0, 1, 24), indexing="ij")
    x = torch.stack([0.2 + 0.5 * xx, 0.9 - 0.6 * yy, 0.3 * xx + 0.4 * yy]).unsqueeze(0)
    removed = torch.zeros(1, 1, 24, 24, dtype=torch.bool)
    removed[..., 8:15, 9:16] = True
    out = Telea(radius=3)(x, removed)
    err = (out - x)[removed.expand_as(x)].abs()
    zero_err = x[removed.expand_as(x)].abs()
    mean_err = (x.mean(dim=(2, 3), keepdim=True) - x)[removed.expand_as(x)].abs()
    # OpenCV's own uint8 path errs by up to ~0.056 here (channel ranges 0.5-0.7): Telea is first order
    assert float(err.max()) < 0.08
    assert float(err.mean()) < 0.1 * float(zero_err.mean()) and float(err.mean()) < 0.5 * float(mean_err.mean())
    assert out[~removed.expand_as(x)].equal(x[~removed.expand_as(x)])


def test_telea_equals_opencv_8bit_path_on_8bit_images():
    """On 8-bit-valued images whose kept pixels span [0, 255], our float path is OpenCV's uint8 one
    up to OpenCV's own float/8-bit difference (a few units of 255)."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:16, 0:16]
    img = np.stack([xx * 17, 255 - yy * 17, (xx * yy) % 256], -1).clip(0, 255).astype(np.uint8)
    img = np.clip(img.astype(int) + rng.integers(-3, 4, img.shape), 0, 255).astype(np.uint8)
    img[0, 0], img[15, 15] = 0, 255
    hole = np.zeros((16, 16), np.uint8)
    hole[5:10, 4:11] = 1
    ref = cv2.inpaint(img, hole, 3, cv2.INPAINT_TELEA).astype(np.float32)
    x = torch.from_numpy(img.astype(np.float32)).permute(2, 0, 1).unsqueeze(0)
    removed = torch.from_numpy(hole.astype(bool))[None, None]
    ours = Telea(radius=3)(x, removed)[0].permute(1, 2, 0).numpy()
    assert np.abs(ours - ref).max() <= 4.0
    assert np.abs(ours - ref).mean() <= 1.0
    other = Telea(radius=1)(x, removed)[0].permute(1, 2, 0).numpy()  # a setting that changes the fill
    assert np.abs(other - ours).max() > 4.0


def test_telea_ignores_removed_values_and_is_affine_equivariant():
    x = torch.rand(3, 2, 12, 12, generator=_gen(0))
    removed = _masks(3, 12, 12, seed=1)
    out = Telea()(x, removed)
    x2 = torch.where(removed, torch.full_like(x, 100.0), x)
    torch.testing.assert_close(Telea()(x2, removed), out)
    torch.testing.assert_close(Telea()(3.0 * x - 7.0, removed), 3.0 * out - 7.0, rtol=0, atol=1e-4)


def test_telea_edge_cases():
    x = torch.rand(3, 3, 6, 6, generator=_gen(0))
    x[1] = 0.25  # constant kept pixels
    removed = torch.zeros(3, 1, 6, 6, dtype=torch.bool)
    removed[0] = True  # everything removed
    removed[1, :, 2:4, 2:4] = True
    out = Telea()(x, removed)
    assert out[0].abs().max() == 0
    torch.testing.assert_close(out[1], x[1])
    assert out[2].equal(x[2])


# --------------------------------------------------------------------------------------- inpainter


class Recorder(nn.Module):
    """Fills holes with the mean of the kept 3x3 neighbours (0 if none); records what it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[torch.Tensor, torch.Tensor, bool, bool]] = []
        self.register_buffer("k", torch.ones(1, 1, 3, 3))

    def forward(self, x, m):
        self.calls.append((x.clone(), m.clone(), self.training, torch.is_grad_enabled()))
        kept = 1 - m
        c = x.shape[1]
        num = nn.functional.conv2d(x * kept, self.k.expand(c, 1, 3, 3), padding=1, groups=c)
        den = nn.functional.conv2d(kept, self.k, padding=1)
        return torch.where(den > 0, num / den.clamp_min(1), torch.zeros_like(num))


def _local_mean(x, removed):
    removed = removed.bool()
    kept = (~removed).float()
    c = x.shape[1]
    k = torch.ones(1, 1, 3, 3)
    num = nn.functional.conv2d(x * kept, k.expand(c, 1, 3, 3), padding=1, groups=c)
    den = nn.functional.conv2d(kept, k, padding=1)
    return torch.where(removed, torch.where(den > 0, num / den.clamp_min(1), torch.zeros_like(num)), x)


def test_inpainter_gets_zeroed_inputs_float_mask_eval_mode_no_grad():
    module = Recorder().train()
    x = torch.rand(2, 3, 6, 6, generator=_gen(0)) + 1
    removed = _masks(2, 6, 6)
    with torch.enable_grad():
        out = InpainterFill(module)(x, removed)
    (given_x, given_m, training, grad), = module.calls
    assert given_m.dtype == x.dtype and given_m.shape == (2, 1, 6, 6)
    assert given_m.equal(removed.float())  # 1 = removed
    assert given_x.equal(torch.where(removed, torch.zeros_like(x), x))  # it never sees what was removed
    assert not training and not grad and module.training  # eval during the call, mode restored
    torch.testing.assert_close(out, _local_mean(x, removed))
    module.calls.clear()
    InpainterFill(module, mask_convention="kept")(x, removed)
    assert module.calls[0][1].equal((~removed).float())


def test_inpainter_identity_cannot_restore_removed_pixels():
    x = torch.rand(1, 3, 5, 5, generator=_gen(0)) + 1
    removed = _masks(1, 5, 5)
    out = InpainterFill(lambda t, m: t)(x, removed)
    assert out.equal(torch.where(removed, torch.zeros_like(x), x))


@pytest.mark.parametrize("mode", ["deletion", "insertion"])
def test_inpainter_chunks_through_the_engine(tiny_cnn, rgb_batch, mode):
    x, y = rgb_batch
    sal = torch.rand(4, 1, 12, 12, generator=_gen(2))
    curves = []
    for chunk_size in (1, 5, 1000):
        module = Recorder()
        curves.append(perturbation_curves(tiny_cnn, x, sal, y, mode=mode, filler=InpainterFill(module), steps=6,
                                          chunk_size=chunk_size))  # fmt: skip
        sizes = [c[0].shape[0] for c in module.calls]
        assert max(sizes) <= chunk_size and sum(sizes) == 4 * 7
    torch.testing.assert_close(curves[0], curves[1])
    torch.testing.assert_close(curves[0], curves[2])
    ref = _reference_curves(tiny_cnn, x, sal, y, mode=mode, fill=lambda i, xi, m: _local_mean(xi, m), steps=6)
    torch.testing.assert_close(curves[0], ref, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- through the engine


def _reference_curves(model, x, sal, y, *, mode, fill, steps):
    """Step by step from the deletion/insertion definition: rank positions by saliency (most
    relevant first), remove the first floor(k F / steps) (deletion) or all but them (insertion),
    replace them by ``fill(i, image, removed)`` one image at a time, score the softmax of the target."""
    n, _, h, w = x.shape
    num = h * w
    out = torch.zeros(n, steps + 1)
    for i in range(n):
        ranked = torch.argsort(sal[i, 0].flatten(), descending=True)
        for k in range(steps + 1):
            first = torch.zeros(num, dtype=torch.bool)
            first[ranked[: (k * num) // steps]] = True
            removed = (first if mode == "deletion" else ~first).view(1, 1, h, w)
            img = fill(i, x[i : i + 1], removed)
            with torch.no_grad():
                out[i, k] = model(img)[0].softmax(0)[y[i]]
    return out


def _substrate_fill(filler, x, seed):
    """Noise fillers draw one substrate for the whole batch; the reference picks each image's own."""
    sub = filler.substrate(x, _gen(seed))

    def fill(i, xi, removed):
        return torch.where(removed, sub[i : i + 1], xi)

    return fill


@pytest.mark.parametrize("mode", ["deletion", "insertion"])
@pytest.mark.parametrize(
    "name",
    ["uniform_noise", "gaussian_noise", "noisy_linear", "noisy_linear_cg", "telea"],
)
def test_every_filler_through_the_engine(tiny_cnn, rgb_batch, mode, name):
    x, y = rgb_batch
    sal = torch.rand(4, 1, 12, 12, generator=_gen(5))
    filler = {
        "uniform_noise": UniformNoise(low=-1.0, high=2.0),
        "gaussian_noise": GaussianNoise(std=0.7),
        "noisy_linear": NoisyLinear(noise=0.0),
        "noisy_linear_cg": NoisyLinear(noise=0.0, solver="cg"),
        "telea": Telea(radius=2),
    }[name]
    if filler.mask_dependent:
        def fill(i, xi, removed):
            return filler(xi, removed)
    else:
        fill = _substrate_fill(filler, x, seed=8)
    got = perturbation_curves(tiny_cnn, x, sal, y, mode=mode, filler=filler, steps=5, chunk_size=7, generator=_gen(8))
    ref = _reference_curves(tiny_cnn, x, sal, y, mode=mode, fill=fill, steps=5)
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-5)
    # the filler matters: zeros give other curves
    zeros = perturbation_curves(tiny_cnn, x, sal, y, mode=mode, filler="zeros", steps=5)
    assert not torch.allclose(got[:, 1:-1], zeros[:, 1:-1], atol=1e-4)


def test_noisy_engine_curves_are_reproducible(tiny_cnn, rgb_batch):
    x, y = rgb_batch
    sal = torch.rand(4, 1, 12, 12, generator=_gen(5))
    for filler in (NoisyLinear(noise=0.1), UniformNoise(), GaussianNoise()):
        a = perturbation_curves(tiny_cnn, x, sal, y, filler=filler, steps=4, chunk_size=6, generator=_gen(1))
        b = perturbation_curves(tiny_cnn, x, sal, y, filler=filler, steps=4, chunk_size=6, generator=_gen(1))
        c = perturbation_curves(tiny_cnn, x, sal, y, filler=filler, steps=4, chunk_size=6, generator=_gen(2))
        assert a.equal(b) and not torch.allclose(a, c)
    # substrate noise is drawn once per batch: the curve does not depend on chunking
    a = perturbation_curves(tiny_cnn, x, sal, y, filler=UniformNoise(), steps=4, chunk_size=1, generator=_gen(1))
    b = perturbation_curves(tiny_cnn, x, sal, y, filler=UniformNoise(), steps=4, chunk_size=9, generator=_gen(1))
    torch.testing.assert_close(a, b)


# ---------------------------------------------------------------------------------- names and keys


def test_names_factories_and_keys():
    assert set(FILLER_NAMES) >= {"zeros", "mean", "blur", "uniform_noise", "gaussian_noise", "noisy_linear", "telea"}
    assert get_filler("uniform_noise").key == "uniform_noise(0,1)"
    assert get_filler("gaussian_noise").key == "gaussian_noise(0,1)"
    assert get_filler("noisy_linear").key == "noisy_linear(0.01,8,auto,1e-06,None)"
    assert get_filler("telea").key == "telea(3)"
    assert uniform_noise is UniformNoise and gaussian_noise is GaussianNoise
    assert noisy_linear is NoisyLinear and telea is Telea
    rec_a, rec_b = Recorder(), Recorder()  # alive together: two inpainters of one class never share a key
    keys = [
        UniformNoise().key, UniformNoise(low=0, high=2).key, UniformNoise(additive=True).key,
        GaussianNoise().key, GaussianNoise(std=2).key, GaussianNoise(mean=1).key, GaussianNoise(additive=True).key,
        NoisyLinear().key, NoisyLinear(noise=0).key, NoisyLinear(neighbors=4).key, NoisyLinear(solver="cg").key,
        NoisyLinear(tol=1e-8).key, NoisyLinear(max_iter=10).key, Telea().key, Telea(radius=5).key,
        InpainterFill(_local_mean).key, InpainterFill(rec_a).key, InpainterFill(rec_b).key,
        InpainterFill(_local_mean, mask_convention="kept").key,
    ]  # fmt: skip
    assert len(set(keys)) == len(keys)
    assert InpainterFill(Recorder()).name == "Recorder" and InpainterFill(_local_mean, name="mine").name == "mine"
    assert all(get_filler(n).mask_dependent == (n in ("noisy_linear", "telea")) for n in FILLER_NAMES)


# ------------------------------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    "make, exc, match",
    [
        (lambda: UniformNoise(low=1.0, high=1.0), ValueError, r"Argument `high` must be greater than `low` \(1\), but got 1\."),
        (lambda: UniformNoise(low=float("nan"), high=1.0), ValueError, r"Argument `low` must be a finite number, but got nan"),
        (lambda: UniformNoise(low=0, high="1"), ValueError, r"Argument `high` must be a finite number, but got '1'"),
        (lambda: UniformNoise(additive=1), TypeError, r"Argument `additive` must be a bool, but got int"),
        (lambda: GaussianNoise(std=-0.1), ValueError, r"Argument `std` must be a positive number, but got -0\.1\."),
        (lambda: GaussianNoise(std=0), ValueError, r"Argument `std` must be a positive number, but got 0\."),
        (lambda: GaussianNoise(mean=float("inf")), ValueError, r"Argument `mean` must be a finite number"),
        (lambda: GaussianNoise(additive="yes"), TypeError, r"Argument `additive` must be a bool, but got str"),
        (lambda: NoisyLinear(noise=-1), ValueError, r"Argument `noise` must be a number >= 0, but got -1\."),
        (lambda: NoisyLinear(neighbors=6), ValueError, r"Argument `neighbors` must be 4 or 8, but got 6\."),
        (lambda: NoisyLinear(solver="lu"), ValueError, r"Argument `solver` must be one of \('auto', 'banded', 'direct', 'cg'\)"),
        (lambda: NoisyLinear(tol=0), ValueError, r"Argument `tol` must be a number in \(0, 1\), but got 0\."),
        (lambda: NoisyLinear(max_iter=0), ValueError, r"Argument `max_iter` must be an int >= 1, but got 0\."),
        (lambda: Telea(radius=0), ValueError, r"Argument `radius` must be an int >= 1, but got 0\."),
        (lambda: Telea(radius=2.5), TypeError, r"Argument `radius` must be an int >= 1, but got float 2\.5\."),
        (lambda: InpainterFill(3), TypeError, r"Argument `module` must be callable \(inputs, mask\) -> inputs, but got int\."),
        (lambda: InpainterFill(_local_mean, mask_convention="hole"), ValueError, r"Argument `mask_convention` must be one of"),
        (lambda: InpainterFill(_local_mean, name=1), TypeError, r"Argument `name` must be a str or None, but got int\."),
        (lambda: get_filler("noise"), ValueError, r"Argument `filler` must be one of \(.*'noisy_linear', 'telea'\)"),
    ],
)
def test_constructor_errors(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


def test_call_errors():
    x = torch.rand(2, 3, 4, 4, generator=_gen(0))
    removed = torch.zeros(2, 1, 4, 4, dtype=torch.bool)
    removed[:, :, 1, 1] = True
    with pytest.raises(ValueError, match=r"Argument `module` must return a tensor of the inputs' shape \(2, 3, 4, 4\), "
                                         r"but returned shape \(2, 3, 2, 2\)\."):  # fmt: skip
        InpainterFill(lambda t, m: t[..., :2, :2])(x, removed)
    with pytest.raises(ValueError, match=r"Argument `module` must return .* but returned list\."):
        InpainterFill(lambda t, m: [t])(x, removed)
    for fill in (NoisyLinear(), Telea(), InpainterFill(_local_mean)):
        with pytest.raises(ValueError, match=r"Argument `mask` must have shape \(2, 1, 4, 4\) to match `inputs`, but got \(2, 3, 4, 4\)\."):
            fill(x, removed.expand(2, 3, 4, 4))
        with pytest.raises(ValueError, match=r"Argument `mask` must be bool or hold only 0 and 1"):
            fill(x, removed.float() * 0.5)
        with pytest.raises(TypeError, match=r"Argument `mask` must be a bool tensor of shape \(2, 1, 4, 4\), but got ndarray\."):
            fill(x, removed.numpy())
        torch.testing.assert_close(fill(x, removed.float()), fill(x, removed))  # 0/1 floats are accepted
    with pytest.raises(TypeError, match=r"Argument `generator` must be a torch.Generator or None, but got int\."):
        NoisyLinear()(x, removed, 0)
    with pytest.raises(TypeError, match=r"Argument `generator` must be a torch.Generator or None, but got int\."):
        UniformNoise().substrate(x, 0)


def test_noisy_linear_banded_layouts_dtypes_and_autograd():
    """The band solver writes into its own C-ordered copy: channels-last and other strided inputs give
    the contiguous inputs' result (a copy kept in their strides would silently drop the solution);
    float16 inputs are rounded once from the float64 solve, as the other solvers do; inputs that
    require grad keep the graph through the kept pixels (the noise-free result is returned as is only
    when there is no graph to keep)."""
    x, removed = _road_chunk(2, 3, 12, 10, smooth=False, seed=7)
    banded = NoisyLinear(noise=0.0, solver="banded")
    ref = banded(x, removed)
    torch.testing.assert_close(ref, NoisyLinear(noise=0.0, solver="direct")(x, removed), rtol=0, atol=1e-10)
    assert banded(x.to(memory_format=torch.channels_last), removed).equal(ref)
    strided = x.transpose(2, 3).contiguous().transpose(2, 3)
    assert not strided.is_contiguous() and banded(strided, removed).equal(ref)
    half = x.half()
    assert banded(half, removed).dtype == torch.float16
    assert banded(half, removed).equal(NoisyLinear(noise=0.0, solver="direct")(half, removed))
    leaf = x.clone().requires_grad_(True)
    out = banded(leaf, removed)
    out.sum().backward()
    assert out.requires_grad and leaf.grad.equal((~removed).expand_as(x).double())


def test_noisy_linear_banded_groups_bound_the_band_buffer(monkeypatch):
    """A chunk's bands are assembled in groups of consecutive images that fit one buffer
    (``_BAND_BUFFER_FLOATS``; 224×224 chunks would otherwise need GiBs): any grouping, down to one image
    per buffer (and a fully removed image between others), gives the same filled images."""
    from pl_saliency.perturbation import imputation

    x, removed = _road_chunk(5, 2, 12, 10, smooth=True, seed=3)
    removed[2] = True  # a fully removed image inside a group
    ref = NoisyLinear(noise=0.0, solver="banded")(x, removed)
    assert imputation._band_groups([1, 5, 9, 9, 20], 10**6) == [(0, 4)]
    assert imputation._band_groups([1, 5, 9, 9, 20], 4) == [(0, 1), (1, 3), (3, 4)]
    for limit in (1, 400, 1500, 3000):
        monkeypatch.setattr(imputation, "_BAND_BUFFER_FLOATS", limit)
        assert NoisyLinear(noise=0.0, solver="banded")(x, removed).equal(ref)
    torch.testing.assert_close(ref, NoisyLinear(noise=0.0, solver="direct")(x, removed), rtol=0, atol=1e-10)


def test_mask_dependent_fillers_check_when_called_and_the_engine_fills_its_own_chunks():
    """``__call__`` of a mask-dependent filler checks inputs and mask and calls ``fill``; the engine calls
    ``fill`` itself (``Filler.filling``); a filler of the 0.1 protocol (``__call__`` overridden, no
    ``fill``) is still called through ``__call__`` and gives the same curves."""
    from pl_saliency.perturbation import perturbation_curves
    from pl_saliency.perturbation.filler_base import Filler

    nl = NoisyLinear(noise=0.0)
    assert nl.filling() == nl.fill
    x, removed = _road_chunk(2, 1, 8, 8, smooth=False, seed=1)
    with pytest.raises(ValueError, match="must be finite"):
        nl(torch.full_like(x, math.nan), removed)
    with pytest.raises(ValueError, match="Argument `mask` must have shape"):
        nl(x, removed[:1])

    class OldProtocol(Filler):  # 0.1: mask-dependent by overriding __call__
        mask_dependent = True
        name = "old"

        def __call__(self, inputs, mask, generator=None):
            return nl(inputs, mask, generator)

    old = OldProtocol()
    assert old.filling() is old
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3)).double()
    x = x[::5]  # the two images (each chunk row repeats its image once per percentage)
    s, y = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(2)), torch.tensor([0, 2])
    torch.testing.assert_close(perturbation_curves(model, x, s, y, filler=old, steps=4),
                               perturbation_curves(model, x, s, y, filler=nl, steps=4), rtol=0, atol=0)
