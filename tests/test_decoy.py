"""DANCE decoys and decoy-enhanced saliency: constraints checked on tensors, closed forms of a saturated
unit, the range aggregation against a by-hand computation, the paper's two claims on constructed
cases (gradient saturation, robustness), LPIPS against the lpips package, determinism and errors."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pl_saliency.explainers import DecoyEnhanced
from pl_saliency.explainers import Explainer
from pl_saliency.explainers import GradCAM
from pl_saliency.explainers import Gradient
from pl_saliency.explainers import dance_postprocess
from pl_saliency.explainers import generate_decoys
from pl_saliency.explainers import named_explainers
from pl_saliency.explainers import patch_positions
from pl_saliency.explainers import range_aggregate
from pl_saliency.functional import decoy_realism
from pl_saliency.functional import lpips_distance
from pl_saliency.functional import lpips_weights_path
from pl_saliency.metrics import DecoyRealism
from pl_saliency.perturbation import BatchContext

# ---------------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------------


def layer_output(model, module, x):
    """The layer's output from a full forward pass (no cut), read by an independent hook."""
    store = {}
    handle = module.register_forward_hook(lambda m, a, out: store.setdefault("out", out.detach()))
    try:
        with torch.no_grad():
            model(x)
    finally:
        handle.remove()
    return store["out"]


def patch_mask(positions, patch_size, h, w):
    """(D, 1, H, W) mask of each decoy's patch, built position by position."""
    masks = []
    for top, left in positions.tolist():
        m = torch.zeros(1, h, w, dtype=torch.bool)
        m[:, top : top + patch_size, left : left + patch_size] = True
        masks += [m, m]  # up and down decoy of the same patch
    return torch.stack(masks)


class SaturatingUnits(nn.Module):
    """h = tanh(k x) on the informative positions ``mask``, h = x elsewhere (elementwise)."""

    def __init__(self, mask: torch.Tensor, k: float) -> None:
        super().__init__()
        self.register_buffer("mask", mask)
        self.k = k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.where(self.mask, torch.tanh(self.k * x), x)


class Saturating(nn.Module):
    """logit 0 = sum_S tanh(k x_i) + w sum_{not S} x_j, logit 1 = 0: S drives the output, saturated."""

    def __init__(self, mask: torch.Tensor, k: float, w: float = 0.1) -> None:
        super().__init__()
        self.act = SaturatingUnits(mask, k)
        self.register_buffer("weight", torch.where(mask, 1.0, w))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        score = (self.act(x) * self.weight).flatten(1).sum(1)
        return torch.stack([score, torch.zeros_like(score)], dim=1)


def saturating_case(k: float, s_value: float):
    mask = torch.zeros(1, 1, 6, 6, dtype=torch.bool)
    mask[..., :2, :2] = True  # the informative features: a 2x2 block inside the first 3x3 patch
    x = 0.2 + 0.6 * torch.rand(1, 1, 6, 6, generator=torch.Generator().manual_seed(3))
    x[mask] = s_value
    return Saturating(mask, k).eval(), x, mask, torch.tensor([0])


# ---------------------------------------------------------------------------------------------------
# decoy generation
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "layer, scale, epsilon, normalized",
    [("conv1", "relative", 0.01, False), ("conv2", "absolute", 0.02, False), ("conv2", "relative", 0.05, True)],
)
def test_decoys_keep_layer_stay_in_range_and_move_only_their_patch(tiny_cnn, rgb_batch, layer, scale, epsilon, normalized):
    x, _ = rgb_batch
    x = x[:2]
    input_range = (0.0, 1.0)
    if normalized:  # the model's input space is normalized: the valid range is per channel
        mean, std = torch.tensor([0.4, 0.5, 0.6]), torch.tensor([0.2, 0.25, 0.3])
        x = (x - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)
        input_range = ((0 - mean) / std, (1 - mean) / std)
    out = generate_decoys(
        tiny_cnn, x, layer, patch_size=3, stride=2, num_patches=7, epsilon=epsilon, epsilon_scale=scale,
        input_range=input_range, chunk_size=5, patch_sampling="random", coverage="flush",  # the first release's layout
    )  # fmt: skip
    n, d = 2, 14
    assert out.decoys.shape == (n, d, 3, 12, 12) and out.positions.shape == (7, 2)
    module = getattr(tiny_cnn, layer)
    ref = layer_output(tiny_cnn, module, x)
    feats = layer_output(tiny_cnn, module, out.decoys.reshape(n * d, 3, 12, 12)).view(n, d, *ref.shape[1:])
    deviation = (feats - ref.unsqueeze(1)).abs().flatten(2).amax(dim=2)
    if scale == "relative":
        expected_eps = epsilon * ref.abs().flatten(1).amax(dim=1)
    else:
        expected_eps = torch.full((n,), epsilon)
    torch.testing.assert_close(out.epsilon, expected_eps)
    # every decoy keeps the layer's representation within the tolerance (float slack of a batched conv)
    assert (deviation <= expected_eps.unsqueeze(1) * (1 + 1e-5) + 1e-6).all()
    torch.testing.assert_close(out.deviation, deviation, atol=1e-6, rtol=1e-5)
    # ... stays in the valid range
    lo, hi = (torch.as_tensor(v).view(1, 1, -1, 1, 1) if torch.as_tensor(v).numel() > 1 else v for v in input_range)
    assert (out.decoys >= lo - 1e-6).all() and (out.decoys <= hi + 1e-6).all()
    # ... and differs from the input only inside its patch
    masks = patch_mask(out.positions, 3, 12, 12)
    diff = out.decoys - x.unsqueeze(1)
    assert (diff.masked_fill(masks.unsqueeze(0), 0) == 0).all()
    torch.testing.assert_close(out.linf, diff.abs().flatten(2).amax(dim=2))
    # not trivial: the decoys move, up decoys mostly up and down decoys mostly down, and the tolerance binds
    inside = diff.flatten(2).sum(dim=2)
    assert (out.linf > 0).float().mean() > 0.9
    assert (inside[:, 0::2] > 0).float().mean() > 0.9 and (inside[:, 1::2] < 0).float().mean() > 0.9
    assert (out.deviation / out.epsilon[:, None]).amax() > 0.99
    assert set(map(tuple, out.positions.tolist())) <= set(map(tuple, patch_positions(12, 12, 3, 2, "flush").tolist()))


def test_decoys_closed_form_of_a_saturated_unit():
    """h = tanh(10 x) at S (x = 1), h = x elsewhere, epsilon = 0.05 absolute: the problem separates per
    value, so the optimum is known: S goes down to atanh(tanh(10) - 0.05) / 10, every other value
    moves by exactly 0.05 in the decoy's direction, S cannot go up (x = 1 is the range's top)."""
    model, x, mask, _ = saturating_case(k=10.0, s_value=1.0)
    out = generate_decoys(model, x, "act", patch_size=3, epsilon=0.05, epsilon_scale="absolute")
    assert out.positions.tolist() == [[0, 0], [0, 3], [3, 0], [3, 3]]
    x_star = math.atanh(math.tanh(10.0) - 0.05) / 10.0
    masks = patch_mask(out.positions, 3, 6, 6)
    for j in range(8):
        s = 1 if j % 2 == 0 else -1
        expected = x.clone()[0]
        inside = masks[j] & ~mask[0]
        expected[inside] = x[0][inside] + 0.05 * s
        if j == 1:
            expected[mask[0]] = x_star
        torch.testing.assert_close(out.decoys[0, j], expected, atol=1e-4, rtol=0)


# ---------------------------------------------------------------------------------------------------
# aggregation
# ---------------------------------------------------------------------------------------------------


def test_range_aggregate_and_postprocess_by_hand():
    # (N=1, D=3 decoys, C=1, H=1, W=2)
    sal = torch.tensor([[1.0, -2.0], [3.0, 0.0], [-1.0, 5.0]]).view(1, 3, 1, 1, 2)
    assert range_aggregate(sal).flatten().tolist() == [4.0, 7.0]  # 3 - (-1), 5 - (-2)
    z = torch.arange(20.0).view(1, 1, 4, 5)
    q = 0.95 * 19  # linear interpolation between the sorted values 18 and 19: 18.05
    expected = torch.minimum(z, torch.tensor(q)) / q
    torch.testing.assert_close(dance_postprocess(z), expected)
    torch.testing.assert_close(dance_postprocess(z, winsorize=None), z / 19)
    assert (dance_postprocess(torch.ones(1, 1, 2, 2)) == 0).all()


@pytest.mark.parametrize("aggregate", ["range", "mean"])
def test_decoy_enhanced_equals_step_by_step_reference(tiny_cnn, rgb_batch, aggregate):
    """Decoys from generate_decoys, gradients of every decoy by hand, max - min (or mean) over decoys per
    channel value, |.| and max over channels, winsorize (numpy) and rescale: the explainer's map."""
    x, y = rgb_batch
    x, y = x[:2], y[:2]
    kwargs = dict(patch_size=3, num_patches=5, iterations=30, epsilon=0.02)
    explainer = DecoyEnhanced(Gradient(), layer="conv2", aggregate=aggregate, chunk_size=7, seed=4, **kwargs)  # chunks cross samples
    got = explainer(tiny_cnn, x, y)
    out = generate_decoys(tiny_cnn, x, "conv2", generator=torch.Generator().manual_seed(4), **kwargs)
    n, d = out.decoys.shape[:2]
    xd = out.decoys.reshape(n * d, 3, 12, 12).clone().requires_grad_(True)
    logits = tiny_cnn(xd)
    (grad,) = torch.autograd.grad(logits.gather(1, y.repeat_interleave(d).view(-1, 1)).sum(), xd)
    grad = grad.view(n, d, 3, 12, 12)
    z = grad.amax(dim=1) - grad.amin(dim=1) if aggregate == "range" else grad.mean(dim=1)
    z = z.abs().amax(dim=1)  # (N, H, W)
    expected = []
    for zi in z.numpy():
        q = np.quantile(zi, 0.95)
        zi = np.minimum(zi, q)
        expected.append((zi - zi.min()) / (zi.max() - zi.min()))
    assert got.shape == (2, 1, 12, 12)
    torch.testing.assert_close(got[:, 0], torch.tensor(np.stack(expected)).float(), atol=1e-5, rtol=1e-4)
    report = explainer.last_report
    assert report.inputs is x and torch.equal(report.positions, out.positions)
    torch.testing.assert_close(report.deviation, out.deviation, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(report.linf, out.linf, atol=1e-6, rtol=1e-5)


def test_decoy_enhanced_plain_callable_and_lower_resolution_maps(tiny_cnn, rgb_batch):
    """A callable that is not an Explainer is used through its output; (h, w) maps are upsampled first."""
    x, y = rgb_batch
    x, y = x[:2], y[:2]

    def pooled(model, inputs, target):  # a deterministic "explainer" at half resolution
        return F.avg_pool2d(inputs.sum(1, keepdim=True), 2)

    explainer = DecoyEnhanced(pooled, layer="conv1", num_patches=4, iterations=20, winsorize=None, rescale=False, name="pooled")
    got = explainer(tiny_cnn, x, y)
    out = generate_decoys(tiny_cnn, x, "conv1", num_patches=4, iterations=20, generator=torch.Generator().manual_seed(0))
    maps = F.interpolate(pooled(None, out.decoys.flatten(0, 1), None), size=(12, 12), mode="bilinear", align_corners=False)
    torch.testing.assert_close(got, range_aggregate(maps.view(2, 8, 1, 12, 12)), atol=1e-6, rtol=1e-5)
    # Grad-CAM through the raw path: one channel, the right shape, finite
    cam = DecoyEnhanced(GradCAM("conv2"), layer="conv1", num_patches=2, iterations=10)(tiny_cnn, x, y)
    assert cam.shape == (2, 1, 12, 12) and torch.isfinite(cam).all()


# ---------------------------------------------------------------------------------------------------
# the paper's claims on constructed cases
# ---------------------------------------------------------------------------------------------------


def test_gradient_saturation_decoys_recover_the_informative_features():
    model, x, mask, y = saturating_case(k=10.0, s_value=1.0)
    with torch.no_grad():  # premise: S drives the output (each S value is worth ~1, any other value <= 0.08)
        base = model(x)[0, 0]
        drop_s = base - model(x.masked_fill(mask, 0.0))[0, 0]
        drop_rest = base - model(x.masked_fill(~mask, 0.0))[0, 0]
    assert drop_s / 4 > 0.99 and drop_rest / 32 < 0.1
    plain = Gradient()(model, x, y)[0, 0]
    assert plain[mask[0, 0]].max() < 1e-6 < plain[~mask[0, 0]].min()  # the plain gradient misses S entirely
    dance = DecoyEnhanced(Gradient(), layer="act", epsilon=0.05)(model, x, y)[0, 0]
    assert dance[mask[0, 0]].min() > dance[~mask[0, 0]].max()  # the decoy-enhanced map ranks S first
    assert dance[mask[0, 0]].min() > 0.5 and dance[~mask[0, 0]].max() == 0


def test_robustness_decoy_map_moves_less_under_an_explanation_attack():
    """S sits just past the knee of tanh(50 x) (x = 0.1, saturated); the attack moves S to 0.06, next
    to the knee: the class stays, the plain gradient at S jumps from ~0.009 to ~0.49 and reorders the
    map, while the decoys of both inputs reach the same representation boundary."""
    model, x, mask, y = saturating_case(k=50.0, s_value=0.1)
    x_adv = x.masked_fill(mask, 0.06)
    with torch.no_grad():
        p, p_adv = model(x).softmax(1), model(x_adv).softmax(1)
    assert p.argmax(1).item() == p_adv.argmax(1).item() == 0 and abs(p[0, 0] - p_adv[0, 0]) < 1e-2
    plain = Gradient()
    dance = DecoyEnhanced(Gradient(), layer="act", epsilon=0.05)

    def sensitivity(explain):  # Alvarez-Melis & Jaakkola, as DANCE uses it; both maps post-processed alike
        e, e_adv = dance_postprocess(explain(model, x, y)), dance_postprocess(explain(model, x_adv, y))
        return float((e - e_adv).norm() / (x - x_adv).norm()), e, e_adv

    s_plain, e, e_adv = sensitivity(plain)
    s_dance, z, z_adv = sensitivity(dance)
    assert s_plain > 50 and s_dance < 0.05 * s_plain
    # Proposition 1 on the raw maps: per feature, Z moves no more than the plain gradient does
    raw = DecoyEnhanced(Gradient(), layer="act", epsilon=0.05, winsorize=None, rescale=False)
    dz = (raw(model, x, y) - raw(model, x_adv, y)).abs()
    de = (plain(model, x, y) - plain(model, x_adv, y)).abs()
    assert (dz <= de + 1e-4).all() and de[0, 0][mask[0, 0]].min() > 0.4
    rank = lambda t: t.flatten().argsort().argsort().float()  # noqa: E731
    spearman = lambda a, b: float(torch.corrcoef(torch.stack([rank(a), rank(b)]))[0, 1])  # noqa: E731
    assert spearman(e, e_adv) < 0.5 and torch.equal(z > 0.5, z_adv > 0.5)


# ---------------------------------------------------------------------------------------------------
# determinism, budget, model hygiene, monitor protocol
# ---------------------------------------------------------------------------------------------------


def test_seeded_budgeted_deterministic_and_hygienic(tiny_cnn, rgb_batch):
    x, y = rgb_batch
    x, y = x[:2], y[:2]
    tiny_cnn.train()
    params = {k: v.clone() for k, v in tiny_cnn.state_dict().items()}
    explainer = DecoyEnhanced(Gradient(), layer="conv2", num_patches=3, iterations=20, seed=1, patch_sampling="random")
    assert explainer.decoys_per_sample(12, 12) == 6 and explainer.name == "dance_gradient"
    rng = torch.random.get_rng_state()
    a = explainer(tiny_cnn, x, y)
    positions = explainer.last_report.positions
    b = explainer(tiny_cnn, x, y)
    assert torch.equal(a, b) and torch.equal(explainer.last_report.positions, positions)
    assert torch.equal(torch.random.get_rng_state(), rng)  # the global RNG is untouched
    assert tiny_cnn.training and all(p.grad is None for p in tiny_cnn.parameters())
    assert all(torch.equal(v, params[k]) for k, v in tiny_cnn.state_dict().items())
    other = DecoyEnhanced(Gradient(), layer="conv2", num_patches=3, iterations=20, seed=2, patch_sampling="random")
    other(tiny_cnn, x, y)
    assert not torch.equal(other.last_report.positions, positions)
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    d1 = generate_decoys(tiny_cnn, x, "conv1", num_patches=4, iterations=10, generator=g1, patch_sampling="random")
    d2 = generate_decoys(tiny_cnn, x, "conv1", num_patches=4, iterations=10, generator=g2, patch_sampling="random")
    assert torch.equal(d1.decoys, d2.decoys) and torch.equal(d1.positions, d2.positions)
    # inside Lightning's validation (inference mode) and beside the plain explainer in a monitor spec
    with torch.inference_mode():
        xi = x.clone()
        c = explainer(tiny_cnn, xi, y)
    assert torch.equal(c, a)
    assert list(named_explainers([Gradient(), explainer])) == ["gradient", "dance_gradient"]
    assert isinstance(explainer, Explainer)


# ---------------------------------------------------------------------------------------------------
# realism: LPIPS and the metric
# ---------------------------------------------------------------------------------------------------


def _reference_lpips(seed=0):
    import lpips

    with torch.random.fork_rng(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchvision's `pretrained=` deprecation inside lpips
        torch.manual_seed(seed)
        return lpips.LPIPS(net="alex", pretrained=True, pnet_rand=True, verbose=False).eval()


def test_lpips_mapping_against_the_lpips_package():
    ref = _reference_lpips()
    g = torch.Generator().manual_seed(0)
    gray0, gray1 = torch.rand(2, 1, 32, 32, generator=g), torch.rand(2, 1, 32, 32, generator=g)
    with torch.no_grad():
        expected = ref(2 * gray0.repeat(1, 3, 1, 1) - 1, 2 * gray1.repeat(1, 3, 1, 1) - 1).flatten()
    torch.testing.assert_close(lpips_distance(gray0, gray1, pnet_rand=True), expected)
    assert lpips_distance(gray0, gray0, pnet_rand=True).abs().max() < 1e-6
    # normalized RGB with a per-channel range maps back to the same [-1, 1] images
    rgb0, rgb1 = torch.rand(2, 3, 32, 32, generator=g), torch.rand(2, 3, 32, 32, generator=g)
    mean, std = torch.tensor([0.4, 0.5, 0.6]).view(1, 3, 1, 1), torch.tensor([0.2, 0.25, 0.3]).view(1, 3, 1, 1)
    rng = ((0 - mean) / std).flatten(), ((1 - mean) / std).flatten()
    with torch.no_grad():
        expected = ref(2 * rgb0 - 1, 2 * rgb1 - 1).flatten()
    got = lpips_distance((rgb0 - mean) / std, (rgb1 - mean) / std, input_range=rng, pnet_rand=True, chunk_size=1)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)
    # small images are upsampled (shorter side to `upsample_to`) on request
    small0, small1 = rgb0[..., :16, :20], rgb1[..., :16, :20]
    with torch.no_grad():
        up = lambda t: F.interpolate(2 * t - 1, size=(32, 40), mode="bilinear", align_corners=False)  # noqa: E731
        expected = ref(up(small0), up(small1)).flatten()
    torch.testing.assert_close(lpips_distance(small0, small1, pnet_rand=True, upsample_to=32), expected)


def test_realism_report_and_metric(tiny_cnn):
    model = tiny_cnn
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(7))
    y = torch.tensor([1, 3])
    explainer = DecoyEnhanced(Gradient(), layer="conv1", patch_size=4, num_patches=3, iterations=20, lpips_net="alex", pnet_rand=True,
                              patch_sampling="random")  # fmt: skip
    saliency = explainer(model, x, y)
    report = explainer.last_report
    assert report.lpips.shape == (2, 6) and (report.lpips >= 0).all()
    # the same decoys through the functional path give the same realism
    out = generate_decoys(model, x, "conv1", patch_size=4, num_patches=3, iterations=20, patch_sampling="random")
    real = decoy_realism(x, out, lpips_net="alex", pnet_rand=True)
    torch.testing.assert_close(real["lpips"], report.lpips, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(real["deviation"], out.deviation / out.epsilon[:, None])
    summary = report.summary()
    assert set(summary) == {"deviation_ratio_max", "linf_mean", "linf_max", "lpips_mean", "lpips_max"}
    assert (summary["deviation_ratio_max"] <= 1 + 1e-5).all()
    expected = {
        ("lpips", "mean"): report.lpips.mean(1),
        ("linf", "max"): report.linf.amax(1),
        ("deviation", "max"): (report.deviation / report.epsilon[:, None]).amax(1),
    }
    context = BatchContext(explainer=explainer)
    for (measure, reduction), per_sample in expected.items():
        metric = DecoyRealism(measure=measure, reduction=reduction, keep_per_sample=True)
        metric.update(model, x, saliency, y, context=context)
        torch.testing.assert_close(metric.per_sample(), per_sample.float())
        torch.testing.assert_close(metric.compute(), per_sample.mean().float())
        assert metric.higher_is_better is False
    assert DecoyRealism(measure="linf").plot_upper_bound is None and DecoyRealism().plot_upper_bound == 1.0
    # an explainer without decoys: undefined (NaN, excluded from the mean)
    metric = DecoyRealism(measure="linf")
    metric.update(model, x, saliency, y, context=BatchContext(explainer=Gradient()))
    assert torch.isnan(metric.compute())


def test_lpips_refuses_to_download(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    assert lpips_weights_path("alex").startswith(str(tmp_path))
    x = torch.rand(1, 3, 32, 32)
    with pytest.raises(FileNotFoundError, match=r"not in the torch hub cache.*`pnet_rand=True`"):
        lpips_distance(x, x, net="alex", pnet_rand=False)


# ---------------------------------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------------------------------


class _TupleLayer(nn.Module):
    def forward(self, x):
        return x, x


class _Odd(nn.Module):
    def __init__(self):
        super().__init__()
        self.used, self.unused, self.tuple_out, self.flat = nn.Conv2d(3, 2, 1), nn.Conv2d(3, 2, 1), _TupleLayer(), nn.Flatten(0)

    def forward(self, x):
        a, _ = self.tuple_out(self.used(x))
        return self.flat(a).view(x.shape[0], -1)[:, :2]


def test_errors_decoy_generation(tiny_cnn, rgb_batch):
    x, y = rgb_batch
    with pytest.raises(ValueError, match=r"`layer` must name a sub-module of the model.*'nope'"):
        DecoyEnhanced(Gradient(), layer="nope")(tiny_cnn, x, y)
    with pytest.raises(ValueError, match=r"`layer` must name a sub-module"):
        generate_decoys(tiny_cnn, x, "conv9")
    for eps in (0, -0.1):
        with pytest.raises(ValueError, match=r"`epsilon` must be > 0, but got"):
            DecoyEnhanced(Gradient(), layer="conv1", epsilon=eps)
    with pytest.raises(TypeError, match=r"`epsilon` must be a finite number"):
        generate_decoys(tiny_cnn, x, "conv1", epsilon="small")
    with pytest.raises(ValueError, match=r"`patch_size` must be at most the image size \(12, 12\), but got 13"):
        DecoyEnhanced(Gradient(), layer="conv1", patch_size=13)(tiny_cnn, x, y)
    with pytest.raises(ValueError, match=r"`inputs` must lie inside `input_range`"):
        generate_decoys(tiny_cnn, x * 3, "conv1")
    with pytest.raises(TypeError, match=r"`input_range` must be None or a pair"):
        generate_decoys(tiny_cnn, x, "conv1", input_range=1.0)
    with pytest.raises(ValueError, match=r"`input_range` must hold numbers or 3 per-channel values"):
        generate_decoys(tiny_cnn, x, "conv1", input_range=(torch.zeros(2), torch.ones(2)))
    with pytest.raises(ValueError, match=r"`input_range` must have low < high"):
        generate_decoys(tiny_cnn, x, "conv1", input_range=(1.0, 0.0))
    with pytest.raises(ValueError, match=r"`lambda_factor` must be > 1"):
        generate_decoys(tiny_cnn, x, "conv1", lambda_factor=1.0)
    with pytest.raises(ValueError, match=r"`epsilon_scale` must be one of"):
        generate_decoys(tiny_cnn, x, "conv1", epsilon_scale="percent")
    with pytest.raises(ValueError, match=r"`max_perturbation` must be > 0"):
        generate_decoys(tiny_cnn, x, "conv1", max_perturbation=0.0)
    with pytest.raises(TypeError, match=r"`layer` must be an nn.Module, a dotted module name or a function"):
        generate_decoys(tiny_cnn, x, 3)
    odd, xo = _Odd(), torch.rand(2, 3, 4, 4)
    with pytest.raises(ValueError, match=r"`layer` must be a module that the model calls in its forward pass, but 'unused'"):
        generate_decoys(odd, xo, "unused", patch_size=2)
    with pytest.raises(TypeError, match=r"`layer` must output a tensor, but 'tuple_out' returned tuple"):
        generate_decoys(odd, xo, "tuple_out", patch_size=2)
    with pytest.raises(ValueError, match=r"`layer` must keep the batch dimension first"):
        generate_decoys(odd, xo, "flat", patch_size=2)


def test_errors_explainer_and_aggregation(tiny_cnn, rgb_batch):
    x, y = rgb_batch
    with pytest.raises(TypeError, match=r"`explainer` must be an explainer"):
        DecoyEnhanced("gradient", layer="conv1")
    with pytest.raises(ValueError, match=r"`aggregate` must be one of"):
        DecoyEnhanced(Gradient(), layer="conv1", aggregate="median")
    with pytest.raises(ValueError, match=r"`winsorize` must be None or a quantile in \(0, 1\]"):
        DecoyEnhanced(Gradient(), layer="conv1", winsorize=95)
    with pytest.raises(TypeError, match=r"`rescale` must be a bool"):
        DecoyEnhanced(Gradient(), layer="conv1", rescale=1)
    with pytest.raises(TypeError, match=r"`seed` must be an int"):
        DecoyEnhanced(Gradient(), layer="conv1", seed=None)
    with pytest.raises(ValueError, match=r"`lpips_net` must be one of"):
        DecoyEnhanced(Gradient(), layer="conv1", lpips_net="resnet")
    with pytest.raises(ValueError, match=r"`num_patches` must be an int >= 1"):
        DecoyEnhanced(Gradient(), layer="conv1", num_patches=0)
    bad = DecoyEnhanced(lambda m, i, t: i.sum(), layer="conv1", num_patches=1, iterations=2)
    with pytest.raises(ValueError, match=r"`explainer` must return a \(N, C, h, w\) tensor for N decoys"):
        bad(tiny_cnn, x, y)
    with pytest.raises(ValueError, match=r"`saliency` must have shape \(N, D, ...\)"):
        range_aggregate(torch.ones(3))


def test_errors_realism(tiny_cnn, rgb_batch):
    x, y = rgb_batch
    with pytest.raises(ValueError, match=r"`x0` must have 1 \(grayscale\) or 3 channels for LPIPS, but got 2"):
        lpips_distance(torch.rand(1, 2, 32, 32), torch.rand(1, 2, 32, 32), pnet_rand=True)
    with pytest.raises(ValueError, match=r"`x0` and `x1` must be tensors of the same shape"):
        lpips_distance(torch.rand(1, 3, 32, 32), torch.rand(1, 3, 31, 32), pnet_rand=True)
    with pytest.raises(ValueError, match=r"needs images of at least 31 pixels a side, but got \(12, 12\); pass `upsample_to=32`"):
        lpips_distance(x, x, pnet_rand=True)
    with pytest.raises(ValueError, match=r"`upsample_to` must be an int >= 31"):
        lpips_distance(x, x, pnet_rand=True, upsample_to=16)
    with pytest.raises(TypeError, match=r"`input_range` must be a pair \(low, high\) for LPIPS"):
        lpips_distance(torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32), input_range=None, pnet_rand=True)
    with pytest.raises(ValueError, match=r"`input_range` must be \(low, high\) with low < high"):
        lpips_distance(torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32), input_range=(1, 0), pnet_rand=True)
    with pytest.raises(ValueError, match=r"`measure` must be one of"):
        DecoyRealism(measure="ssim")
    with pytest.raises(ValueError, match=r"`reduction` must be one of"):
        DecoyRealism(reduction="median")
    explainer = DecoyEnhanced(Gradient(), layer="conv1", num_patches=1, iterations=2)
    saliency = explainer(tiny_cnn, x, y)
    with pytest.raises(ValueError, match=r"`context` must be a BatchContext whose `explainer` is the DecoyEnhanced"):
        DecoyRealism(measure="linf").update(tiny_cnn, x, saliency, y)
    with pytest.raises(ValueError, match=r"`inputs` must be the batch the explainer 'dance_gradient' last explained"):
        DecoyRealism(measure="linf").update(tiny_cnn, x + 0.5, saliency, y, context=BatchContext(explainer=explainer))
    with pytest.raises(ValueError, match=r"the decoys carry no LPIPS: build the explainer with `DecoyEnhanced\(..., lpips_net='alex'\)`"):
        DecoyRealism(measure="lpips").update(tiny_cnn, x, saliency, y, context=BatchContext(explainer=explainer))


def test_in_the_monitor_beside_the_plain_explainer(tmp_path):
    """A real Trainer: validation runs under inference mode, the monitor calls the explainer like any
    other and hands its report to DecoyRealism through the batch context."""
    import pytorch_lightning as pl
    from pytorch_lightning.loggers import CSVLogger
    from torch.utils.data import DataLoader

    from pl_saliency import DeletionAUC
    from pl_saliency import SaliencyMonitor
    from pl_saliency.demo import DigitsCNN
    from pl_saliency.demo import digits_datasets

    train, val = digits_datasets(size=16)
    dance = DecoyEnhanced(Gradient(), layer="features.relu2", num_patches=2, iterations=10, lpips_net="alex", pnet_rand=True, lpips_upsample_to=32)
    monitor = SaliencyMonitor(
        explainers=[Gradient(), dance],
        metrics={"deletion": DeletionAUC(steps=4), "lpips": DecoyRealism(), "dev": DecoyRealism(measure="deviation", reduction="max")},
        num_samples=4,
    )
    trainer = pl.Trainer(
        max_epochs=1, accelerator="cpu", devices=1, limit_train_batches=1, limit_val_batches=1, callbacks=[monitor],
        logger=CSVLogger(str(tmp_path), name="csv"), enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0,
    )  # fmt: skip
    trainer.fit(DigitsCNN(), DataLoader(train, batch_size=32), DataLoader(val, batch_size=8))
    logged = trainer.callback_metrics
    assert torch.isfinite(logged["val/saliency/gradient/deletion"]) and torch.isfinite(logged["val/saliency/dance_gradient/deletion"])
    assert 0 <= logged["val/saliency/dance_gradient/lpips"] and logged["val/saliency/dance_gradient/dev"] <= 1 + 1e-5
