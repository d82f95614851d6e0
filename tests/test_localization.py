"""Localization: pointing game against TorchRay's rule and a distance transform, and against Quantus
(tolerance 0); energy pointing game against Score-CAM's formula; relevance mass / rank accuracy
against Quantus and an exhaustive tie-breaking reference."""

from __future__ import annotations

import itertools
import math
import warnings

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import quantus
import torch
from scipy.ndimage import distance_transform_edt

from pl_saliency.functional import energy_pointing_game
from pl_saliency.functional import pointing_game
from pl_saliency.functional import relevance_mass_accuracy
from pl_saliency.functional import relevance_rank_accuracy
from pl_saliency.metrics import EnergyPointingGame
from pl_saliency.metrics import PointingGame
from pl_saliency.metrics import RelevanceMassAccuracy
from pl_saliency.metrics import RelevanceRankAccuracy
from pl_saliency.perturbation import BatchContext


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def random_masks(n, h, w, seed, empty=()):
    """Blobs: unions of two random rectangles, so masks are not boxes."""
    g = _gen(seed)
    masks = torch.zeros(n, 1, h, w, dtype=torch.bool)
    for i in range(n):
        if i in empty:
            continue
        for _ in range(2):
            y0, x0 = int(torch.randint(0, h - 2, (1,), generator=g)), int(torch.randint(0, w - 2, (1,), generator=g))
            hh, ww = int(torch.randint(1, h // 3, (1,), generator=g)), int(torch.randint(1, w // 3, (1,), generator=g))
            masks[i, 0, y0 : y0 + hh, x0 : x0 + ww] = True
    return masks


def peaks_near(masks, reach, seed):
    """Continuous maps whose single maximum lies up to `reach` pixels (per axis) from a random mask pixel."""
    g = _gen(seed)
    n, _, h, w = masks.shape
    sal = torch.rand(n, 1, h, w, generator=g) * 0.5
    for i in range(n):
        pix = masks[i, 0].nonzero()
        v, u = pix[int(torch.randint(0, len(pix), (1,), generator=g))].tolist()
        dv, du = (int(d) for d in torch.randint(-reach, reach + 1, (2,), generator=g))
        sal[i, 0, min(max(v + dv, 0), h - 1), min(max(u + du, 0), w - 1)] = 1.0
    return sal


def torchray_hit(mask: torch.Tensor, point: tuple[int, int], tolerance: float) -> bool:
    """TorchRay ``PointingGame.evaluate`` restated: point = (u, v) = (column, row); strict tolerance."""
    v, u = torch.meshgrid(
        (torch.arange(mask.shape[0], dtype=torch.float32) - point[1]) ** 2,
        (torch.arange(mask.shape[1], dtype=torch.float32) - point[0]) ** 2,
        indexing="ij",
    )
    accept = (v + u) < tolerance**2
    return bool((mask & accept).view(-1).any())


def edt_hit_share(sal: np.ndarray, mask: np.ndarray, tolerance: float) -> float:
    """Share of the maximal positions that lie in the mask or closer than `tolerance` (Euclidean distance transform)."""
    if not mask.any():
        return float("nan")
    dist = distance_transform_edt(~mask)
    maxima = sal == sal.max()
    hit = (dist == 0) | (dist < tolerance)
    return float((hit & maxima).sum() / maxima.sum())


def _quantus(metric, a, s):
    n = a.shape[0]
    x = np.zeros((n, 3, *a.shape[-2:]), dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = metric(model=None, x_batch=x, y_batch=np.zeros(n, dtype=np.int64), a_batch=a.numpy().copy(), s_batch=s.numpy().astype(np.float32))
    return np.asarray(out, dtype=np.float64)


# ------------------------------------------------------------------ pointing game


@pytest.mark.parametrize("tolerance", [1, 2.5, 5, 15])
def test_pointing_game_matches_torchray_rule(tolerance):
    n, h, w = 12, 40, 36
    masks = random_masks(n, h, w, seed=2)
    sal = peaks_near(masks, reach=math.ceil(tolerance) + 4, seed=1)  # one maximum, near the tolerance border
    ours = pointing_game(sal, masks, tolerance=tolerance, reduction="none")
    ref = []
    for i in range(n):
        idx = int(sal[i].flatten().argmax())
        ref.append(1.0 if torchray_hit(masks[i, 0], (idx % w, idx // w), tolerance) else 0.0)
    assert torch.equal(ours, torch.tensor(ref))
    assert 0 < ours.sum() < n  # the cases are not all hits or all misses


@pytest.mark.parametrize("tolerance", [0, 0.5, 1, 1.5, 2.9, 3, 4, 7.2, 15, 30])
def test_pointing_game_ties_mean_matches_distance_transform(tolerance):
    n, h, w = 10, 20, 24
    masks = random_masks(n, h, w, seed=3)
    sal = torch.randint(0, 4, (n, 1, h, w), generator=_gen(4)).float()  # many tied maxima
    sal[0] = 1.0  # a constant map: every position is maximal
    ours = pointing_game(sal, masks, tolerance=tolerance, reduction="none")
    ref = [edt_hit_share(sal[i, 0].numpy(), masks[i, 0].numpy(), tolerance) for i in range(n)]
    np.testing.assert_allclose(ours.numpy(), ref, rtol=1e-6)
    if tolerance <= 4:  # a constant map scores the share of the image within tolerance of the mask, not a certain hit
        assert ours[0] < 1


def test_pointing_game_matches_quantus_tolerance_zero():
    n, h, w = 16, 10, 12
    masks = random_masks(n, h, w, seed=5)
    cont = torch.randn(n, 1, h, w, generator=_gen(6))
    tied = torch.randint(0, 3, (n, 1, h, w), generator=_gen(7)).float()
    q = quantus.PointingGame(disable_warnings=True)
    np.testing.assert_array_equal(pointing_game(cont, masks, tolerance=0, reduction="none").numpy(), _quantus(q, cont, masks))
    np.testing.assert_array_equal(pointing_game(tied, masks, tolerance=0, ties="any", reduction="none").numpy(), _quantus(q, tied, masks))
    assert 0 < _quantus(q, tied, masks).sum() < n


def test_pointing_game_empty_mask_is_nan_and_excluded():
    masks = random_masks(4, 10, 10, seed=8, empty=(1,))
    sal = torch.rand(4, 1, 10, 10, generator=_gen(9))
    per = pointing_game(sal, masks, tolerance=2, reduction="none")
    assert math.isnan(per[1]) and not torch.isnan(per[[0, 2, 3]]).any()
    assert pointing_game(sal, masks, tolerance=2).item() == pytest.approx(per[[0, 2, 3]].mean().item())
    metric = PointingGame(tolerance=2)
    metric.update(None, torch.rand(4, 3, 10, 10), sal, torch.zeros(4, dtype=torch.long), masks=masks)
    assert int(metric.nan_count) == 1 and int(metric.total) == 3
    torch.testing.assert_close(metric.compute(), per[[0, 2, 3]].mean())


def test_boxes_are_half_open_pixel_boxes():
    h, w = 9, 11
    boxes = torch.tensor([[0, 0, 11, 9], [2, 3, 5, 4], [4, 4, 4, 7], [1.6, 0.4, 3.4, 2.5]])
    masks = torch.zeros(4, 1, h, w, dtype=torch.bool)
    masks[0, 0, :, :] = True
    masks[1, 0, 3:4, 2:5] = True
    # box 2 is empty (x0 == x1); box 3: pixel centres 2.5 in [1.6, 3.4) and 0.5, 1.5 in [0.4, 2.5)
    masks[3, 0, 0:2, 2:3] = True
    sal = torch.rand(4, 1, h, w, generator=_gen(10))
    for fn in (energy_pointing_game, relevance_mass_accuracy, relevance_rank_accuracy):
        torch.testing.assert_close(fn(sal, boxes=boxes, reduction="none"), fn(sal, masks, reduction="none"), equal_nan=True)
    torch.testing.assert_close(
        pointing_game(sal, boxes=boxes, tolerance=3, reduction="none"), pointing_game(sal, masks, tolerance=3, reduction="none"), equal_nan=True
    )


def test_pointing_game_large_tolerance_and_low_resolution_maps():
    masks = random_masks(3, 12, 12, seed=11)
    sal = torch.rand(3, 1, 12, 12, generator=_gen(12))
    assert torch.equal(pointing_game(sal, masks, tolerance=1000, reduction="none"), torch.ones(3))
    low = torch.rand(3, 1, 3, 5, generator=_gen(13))  # a size pair no other test uses: the notice is shown once per pair
    up = torch.nn.functional.interpolate(low, size=(12, 12), mode="bilinear", align_corners=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = pointing_game(low, masks, tolerance=2, reduction="none")
    torch.testing.assert_close(got, pointing_game(up, masks, tolerance=2, reduction="none"))


# ------------------------------------------------------------------ energy, mass, rank


def test_energy_pointing_game_matches_score_cam_formula():
    n, h, w = 6, 10, 12
    masks = random_masks(n, h, w, seed=14)
    sal = torch.randn(n, 1, h, w, generator=_gen(15))
    ours = energy_pointing_game(sal, masks, reduction="none")
    for i in range(n):
        pos = np.maximum(sal[i, 0].numpy().astype(np.float64), 0)
        inside = (pos * masks[i, 0].numpy()).sum()
        outside = (pos * ~masks[i, 0].numpy()).sum()
        assert ours[i].item() == pytest.approx(inside / (inside + outside), rel=1e-6)
    assert math.isnan(energy_pointing_game(-sal[:1].abs(), masks[:1]).item())  # no positive energy


@pytest.mark.parametrize("relevance, quantus_abs", [("abs", True), ("signed", False)])
def test_relevance_mass_and_rank_match_quantus(relevance, quantus_abs):
    n, h, w = 8, 10, 12
    masks = random_masks(n, h, w, seed=16)
    sal = torch.randn(n, 1, h, w, generator=_gen(17)) + (0.5 if relevance == "signed" else 0.0)
    rma = quantus.RelevanceMassAccuracy(abs=quantus_abs, disable_warnings=True)
    rra = quantus.RelevanceRankAccuracy(abs=quantus_abs, disable_warnings=True)
    np.testing.assert_allclose(relevance_mass_accuracy(sal, masks, relevance=relevance, reduction="none").numpy(), _quantus(rma, sal, masks), rtol=1e-4)
    np.testing.assert_allclose(relevance_rank_accuracy(sal, masks, relevance=relevance, reduction="none").numpy(), _quantus(rra, sal, masks), rtol=1e-6)


def test_relevance_positive_is_quantus_on_the_positive_part():
    masks = random_masks(6, 10, 10, seed=18)
    sal = torch.randn(6, 1, 10, 10, generator=_gen(19))
    rma = quantus.RelevanceMassAccuracy(disable_warnings=True)
    np.testing.assert_allclose(
        relevance_mass_accuracy(sal, masks, relevance="positive", reduction="none").numpy(), _quantus(rma, sal.clamp_min(0), masks), rtol=1e-4
    )
    torch.testing.assert_close(relevance_mass_accuracy(sal, masks, relevance="positive"), energy_pointing_game(sal, masks))


def rank_accuracy_all_tie_breaks(r: np.ndarray, mask: np.ndarray) -> float:
    """Arras et al.'s rank accuracy averaged over every order of the positions (exact expectation of random tie-breaking)."""
    r, mask = r.ravel(), mask.ravel()
    k = int(mask.sum())
    total = 0.0
    perms = list(itertools.permutations(range(r.size)))
    for perm in perms:
        order = sorted(range(r.size), key=lambda p: (-r[p], perm[p]))
        total += mask[order[:k]].sum() / k
    return total / len(perms)


def test_relevance_rank_ties_score_their_expectation():
    sal = torch.tensor([[[[2.0, 1.0, 1.0], [1.0, 0.0, -1.0]]], [[[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]]], [[[0.0, 3.0, -3.0], [3.0, 1.0, 2.0]]]])
    masks = torch.tensor([[[[1, 1, 0], [0, 0, 0]]], [[[0, 1, 0], [0, 0, 1]]], [[[0, 1, 1], [0, 0, 0]]]]).bool()
    ours = relevance_rank_accuracy(sal, masks, reduction="none")
    ref = [rank_accuracy_all_tie_breaks(sal[i, 0].abs().numpy(), masks[i, 0].numpy()) for i in range(3)]
    np.testing.assert_allclose(ours.numpy(), ref, rtol=1e-6)
    assert ours[1].item() == pytest.approx(2 / 6)  # constant map: chance level |G| / HW


def test_empty_masks_and_zero_maps_are_nan():
    masks = random_masks(3, 8, 8, seed=20, empty=(0,))
    sal = torch.rand(3, 1, 8, 8, generator=_gen(21))
    sal[2] = 0.0
    for fn in (energy_pointing_game, relevance_mass_accuracy):
        per = fn(sal, masks, reduction="none")
        assert math.isnan(per[0]) and math.isnan(per[2]) and not math.isnan(per[1])
    per = relevance_rank_accuracy(sal, masks, reduction="none")
    assert math.isnan(per[0]) and not torch.isnan(per[1:]).any()


# ------------------------------------------------------------------ metric classes


@pytest.mark.parametrize(
    "cls, fn, kwargs",
    [
        (PointingGame, pointing_game, {"tolerance": 2.0}),
        (EnergyPointingGame, energy_pointing_game, {}),
        (RelevanceMassAccuracy, relevance_mass_accuracy, {"relevance": "positive"}),
        (RelevanceRankAccuracy, relevance_rank_accuracy, {}),
    ],
)
def test_metric_accumulates_like_functional_from_context(cls, fn, kwargs, rgb_batch):
    x, y = rgb_batch
    masks = random_masks(4, 12, 12, seed=22, empty=(3,))
    sal = torch.randn(4, 1, 12, 12, generator=_gen(23))
    metric = cls(keep_per_sample=True, **kwargs)
    metric.update(None, x[:2], sal[:2], y[:2], context=BatchContext(extras={"masks": masks[:2], "boxes": torch.zeros(2, 4)}))
    metric.update(None, x[2:], sal[2:], y[2:], masks=masks[2:].float())
    per = fn(sal, masks, reduction="none", **kwargs)
    torch.testing.assert_close(metric.per_sample(), per, equal_nan=True)
    torch.testing.assert_close(metric.compute(), fn(sal, masks, **kwargs))
    assert metric.definition["metric"] == cls.__name__ and metric.higher_is_better is True
    metric.reset()
    boxes = torch.tensor([[0, 0, 6, 6], [3, 3, 12, 12], [5, 0, 7, 12], [0, 0, 12, 1]])
    metric.update(None, x, sal, y, context=BatchContext(extras={"boxes": boxes}))
    torch.testing.assert_close(metric.per_sample(), fn(sal, boxes=boxes, reduction="none", **kwargs), equal_nan=True)


def test_class_attributes_and_plot(rgb_batch):
    x, y = rgb_batch
    pg = PointingGame()
    assert pg.definition == {"metric": "PointingGame", "higher_is_better": True, "tolerance": 15.0, "ties": "mean", "mask_key": "masks"}
    assert pg.is_differentiable is False and pg.full_state_update is False
    assert (pg.plot_lower_bound, pg.plot_upper_bound) == (0.0, 1.0)
    assert RelevanceMassAccuracy(relevance="signed").plot_upper_bound is None
    assert RelevanceRankAccuracy().definition["relevance"] == "abs"
    masks = random_masks(4, 12, 12, seed=24)
    values = [pg(None, x, torch.rand(4, 1, 12, 12, generator=_gen(s)), y, masks=masks) for s in range(3)]
    fig, _ = pg.plot(values)
    assert isinstance(fig, matplotlib.figure.Figure)
    assert pg.state_dict() == {} and list(pg.children()) == []


# ------------------------------------------------------------------ errors


def test_ground_truth_resolution_errors(rgb_batch):
    x, y = rgb_batch
    sal = torch.rand(4, 1, 12, 12)
    metric = PointingGame()
    with pytest.raises(ValueError, match=r"Argument `masks` or `boxes` is required"):
        metric.update(None, x, sal, y)
    with pytest.raises(ValueError, match=r"Argument `masks` or `boxes` is required: .* `mask_key` = 'masks' \(or \"boxes\"\) .* holds \['other'\]"):
        metric.update(None, x, sal, y, context=BatchContext(extras={"other": 1}))
    with pytest.raises(ValueError, match=r"Arguments `masks` and `boxes` are exclusive"):
        metric.update(None, x, sal, y, masks=torch.ones(4, 1, 12, 12), boxes=torch.zeros(4, 4))
    with pytest.raises(ValueError, match=r"Argument `masks` or `boxes` is required"):
        pointing_game(sal)
    with pytest.raises(ValueError, match=r"Arguments `masks` and `boxes` are exclusive"):
        energy_pointing_game(sal, torch.ones(4, 1, 12, 12), torch.zeros(4, 4))


def test_mask_errors(rgb_batch):
    x, y = rgb_batch
    sal = torch.rand(4, 1, 12, 12)
    with pytest.raises(TypeError, match=r"Argument `masks` must be a torch.Tensor"):
        pointing_game(sal, np.ones((4, 1, 12, 12)))
    with pytest.raises(ValueError, match=r"Argument `masks` must have shape \(N, 1, H, W\) or \(N, H, W\), but got shape \(4, 3, 12, 12\)"):
        pointing_game(sal, torch.ones(4, 3, 12, 12))
    with pytest.raises(ValueError, match=r"Argument `masks` must have the batch size of `saliency` \(4\), but got shape \(2, 1, 12, 12\)"):
        relevance_mass_accuracy(sal, torch.ones(2, 1, 12, 12))
    with pytest.raises(ValueError, match=r"Argument `masks` must have the image size \(12, 12\), but got shape \(4, 1, 10, 10\)"):
        PointingGame().update(None, x, sal, y, masks=torch.ones(4, 1, 10, 10))
    with pytest.raises(ValueError, match=r"Argument `masks` must be binary \(bool, or 0/1 values\), but got values in \[0.0, 0.5\]"):
        pointing_game(sal, torch.full((4, 1, 12, 12), 0.5).index_fill_(0, torch.tensor([0]), 0.0))
    with pytest.raises(TypeError, match=r"Argument `masks` must be bool or hold 0/1 values, but got dtype torch.complex64"):
        pointing_game(sal, torch.ones(4, 1, 12, 12, dtype=torch.complex64))
    assert pointing_game(sal, torch.ones(4, 12, 12, dtype=torch.uint8)).item() == 1.0  # (N, H, W) integer 0/1 masks


def test_box_errors():
    sal = torch.rand(2, 1, 12, 10)
    with pytest.raises(TypeError, match=r"Argument `boxes` must be a torch.Tensor of shape \(2, 4\)"):
        pointing_game(sal, boxes=[[0, 0, 1, 1]] * 2)
    with pytest.raises(ValueError, match=r"Argument `boxes` must have shape \(2, 4\) as \(x0, y0, x1, y1\) per sample, but got shape \(2, 2, 2\)"):
        pointing_game(sal, boxes=torch.zeros(2, 2, 2))
    with pytest.raises(TypeError, match=r"Argument `boxes` must hold pixel coordinates \(int or float\), but got dtype torch.bool"):
        pointing_game(sal, boxes=torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"Argument `boxes` must be finite"):
        pointing_game(sal, boxes=torch.tensor([[0, 0, 1, 1], [0, 0, float("nan"), 1]]))
    with pytest.raises(ValueError, match=r"Argument `boxes` must have x0 <= x1 and y0 <= y1 .* but box 1 is \(5, 1, 3, 4\)"):
        pointing_game(sal, boxes=torch.tensor([[0, 0, 1, 1], [5, 1, 3, 4]]))
    with pytest.raises(ValueError, match=r"but box 0 is \(0, 5, 3, 4\)"):
        pointing_game(sal, boxes=torch.tensor([[0, 5, 3, 4], [0, 0, 1, 1]]))
    with pytest.raises(ValueError, match=r"Argument `boxes` must lie inside the 12x10 image \(0 <= x0 <= x1 <= 10, 0 <= y0 <= y1 <= 12\), but box 0 is \(0, 0, 11, 4\)"):
        pointing_game(sal, boxes=torch.tensor([[0, 0, 11, 4], [0, 0, 1, 1]]))
    with pytest.raises(ValueError, match=r"Argument `boxes` must lie inside"):
        relevance_rank_accuracy(sal, boxes=torch.tensor([[0, 0, 1, 1], [-1, 0, 1, 1]]))


def test_setting_errors():
    sal, masks = torch.rand(2, 1, 6, 6), torch.ones(2, 1, 6, 6)
    with pytest.raises(ValueError, match=r"Argument `tolerance` must be >= 0, but got -1"):
        pointing_game(sal, masks, tolerance=-1)
    with pytest.raises(ValueError, match=r"Argument `tolerance` must be >= 0, but got -0.5"):
        PointingGame(tolerance=-0.5)
    with pytest.raises(ValueError, match=r"Argument `tolerance` must be >= 0, but got inf"):
        PointingGame(tolerance=float("inf"))
    with pytest.raises(TypeError, match=r"Argument `tolerance` must be a number of pixels >= 0, but got str"):
        pointing_game(sal, masks, tolerance="15")
    with pytest.raises(ValueError, match=r"Argument `ties` must be one of \('mean', 'any'\), but got 'first'"):
        PointingGame(ties="first")
    with pytest.raises(ValueError, match=r"Argument `relevance` must be one of \('abs', 'positive', 'signed'\)"):
        RelevanceRankAccuracy(relevance="square")
    with pytest.raises(ValueError, match=r"Argument `relevance` must be one of"):
        relevance_mass_accuracy(sal, masks, relevance="pos")
    with pytest.raises(ValueError, match=r"Argument `reduction` must be one of"):
        energy_pointing_game(sal, masks, reduction="avg")


# ------------------------------------------------------------------ monitor


def test_monitor_hands_ground_truth_and_explainer_to_the_metrics(tmp_path):
    """SaliencyMonitor: boxes from `batch_transform` extras reach the localization metrics through
    `context.extras`, the explainer reaches MaxSensitivity through `context.explainer`."""
    import pytorch_lightning as pl
    from torch.utils.data import DataLoader

    from pl_saliency import Gradient
    from pl_saliency import GradientXInput
    from pl_saliency import SaliencyMonitor
    from pl_saliency.demo import DigitsCNN
    from pl_saliency.demo import digits_datasets
    from pl_saliency.metrics import GiniSparseness
    from pl_saliency.metrics import Infidelity
    from pl_saliency.metrics import MaxSensitivity

    _, val = digits_datasets(size=16)
    box = torch.tensor([[4, 4, 12, 12]])

    def batch_transform(batch):
        x, y = batch[0], batch[1]
        return x, y, {"boxes": box.expand(len(x), 4)}

    metrics = [PointingGame(tolerance=1), EnergyPointingGame(), GiniSparseness(), Infidelity(n_samples=2), MaxSensitivity(n_samples=2)]
    monitor = SaliencyMonitor(explainers=[Gradient(), GradientXInput()], metrics=metrics, num_samples=6, batch_transform=batch_transform)
    trainer = pl.Trainer(
        accelerator="cpu", devices=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, limit_val_batches=1, callbacks=[monitor], default_root_dir=str(tmp_path),
    )  # fmt: skip
    pl.seed_everything(0)
    model = DigitsCNN()
    trainer.validate(model, DataLoader(val, batch_size=6), verbose=False)
    scores = monitor.history[-1]["scores"]
    for e in ("gradient", "gradient_x_input"):
        for m in ("pointing_game", "energy_pointing_game", "gini_sparseness", "infidelity", "max_sensitivity"):
            assert scores[f"{e}/{m}"] is not None and math.isfinite(scores[f"{e}/{m}"]), (e, m)
    # the logged energy pointing game is the functional's on the same maps and boxes
    x, y = next(iter(DataLoader(val, batch_size=6)))
    sal = GradientXInput()(model, x, y)
    assert scores["gradient_x_input/energy_pointing_game"] == pytest.approx(energy_pointing_game(sal, boxes=box.expand(6, 4)).item(), rel=1e-5)
