"""Faithfulness correlation: equal to Quantus fed the same subsets (single-channel inputs), an
independent step-by-step reference (RGB, positions as features), closed forms, chunking, RNG and
model-state hygiene, the metric class, errors."""

from __future__ import annotations

import warnings

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import torch
from torch import nn

from pl_saliency.functional import faithfulness_correlation
from pl_saliency.functional.faithfulness import _faithfulness_correlation_update as _update
from pl_saliency.functional.faithfulness import draw_subsets
from pl_saliency.metrics import FaithfulnessCorrelation
from pl_saliency.perturbation import Constant


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _gray_cnn():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 5)
    ).eval()


# Scores are float32 (as everywhere in the package) and a model's float32 rounding depends on the
# batch size (~3e-8 of the logits here); the correlation of score drops that are small next to the
# logits amplifies it to ~1e-5 (the reference itself moves by 3e-6 between 1 and 2 CPU threads).
# Equality is therefore checked to 5e-5 on a quantity in [-1, 1].
CORR_ATOL = 5e-5


def _gray_batch(n=4):
    g = _gen(1)
    x = torch.rand(n, 1, 8, 8, generator=g)
    x[:, :, 0, 0] = 0.0  # per-image minimum 0: Quantus' "black" baseline equals our zeros
    return x, torch.randint(0, 5, (n,), generator=g), torch.randn(n, 1, 8, 8, generator=g)


@pytest.mark.parametrize("score", ["logit", "probability"])
def test_equals_quantus_fed_the_same_subsets(monkeypatch, score):
    quantus = pytest.importorskip("quantus")
    model = _gray_cnn()
    x, y, a = _gray_batch()
    runs, size = 12, 10
    subsets = draw_subsets(len(x), 64, runs, size, _gen(2))  # (runs, N, size)
    calls = iter([(r, i) for r in range(runs) for i in range(len(x))])  # Quantus' order: per run, per sample

    def choice(n_features, k, replace=True):
        assert n_features == 64 and k == size and not replace
        r, i = next(calls)
        return subsets[r, i].numpy()

    monkeypatch.setattr(np.random, "choice", choice)
    metric = quantus.FaithfulnessCorrelation(nr_runs=runs, subset_size=size, return_aggregate=False, disable_warnings=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = metric(model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=a.numpy(), device="cpu",
                        softmax=score == "probability")  # fmt: skip
    ours = faithfulness_correlation(model, x, a, y, subsets=subsets, score=score, chunk_size=7, reduction="none")
    np.testing.assert_allclose(ours.numpy(), np.asarray(theirs), atol=CORR_ATOL)
    assert np.ptp(np.asarray(theirs)) > 0.05  # not a degenerate comparison


def _reference(model, x, sal, y, subsets, fill_value):
    """Bhatt et al.'s estimator one image and one subset at a time (positions as features, all
    channels replaced, the map summed over channels)."""
    n, c, h, w = x.shape
    runs = subsets.shape[0]
    out = []
    for i in range(n):
        with torch.no_grad():
            f0 = float(model(x[i : i + 1])[0, y[i]])
        att, drop = [], []
        a = sal[i].sum(0).reshape(-1)
        for r in range(runs):
            img = x[i].clone().reshape(c, -1)
            for pos in subsets[r, i].tolist():
                img[:, pos] = fill_value
            with torch.no_grad():
                drop.append(f0 - float(model(img.reshape(1, c, h, w))[0, y[i]]))
            att.append(float(a[subsets[r, i]].sum()))
        out.append(np.corrcoef(att, drop)[0, 1])
    return np.array(out)


def test_matches_step_by_step_reference_rgb(tiny_cnn, rgb_batch):
    x, y = rgb_batch
    model = tiny_cnn
    sal = torch.randn(4, 3, 12, 12, generator=_gen(3))
    subsets = draw_subsets(4, 144, 9, 30, _gen(4))
    ours = faithfulness_correlation(model, x, sal, y, subsets=subsets, filler=Constant(0.5), reduction="none")
    ref = _reference(model, x, sal, y, subsets, 0.5)
    np.testing.assert_allclose(ours.numpy(), ref, atol=CORR_ATOL)


def test_subsets_are_one_key_draw_per_run_whatever_the_blocking(tiny_cnn, rgb_batch):
    g = _gen(20)
    expected = torch.stack([torch.topk(torch.rand(3, 50, generator=g), 7, dim=1).indices.sort(1).values for _ in range(9)])
    for max_keys in (None, 1, 400, 10**6):  # one run per draw, 2 runs per block of 400 keys, all runs at once
        got = draw_subsets(3, 50, 9, 7, _gen(20), max_keys=max_keys)
        assert torch.equal(got.sort(dim=2).values, expected)
    x, y = rgb_batch  # the chunk size sets the blocking: the results stay the same
    sal = torch.rand(4, 1, 12, 12, generator=_gen(21))
    a = _update(tiny_cnn, x, sal, y, n_runs=7, subset_size=9, chunk_size=1, generator=_gen(22))
    b = _update(tiny_cnn, x, sal, y, n_runs=7, subset_size=9, chunk_size=100, generator=_gen(22))
    assert torch.equal(a[0], b[0])


def test_closed_form_on_a_linear_model():
    """Logit drop of removing S (zeros) = sum over S of w * x: gradient x input correlates perfectly."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(2 * 6 * 6, 4))
    x, y = torch.rand(3, 2, 6, 6, generator=_gen(5)), torch.tensor([0, 3, 1])
    exact = model[1].weight[y].detach().view(3, 2, 6, 6) * x
    kw = dict(n_runs=20, subset_size=5, reduction="none")
    torch.testing.assert_close(faithfulness_correlation(model, x, exact, y, **kw), torch.ones(3))
    torch.testing.assert_close(faithfulness_correlation(model, x, -2.0 * exact, y, **kw), -torch.ones(3))
    random_map = faithfulness_correlation(model, x, torch.rand(3, 1, 6, 6, generator=_gen(6)), y, **kw)
    assert (random_map.abs() < 0.9).all()


def test_patches_group_positions(tiny_cnn, rgb_batch):
    x, y = rgb_batch
    sal = torch.rand(4, 1, 12, 12, generator=_gen(7))
    patch_subsets = draw_subsets(4, 16, 6, 3, _gen(8))  # 4x4 grid of 3x3 squares
    ours = faithfulness_correlation(tiny_cnn, x, sal, y, subsets=patch_subsets, patch_size=3, reduction="none")
    # the same subsets spelled out as positions
    rows, cols = patch_subsets // 4, patch_subsets % 4
    offs = torch.arange(3)
    pos = ((rows[..., None, None] * 3 + offs[:, None]) * 12 + cols[..., None, None] * 3 + offs[None, :]).flatten(2)
    torch.testing.assert_close(ours, faithfulness_correlation(tiny_cnn, x, sal, y, subsets=pos, reduction="none"))


def test_chunking_generator_and_global_rng(tiny_cnn, rgb_batch):
    x, y = rgb_batch
    sal = torch.rand(4, 1, 12, 12, generator=_gen(9))
    kw = dict(n_runs=5, subset_size=10, reduction="none")
    parts = [_update(tiny_cnn, x, sal, y, n_runs=5, subset_size=10, chunk_size=c, generator=_gen(10)) for c in (1, 6, 1000, "auto")]
    for att, drops in parts[1:]:  # the same images are scored: equal up to the model's batch-size rounding
        torch.testing.assert_close(att, parts[0][0], atol=0, rtol=0)
        torch.testing.assert_close(drops, parts[0][1], atol=1e-6, rtol=0)
    runs = [faithfulness_correlation(tiny_cnn, x, sal, y, chunk_size=c, generator=_gen(10), **kw) for c in (1, 1000)]
    # drops of ~1e-4 make the correlation amplify float32 rounding (~3e-8) to ~1e-5
    torch.testing.assert_close(runs[1], runs[0], atol=1e-4, rtol=0)
    assert not torch.allclose(runs[0], faithfulness_correlation(tiny_cnn, x, sal, y, generator=_gen(11), **kw))
    state, np_state = torch.get_rng_state(), np.random.get_state()[1].copy()
    a = faithfulness_correlation(tiny_cnn, x, sal, y, **kw)  # generator=None: a fresh one seeded with 0
    assert torch.equal(torch.get_rng_state(), state) and np.array_equal(np.random.get_state()[1], np_state)
    torch.testing.assert_close(a, faithfulness_correlation(tiny_cnn, x, sal, y, generator=_gen(0), **kw))


def test_model_state_and_gradients_are_left_alone(tiny_cnn, rgb_batch):
    x, y = rgb_batch
    tiny_cnn.train()
    params = [p.detach().clone() for p in tiny_cnn.parameters()]
    faithfulness_correlation(tiny_cnn, x, torch.rand(4, 1, 12, 12), y, n_runs=3, subset_size=4)
    assert tiny_cnn.training
    assert all(torch.equal(p, q) and p.grad is None for p, q in zip(tiny_cnn.parameters(), params))


def test_autocast_stays_close(tiny_cnn, rgb_batch):
    x, y = rgb_batch
    sal = torch.rand(4, 1, 12, 12, generator=_gen(12))
    kw = dict(n_runs=6, subset_size=30, reduction="none")
    fp32 = faithfulness_correlation(tiny_cnn, x, sal, y, **kw)
    bf16 = faithfulness_correlation(tiny_cnn, x, sal, y, amp_dtype=torch.bfloat16, **kw)
    assert bf16.dtype == torch.float32 and bf16.shape == (4,)
    assert (bf16 - fp32).abs().max() < 0.5  # bfloat16 logits: a coarse but not arbitrary estimate


# ------------------------------------------------------------------ metric class


def test_metric_accumulates_like_functional_and_excludes_nan(tiny_cnn, rgb_batch):
    x, y = rgb_batch
    sal = torch.rand(4, 1, 12, 12, generator=_gen(13))
    sal[3] = 1.0  # constant map: every subset sums to the same value -> undefined correlation
    metric = FaithfulnessCorrelation(n_runs=5, subset_size=8, keep_per_sample=True)
    metric.update(tiny_cnn, x[:2], sal[:2], y[:2])
    metric.update(tiny_cnn, x[2:], sal[2:], y[2:])
    per = torch.cat([faithfulness_correlation(tiny_cnn, x[k : k + 2], sal[k : k + 2], y[k : k + 2], n_runs=5, subset_size=8,
                                              reduction="none") for k in (0, 2)])  # fmt: skip
    torch.testing.assert_close(metric.per_sample(), per, equal_nan=True)
    assert torch.isnan(per[3]) and int(metric.nan_count) == 1
    torch.testing.assert_close(metric.compute(), per[:3].mean(), atol=1e-6, rtol=0)
    assert metric.definition == {
        "metric": "FaithfulnessCorrelation", "higher_is_better": True, "n_runs": 5, "subset_size": 8, "filler": "zeros",
        "patch_size": 1, "score": "logit",
    }  # fmt: skip
    assert FaithfulnessCorrelation(amp_dtype=torch.bfloat16).definition["amp_dtype"] == "bfloat16"


def test_metric_attributes_and_plot(tiny_cnn, rgb_batch):
    x, y = rgb_batch
    metric = FaithfulnessCorrelation(n_runs=3, subset_size=4)
    assert metric.higher_is_better is True and metric.is_differentiable is False
    assert (metric.plot_lower_bound, metric.plot_upper_bound) == (-1.0, 1.0)
    values = [metric(tiny_cnn, x, torch.rand(4, 1, 12, 12, generator=_gen(s)), y) for s in range(2)]
    fig, _ = metric.plot(values)
    assert isinstance(fig, matplotlib.figure.Figure)
    assert list(metric.children()) == [] and metric.state_dict() == {}


# ------------------------------------------------------------------ errors


def test_errors_name_the_argument(tiny_cnn, rgb_batch):
    x, y = rgb_batch
    sal = torch.rand(4, 1, 12, 12)
    ok = draw_subsets(4, 144, 3, 5, _gen(0))

    def call(**kw):
        return faithfulness_correlation(tiny_cnn, x, sal, y, **kw)

    with pytest.raises(ValueError, match=r"Argument `n_runs` must be an int >= 2, but got 1"):
        call(n_runs=1)
    with pytest.raises(ValueError, match=r"Argument `n_runs` must be an int >= 2, but got 1"):
        FaithfulnessCorrelation(n_runs=1)
    with pytest.raises(TypeError, match=r"Argument `subset_size` must be an int >= 1, but got float 2.5"):
        FaithfulnessCorrelation(subset_size=2.5)
    with pytest.raises(ValueError, match=r"Argument `subset_size` must be smaller than the number of features \(144\), but got 144"):
        call(subset_size=144)
    with pytest.raises(ValueError, match=r"Argument `subset_size` must be smaller than the number of features \(144\), but got 224"):
        FaithfulnessCorrelation().update(tiny_cnn, x, sal, y)
    with pytest.raises(TypeError, match=r"Argument `subsets` must be an int64 tensor of shape \(n_runs, 4, subset_size\)"):
        call(subsets=ok.numpy())
    with pytest.raises(ValueError, match=r"Argument `subsets` must have shape \(n_runs, 4, subset_size\) with n_runs >= 2, but got shape \(3, 2, 5\)"):
        call(subsets=ok[:, :2])
    with pytest.raises(ValueError, match=r"Argument `subsets` must have shape .* but got shape \(1, 4, 5\)"):
        call(subsets=ok[:1])
    with pytest.raises(TypeError, match=r"Argument `subsets` must hold integer feature indices, but got dtype torch.float32"):
        call(subsets=ok.float())
    with pytest.raises(ValueError, match=r"Argument `subsets` must hold feature indices in \[0, 143\], but got values in \[0, 144\]"):
        bad = ok.clone()
        bad[0, 0, 0] = 144
        call(subsets=bad)
    with pytest.raises(ValueError, match=r"Argument `subsets` must not repeat a feature within a subset"):
        bad = ok.clone()
        bad[1, 2, 1] = bad[1, 2, 0]
        call(subsets=bad)
    with pytest.raises(ValueError, match=r"Argument `n_runs` must match `subsets` \(3 runs\), but got 4"):
        call(subsets=ok, n_runs=4)
    with pytest.raises(ValueError, match=r"Argument `subset_size` must match `subsets` \(subsets of 5\), but got 6"):
        call(subsets=ok, subset_size=6)
    with pytest.raises(ValueError, match=r"Argument `patch_size` must be at most the image side 12, but got 13"):
        call(patch_size=13, subset_size=1)
    with pytest.raises(ValueError, match=r"Argument `score` must be one of"):
        FaithfulnessCorrelation(score="prob")
    with pytest.raises(ValueError, match=r"Argument `reduction` must be one of"):
        call(reduction="avg")
    with pytest.raises(ValueError, match=r"Argument `chunk_size` must be an int >= 1 or 'auto', but got 'big'"):
        FaithfulnessCorrelation(chunk_size="big")
    with pytest.raises(ValueError, match=r"Argument `memory_budget_mb` must be a number of MiB > 0 or None, but got -1"):
        call(chunk_size="auto", memory_budget_mb=-1)
    with pytest.raises(ValueError, match=r"Argument `amp_dtype` must be None, torch.bfloat16 or torch.float16, but got torch.float64"):
        FaithfulnessCorrelation(amp_dtype=torch.float64)
    with pytest.raises(ValueError, match=r"Argument `saliency` must have 1 or 3 channels"):
        faithfulness_correlation(tiny_cnn, x, torch.rand(4, 2, 12, 12), y)
