"""ROAD MoRF / LeRF: equal to pytorch-grad-cam's ROAD (same imputation, same pixels removed) on RGB
inputs, every batch counts, reproducible noise, percentage validation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from pl_saliency.functional import road
from pl_saliency.metrics import ROADLerf
from pl_saliency.metrics import ROADMorf
from pl_saliency.perturbation import BatchContext
from pl_saliency.perturbation.imputation import NoisyLinear

PERCENTAGES = (20, 40, 60, 80)  # removed; grad-cam's percentile is the kept share: 80, 60, 40, 20


@pytest.fixture
def sensitive_cnn() -> nn.Module:
    """A small CNN whose probabilities move by up to ~0.3 under ROAD imputation on 12x12 inputs (the
    shared ``tiny_cnn`` moves by ~1e-3, too little to tell the imputation noise from a mismatch)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(8 * 36, 5))
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(4.0)
    return model.eval()


def _gradcam_road(model, x, cams, y, order, percentages, noise):
    """pytorch-grad-cam's ROAD: probability change f(x_q) - f(x) per image, one column per percentage."""
    from pytorch_grad_cam.metrics.perturbation_confidence import PerturbationConfidenceMetric
    from pytorch_grad_cam.metrics.perturbation_confidence import RemoveLeastRelevantFirst
    from pytorch_grad_cam.metrics.perturbation_confidence import RemoveMostRelevantFirst
    from pytorch_grad_cam.metrics.road import NoisyLinearImputer
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

    remove = RemoveMostRelevantFirst if order == "morf" else RemoveLeastRelevantFirst
    targets = [ClassifierOutputSoftmaxTarget(int(c)) for c in y]
    out = []
    with torch.random.fork_rng():  # its imputer draws noise from the global RNG
        torch.manual_seed(0)
        for q in percentages:
            metric = PerturbationConfidenceMetric(remove(100 - q, NoisyLinearImputer(noise=noise)))
            out.append(torch.tensor(metric(x, cams.numpy(), targets, model)))
    return torch.stack(out, dim=1)


def _gradcam_removed_count(num_pixels, q):
    """grad-cam thresholds at np.percentile(kept share): it removes 1 + floor(q (F - 1)) pixels."""
    cam = np.arange(num_pixels, dtype=np.float64)
    return int((cam >= np.percentile(cam, 100 - q)).sum())


@pytest.mark.parametrize("order", ["morf", "lerf"])
def test_road_equals_pytorch_grad_cam_rgb(sensitive_cnn, rgb_batch, order):
    model = sensitive_cnn
    x, y = rgb_batch  # (4, 3, 12, 12): RGB works
    cams = torch.rand(4, 12, 12, generator=torch.Generator().manual_seed(6))
    for q in PERCENTAGES:  # the precondition of an exact comparison: both remove the same number of pixels
        assert _gradcam_removed_count(144, q) == math.floor(q / 100 * 144 + 0.5)
    _, ours = road(
        model, x, cams.unsqueeze(1), y, order=order, percentages=PERCENTAGES, filler=NoisyLinear(noise=0.0),
        reduction="none", return_curves=True,
    )  # fmt: skip
    theirs = _gradcam_road(model, x, cams, y, order, PERCENTAGES, noise=0.0)
    assert theirs.abs().max() > 0.1  # the scores do move
    torch.testing.assert_close(ours[:, 1:] - ours[:, :1], theirs, atol=1e-5, rtol=0)
    # the comparison can fail: the other order gives other numbers
    _, other = road(
        model, x, cams.unsqueeze(1), y, order="lerf" if order == "morf" else "morf", percentages=PERCENTAGES,
        filler=NoisyLinear(noise=0.0), return_curves=True,
    )  # fmt: skip
    assert not torch.allclose(other[:, 1:] - other[:, :1], theirs, atol=1e-2)


def test_road_with_default_noise_is_close_to_pytorch_grad_cam(sensitive_cnn, rgb_batch):
    x, y = rgb_batch
    cams = torch.rand(4, 12, 12, generator=torch.Generator().manual_seed(8))
    _, ours = road(
        sensitive_cnn, x, cams.unsqueeze(1), y, percentages=PERCENTAGES, generator=torch.Generator().manual_seed(1),
        reduction="none", return_curves=True,
    )  # fmt: skip
    theirs = _gradcam_road(sensitive_cnn, x, cams, y, "morf", PERCENTAGES, noise=0.01)
    # independent noise draws (std 0.01) on both sides: equal up to the noise's effect on the score
    # (about 0.01 here, while the changes themselves reach 0.3 and the LeRF ones differ by 0.17)
    assert theirs.abs().max() > 0.1
    torch.testing.assert_close(ours[:, 1:] - ours[:, :1], theirs, atol=0.02, rtol=0)


def test_metric_counts_every_batch(tiny_cnn):
    g = torch.Generator().manual_seed(2)
    x = torch.rand(5, 3, 12, 12, generator=g)
    y = torch.tensor([0, 1, 2, 3, 4])
    s = torch.rand(5, 1, 12, 12, generator=g)
    fill = NoisyLinear(noise=0.0)
    for cls, order in ((ROADMorf, "morf"), (ROADLerf, "lerf")):
        metric = cls(percentages=(25, 50, 75), filler=fill, keep_per_sample=True)
        for sl in (slice(0, 2), slice(2, 4), slice(4, 5)):  # three batches of unequal sizes
            metric.update(tiny_cnn, x[sl], s[sl], y[sl])
        scores, curves = road(
            tiny_cnn, x, s, y, order=order, percentages=(25, 50, 75), filler=fill, reduction="none", return_curves=True
        )
        torch.testing.assert_close(metric.compute(), scores.mean(), atol=1e-6, rtol=0)
        torch.testing.assert_close(metric.per_sample(), scores)
        torch.testing.assert_close(metric.curve(), curves.mean(0), atol=1e-6, rtol=0)
        assert not torch.isclose(metric.compute(), scores[:2].mean())  # not the first batch only
        torch.testing.assert_close(metric.curve_x(), torch.tensor([0.0, 36 / 144, 72 / 144, 108 / 144]))
        # the mean over percentages, as documented
        torch.testing.assert_close(scores, curves[:, 1:].mean(1))


def test_noise_is_seeded_by_the_generator(tiny_cnn, rgb_batch):
    x, y = rgb_batch
    s = torch.rand(4, 1, 12, 12, generator=torch.Generator().manual_seed(3))
    state = torch.get_rng_state()
    a = road(tiny_cnn, x, s, y, percentages=(50,), generator=torch.Generator().manual_seed(7), reduction="none")
    b = road(tiny_cnn, x, s, y, percentages=(50,), generator=torch.Generator().manual_seed(7), reduction="none")
    c = road(tiny_cnn, x, s, y, percentages=(50,), generator=torch.Generator().manual_seed(8), reduction="none")
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is untouched


def test_road_morf_and_lerf_share_nothing_but_cache_themselves(tiny_cnn, rgb_batch):
    x, y = rgb_batch
    s = torch.rand(4, 1, 12, 12)
    ctx = BatchContext()
    m1, m2 = ROADMorf(percentages=(30, 60)), ROADMorf(percentages=(30, 60))
    m1.update(tiny_cnn, x, s, y, context=ctx)
    m2.update(tiny_cnn, x, s, y, context=ctx)
    assert ctx.hits == 1
    torch.testing.assert_close(m1.compute(), m2.compute())
    ROADLerf(percentages=(30, 60)).update(tiny_cnn, x, s, y, context=ctx)
    assert ctx.hits == 1 and len(ctx.entries) == 2


def test_attributes_and_definition():
    assert ROADMorf.higher_is_better is False and ROADLerf.higher_is_better is True
    m = ROADMorf()
    assert m.percentages == tuple(float(p) for p in range(10, 100, 10))
    assert m.definition["filler"].startswith("noisy_linear(0.01") and m.definition["order"] == "morf"
    assert (m.plot_lower_bound, m.plot_upper_bound) == (0.0, 1.0) and m.state_dict() == {}
    assert m.curve_x()[0] == 0 and len(m.curve_x()) == 10


@pytest.mark.parametrize(
    "percentages, exc, match",
    [
        ((0, 50), ValueError, r"`percentages` must hold percentages of features removed in the open interval \(0, 100\), but got 0"),
        ((50, 100), ValueError, "but got 100"),
        ((-5,), ValueError, "but got -5"),
        ((50, 20), ValueError, r"`percentages` must be strictly increasing, but got \(50, 20\)"),
        ((20, 20), ValueError, "strictly increasing"),
        ((), ValueError, "`percentages` must hold at least one percentage"),
        ("10", TypeError, "`percentages` must be a sequence of percentages in"),
        ((10, None), TypeError, "`percentages` must be a sequence"),
    ],
)
def test_bad_percentages_raise(tiny_cnn, rgb_batch, percentages, exc, match):
    x, y = rgb_batch
    with pytest.raises(exc, match=match.replace("`", "\\`")):
        road(tiny_cnn, x, torch.rand(4, 1, 12, 12), y, percentages=percentages)
    with pytest.raises(exc, match=match.replace("`", "\\`")):
        ROADLerf(percentages=percentages)


def test_fractions_given_as_percentages_warn(tiny_cnn, rgb_batch):
    x, y = rgb_batch
    with pytest.warns(UserWarning, match="read as percentages"):
        road(tiny_cnn, x, torch.rand(4, 1, 12, 12), y, percentages=(0.2, 0.5))


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"order": "random"}, ValueError, r"`order` must be one of \('morf', 'lerf'\)"),
        ({"patch_size": 13}, ValueError, "`patch_size` must be at most the image side 12"),
        ({"reduction": "max"}, ValueError, "`reduction`"),
        ({"return_curves": "yes"}, TypeError, "`return_curves` must be a bool"),
    ],
)
def test_bad_arguments_raise(tiny_cnn, rgb_batch, kwargs, exc, match):
    x, y = rgb_batch
    with pytest.raises(exc, match=match.replace("`", "\\`")):
        road(tiny_cnn, x, torch.rand(4, 1, 12, 12), y, **kwargs)


def test_road_metric_options_are_keyword_only_with_a_deprecation_path():
    import inspect

    from pl_saliency.metrics import ROADLerf

    params = list(inspect.signature(ROADLerf.__init__).parameters.values())[1:]
    assert all(p.kind in (p.KEYWORD_ONLY, p.VAR_KEYWORD) for p in params)
    with pytest.warns(FutureWarning, match="`percentages`, `filler`"):
        metric = ROADLerf((20, 40), "zeros")
    assert metric.percentages == (20.0, 40.0) and metric.definition == ROADLerf(percentages=(20, 40), filler="zeros").definition


@pytest.mark.parametrize("order", ["morf", "lerf"])
def test_removal_order_fast_sort_equals_the_stable_sort(order):
    """ROAD's (and every curve's) feature order: on the CPU, rows are sorted by numpy's quicksort and
    runs of equal keys (ties, ±0, equal infinities) put back in the stable order; rows with NaN go to
    torch's stable sort. Both routes give the stable sort of the tie-permuted scores, which is what
    removal_order computed before the fast route."""
    from pl_saliency.perturbation.orders import _quicksort_order
    from pl_saliency.perturbation.orders import _tie_permutation
    from pl_saliency.perturbation.orders import removal_order

    g = torch.Generator().manual_seed(0)
    distinct = torch.rand(5, 300, generator=g, dtype=torch.float64)
    ties = (distinct * 4).floor()
    signed_zeros = distinct.clone()
    signed_zeros[:, ::7], signed_zeros[:, 3::7] = 0.0, -0.0  # equal keys of different signs
    infinite = distinct.clone()
    infinite[:, :2] = math.inf
    nan = distinct.clone()
    nan[1, 5] = math.nan
    descending = order == "morf"
    for scores, fast in [(distinct, True), (distinct.float(), True), (-distinct, True), (ties, True),
                         (ties.float(), True), (signed_zeros, True), (infinite, True), (nan, False)]:  # fmt: skip
        for tie_break in ("random", "position"):
            perm = _tie_permutation(300, tie_break, 3, scores.device)
            reference = perm[torch.sort(scores[:, perm], dim=1, descending=descending, stable=True).indices]
            assert (_quicksort_order(scores, perm, descending) is not None) == fast
            assert removal_order(scores, order, tie_break, 3).equal(reference)
