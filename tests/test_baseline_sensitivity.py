"""Baseline-sensitivity report: Kendall τ-b against scipy, a ranking flip built on purpose, shared
curves across settings, tables and errors."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pytest
import torch
from scipy import stats
from torch import nn

from pl_saliency.analysis import BaselineSensitivityReport
from pl_saliency.analysis import baseline_sensitivity
from pl_saliency.analysis import kendall_tau_b
from pl_saliency.analysis import rank_scores
from pl_saliency.functional import deletion_auc


# ------------------------------------------------------------------------------ Kendall τ-b
def test_kendall_tau_b_equals_scipy_with_ties():
    g = torch.Generator().manual_seed(0)
    for n in (2, 3, 5, 9, 20):
        for _ in range(20):
            x = torch.randint(0, 4, (n,), generator=g).double()  # many ties
            y = torch.randint(0, 4, (n,), generator=g).double()
            ref = stats.kendalltau(x.numpy(), y.numpy(), variant="b").statistic
            got = kendall_tau_b(x, y)
            if math.isnan(ref):
                assert torch.isnan(got)
            else:
                assert float(got) == pytest.approx(ref, abs=1e-12)
    x, y = torch.rand(7, generator=g), torch.rand(7, generator=g)
    assert float(kendall_tau_b(x, y)) == pytest.approx(stats.kendalltau(x.numpy(), y.numpy()).statistic, abs=1e-12)
    assert float(kendall_tau_b(x, x)) == 1.0 and float(kendall_tau_b(x, -x)) == -1.0


def test_kendall_tau_b_nan_omitted_and_batched():
    x = torch.tensor([1.0, 2.0, float("nan"), 4.0, 3.0, 0.5])
    y = torch.tensor([2.0, 1.0, 3.0, 4.0, float("nan"), 0.0])
    ref = stats.kendalltau(x.numpy(), y.numpy(), nan_policy="omit").statistic
    assert float(kendall_tau_b(x, y)) == pytest.approx(ref, abs=1e-12)
    assert torch.isnan(kendall_tau_b(torch.ones(4), torch.arange(4.0)))  # a constant variable
    assert torch.isnan(kendall_tau_b(torch.tensor([1.0, float("nan")]), torch.tensor([1.0, 2.0])))  # one valid value
    s = torch.rand(4, 6, generator=torch.Generator().manual_seed(1))
    matrix = kendall_tau_b(s.unsqueeze(1), s.unsqueeze(0))
    for a in range(4):
        for b in range(4):
            assert float(matrix[a, b]) == pytest.approx(stats.kendalltau(s[a].numpy(), s[b].numpy()).statistic, abs=1e-12)


def test_rank_scores_direction_ties_nan():
    s = torch.tensor([[0.3, 0.1, 0.3, float("nan")]])
    assert rank_scores(s, True)[0, :3].tolist() == [1.5, 3.0, 1.5]
    assert rank_scores(s, False)[0, :3].tolist() == [2.5, 1.0, 2.5]
    assert torch.isnan(rank_scores(s, True)[0, 3])


# ------------------------------------------------------------------ a ranking flip by design
class Linear2(nn.Module):
    """logit_0 = w · x - 4, logit_1 = 0; w = +1 on the 'a' positions (checkerboard), -3 on 'b'."""

    def __init__(self, a_mask: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("w", torch.where(a_mask, 1.0, -3.0))

    def forward(self, x):
        s = (x[:, 0] * self.w).flatten(1).sum(1) - 4.0
        return torch.stack([s, torch.zeros_like(s)], dim=1)


def _flip_setup():
    """'a' pixels are bright (1 or 0.5) with weight +1, 'b' pixels are 0 with weight -3.

    * zeros filler: removing an 'a' pixel costs its value, removing a 'b' pixel costs nothing, so the
      map that puts 'a' first (A) deletes fastest and B (the 'b' pixels first) slowest;
    * mean filler (m = half the 'a' value): an 'a' pixel costs m, a 'b' pixel 3m: B is now fastest.
    C alternates a, b, a, b, … and sits in between under both fillers.
    """
    a_mask = (torch.arange(4)[:, None] + torch.arange(4)[None, :]) % 2 == 0  # checkerboard, 8 + 8
    x = torch.stack([a_mask.float(), 0.5 * a_mask.float()]).unsqueeze(1)  # (2, 1, 4, 4)
    y = torch.zeros(2, dtype=torch.long)
    a_first = a_mask.float().expand(2, 1, 4, 4).clone()
    b_first = (~a_mask).float().expand(2, 1, 4, 4).clone()
    order = torch.empty(16)
    a_idx, b_idx = a_mask.flatten().nonzero()[:, 0], (~a_mask).flatten().nonzero()[:, 0]
    order[a_idx] = 16.0 - 2 * torch.arange(8.0)  # a1 > b1 > a2 > b2 > ...
    order[b_idx] = 15.0 - 2 * torch.arange(8.0)
    alternate = order.view(1, 1, 4, 4).expand(2, 1, 4, 4).clone()
    return Linear2(a_mask), x, y, {"A": a_first, "B": b_first, "C": alternate}


def test_report_recovers_a_ranking_flip():
    model, x, y, maps = _flip_setup()
    report = baseline_sensitivity(
        model, x, y, maps, {"zeros": "zeros", "mean": "mean"}, metrics=("deletion_auc", "insertion_auc"), steps=8
    )
    assert isinstance(report, BaselineSensitivityReport)
    assert report.setting_names == ["zeros", "mean"] and report.explainers == ["A", "B", "C"]
    for m in ("deletion_auc", "insertion_auc"):
        assert report.ranks[m][0].tolist() == [1.0, 3.0, 2.0]  # zeros: A best, B worst
        assert report.ranks[m][1].tolist() == [3.0, 1.0, 2.0]  # mean: the reverse
        assert float(report.tau[m][0, 1]) == -1.0 and float(report.tau[m][0, 0]) == 1.0
    # the scores are those of the metric computed directly
    for si, filler in enumerate(("zeros", "mean")):
        for ei, e in enumerate("ABC"):
            direct = deletion_auc(model, x, maps[e], y, steps=8, filler=filler)
            assert float(report.scores["deletion_auc"][si, ei]) == pytest.approx(float(direct), abs=1e-6)
    summary = report.summary()
    assert summary["deletion_auc/tau_min"] == -1.0 and summary["deletion_auc/tau_mean"] == -1.0
    assert summary["deletion_auc/A/rank_range"] == 2.0 and summary["deletion_auc/C/rank_range"] == 0.0
    spread = {r["explainer"]: r for r in report.spread_rows() if r["metric"] == "deletion_auc"}
    col = report.scores["deletion_auc"][:, 0]
    assert spread["A"]["range"] == pytest.approx(float(col.max() - col.min()))
    assert spread["A"]["std"] == pytest.approx(float(col.std(correction=0)))
    assert report.higher_is_better == {"deletion_auc": False, "insertion_auc": True}


def test_report_tables_pandas_and_plot():
    model, x, y, maps = _flip_setup()
    report = baseline_sensitivity(model, x, y, maps, ["zeros", "mean", 0.25], metrics="deletion_auc", steps=4)
    assert report.setting_names == ["zeros", "mean", "constant(0.25)"]
    rows = report.rows()
    assert len(rows) == 3 * 3 and {"metric", "setting", "filler", "steps", "patch_size", "explainer", "score", "rank"} <= set(rows[0])
    assert len(report.tau_rows()) == 3 and len(report.spread_rows()) == 3
    assert report.to_pandas().shape[0] == 9 and list(report.to_pandas("tau").columns) == [
        "metric", "setting_a", "setting_b", "tau", "tau_ci_low", "tau_ci_high", "image_tau"
    ]
    assert report.to_pandas("spread").shape[0] == 3
    fig, ax = report.plot()
    assert isinstance(fig, matplotlib.figure.Figure) and len(ax.texts) == 9
    plt.close(fig)
    assert report.definitions["deletion_auc"]["mode"] == "deletion"


def test_settings_grid_shares_curves_across_metrics_and_settings():
    model, x, y, maps = _flip_setup()

    class Counting(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner, self.calls = inner, 0

        def forward(self, inp):
            self.calls += 1
            return self.inner(inp)

    counted = Counting(model)
    report = baseline_sensitivity(
        counted, x, y, maps, {"zeros": "zeros", "mean": "mean"}, metrics=("deletion_auc", "aopc_morf", "pixel_flipping"),
        steps=(2, 4), patch_sizes=(1, 2), chunk_size=64,
    )  # fmt: skip
    assert len(report.settings) == 8 and report.settings[1]["setting"] == "zeros, steps=2, patch=2"
    # DeletionAUC alone: one call per setting and map (2 images x (steps + 1) <= 64); AOPC MoRF and
    # pixel flipping (patch 1 in every setting) reuse those curves
    assert counted.calls == report.model_calls == 8 * 3 + 2  # + one neutrality call per filler
    torch.testing.assert_close(
        report.scores["pixel_flipping"][1], report.scores["pixel_flipping"][0]
    )  # patch_size does not apply to pixel flipping
    # every 2x2 square of the checkerboard holds 2 'a' and 2 'b' pixels: with patch 2 all maps score
    # the same, so τ is undefined (NaN) there and 1 on the diagonal elsewhere
    diag = torch.diagonal(report.tau["deletion_auc"])
    patch2 = torch.tensor([s["patch_size"] == 2 for s in report.settings])
    assert (diag[~patch2] == 1).all() and torch.isnan(diag[patch2]).all()


def test_explainers_are_called_once():
    model, x, y, maps = _flip_setup()
    calls = []

    def explainer(m, inputs, target):
        calls.append(1)
        return maps["A"]

    report = baseline_sensitivity(model, x, y, {"A": explainer, "B": maps["B"]}, ["zeros", "mean"], steps=4)
    assert len(calls) == 1 and report.explainers == ["A", "B"]


def test_custom_metric_factory_gets_declared_arguments_only():
    model, x, y, maps = _flip_setup()
    seen = []

    def factory(filler, steps):
        seen.append((filler, steps))
        from pl_saliency.metrics import DeletionAUC

        return DeletionAUC(filler=filler, steps=steps)

    baseline_sensitivity(model, x, y, maps, {"z": "zeros"}, metrics={"mine": factory}, steps=4)
    assert seen == [("zeros", 4)]


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"fillers": {}}, ValueError, "`fillers` must hold at least one filler"),
        ({"fillers": "zeros"}, TypeError, "`fillers` must be a dict"),
        ({"fillers": {"g": "gray"}}, ValueError, "`filler`"),
        ({"fillers": ["zeros", "zeros"]}, ValueError, "two fillers are named 'zeros'"),
        ({"metrics": ("deletion_aucc",)}, ValueError, "`metrics` must name metrics among"),
        ({"metrics": ("infidelity",)}, ValueError, "`metrics` must name metrics among"),  # not a filler metric
        ({"metrics": ()}, ValueError, "`metrics` must hold at least one metric"),
        ({"metrics": {"m": 3}}, TypeError, "`metrics`: 'm' must be a metric name"),
        ({"metrics": {"m": lambda: "no metric"}}, TypeError, "`metrics`: 'm' must build a torchmetrics Metric"),
        ({"maps": {}}, ValueError, "`maps` must hold at least one map"),
        ({"maps": {"a": torch.rand(3, 1, 4, 4)}}, ValueError, r"`maps\['a'\]` must have the batch size"),
        ({"maps": {"a": 3}}, TypeError, "`maps`: 'a' must be a saliency tensor"),
        ({"steps": 0}, ValueError, "`steps` must be an int >= 1, but got 0"),
        ({"steps": ()}, TypeError, "`steps` must be an int >= 1 or a non-empty sequence"),
        ({"steps": (2, 2)}, ValueError, "`steps` must not repeat values"),
        ({"patch_sizes": 5}, ValueError, "`patch_sizes` must hold sizes at most the image side 4, but got 5"),
        ({"steps": 17}, ValueError, "`steps` must be at most the number of features"),
        ({"target": torch.zeros(2)}, TypeError, "`target`"),
    ],
)
def test_bad_arguments_raise_naming_the_argument(kwargs, exc, match):
    model, x, y, maps = _flip_setup()
    call = {"model": model, "inputs": x, "target": y, "maps": maps, "fillers": {"zeros": "zeros"}, "steps": 4}
    call.update(kwargs)
    with pytest.raises(exc, match=match.replace("`", "\\`")):
        baseline_sensitivity(**call)


def test_report_method_errors():
    model, x, y, maps = _flip_setup()
    report = baseline_sensitivity(model, x, y, maps, ["zeros"], metrics="deletion_auc", steps=2)
    with pytest.raises(ValueError, match="`table` must be one of"):
        report.to_pandas("ranks")
    with pytest.raises(ValueError, match="`metric` must be one of"):
        report.plot("abpc")
    with pytest.raises(TypeError, match="`x` and `y` must be tensors"):
        kendall_tau_b([1, 2], torch.tensor([1.0, 2.0]))
    summary = report.summary()  # one setting: no pair of settings
    assert math.isnan(summary["deletion_auc/tau_mean"])


# ------------------------------------------------------------------ second round: diagnostics and uncertainty


def _problem():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3)).eval()
    g = torch.Generator().manual_seed(2)
    x = torch.rand(24, 1, 8, 8, generator=g)
    x[:, :, :2] = 0.0  # a quarter of every image is already 0: `zeros` removes nothing there
    y = torch.randint(0, 3, (24,), generator=g)
    maps = {k: torch.rand(24, 1, 8, 8, generator=g) for k in ("a", "b", "c", "d")}
    return model, x, y, maps


def test_neutrality_and_noop_per_filler_by_hand():
    model, x, y, maps = _problem()
    with pytest.warns(UserWarning, match="'zeros' leaves 25% of the pixels unchanged"):
        report = baseline_sensitivity(model, x, y, maps, {"zeros": "zeros", "mean": "mean"}, metrics=("deletion_auc",), steps=4)
    rows = {r["filler"]: r for r in report.neutrality}
    for name, filled in (("zeros", torch.zeros_like(x)), ("mean", x.mean(dim=(2, 3), keepdim=True).expand_as(x))):
        p = model(filled).softmax(-1)
        assert rows[name]["substrate"] == pytest.approx(float(p.gather(1, y.view(-1, 1)).mean()), abs=1e-6)
        assert rows[name]["entropy"] == pytest.approx(float(-(p * p.log()).sum(-1).mean()), abs=1e-5)
    assert rows["zeros"]["noop_fraction"] == pytest.approx(0.25, abs=1e-6)
    assert rows["mean"]["noop_fraction"] < 0.05
    assert report.summary()["neutrality/zeros/noop_fraction"] == pytest.approx(0.25, abs=1e-6)


def test_per_image_tau_and_bootstrap_intervals_by_hand():
    from pl_saliency.analysis.baseline_sensitivity import bootstrap_tau
    from pl_saliency.analysis.baseline_sensitivity import per_image_tau

    model, x, y, maps = _problem()
    with pytest.warns(UserWarning):
        report = baseline_sensitivity(model, x, y, maps, {"zeros": "zeros", "blur": "blur"}, metrics=("deletion_auc",), steps=4)
    per = report.per_sample["deletion_auc"]  # (S, E, N)
    assert per.shape == (2, 4, 24)
    # the per-sample scores average to the reported means
    torch.testing.assert_close(per.mean(-1), report.scores["deletion_auc"])
    # per-image tau: scipy's tau-b on each image, averaged
    scipy_stats = pytest.importorskip("scipy.stats")
    taus = [scipy_stats.kendalltau(per[0, :, i].numpy(), per[1, :, i].numpy()).statistic for i in range(24)]
    assert float(report.image_tau["deletion_auc"][0, 1]) == pytest.approx(sum(taus) / len(taus), abs=1e-9)
    # bootstrap interval: contains the tau of the means, inside [-1, 1], reproducible
    low, high = report.tau_ci["deletion_auc"][0, 1].tolist()
    assert -1 <= low <= float(report.tau["deletion_auc"][0, 1]) <= high <= 1
    again = bootstrap_tau(per, False, seed=0)
    torch.testing.assert_close(again, report.tau_ci["deletion_auc"])
    torch.testing.assert_close(per_image_tau(per, False), report.image_tau["deletion_auc"])
    row = report.tau_rows()[0]
    assert row["tau_ci_low"] == pytest.approx(low) and row["image_tau"] == pytest.approx(sum(taus) / len(taus))


def test_map_divergence_across_baselines_is_documented_and_correct():
    from pl_saliency.analysis import map_divergence
    from pl_saliency.explainers.removal import SlidingPatchOcclusion
    from pl_saliency.functional.randomization import spearman_correlation

    model, x, y, _ = _problem()
    report = map_divergence(model, x[:4], y[:4], SlidingPatchOcclusion, {"zeros": "zeros", "blur": "blur"}, fixed={"patch_size": 2, "stride": 2}, similarities="spearman")
    a = SlidingPatchOcclusion(patch_size=2, stride=2, filler="zeros")(model, x[:4], y[:4])
    b = SlidingPatchOcclusion(patch_size=2, stride=2, filler="blur")(model, x[:4], y[:4])
    expected = spearman_correlation(a.flatten(1), b.flatten(1)).mean()
    assert report.values == ["zeros", "blur"]
    assert report.scores["default"]["spearman"] == pytest.approx(float(expected), abs=1e-6)
    with pytest.raises(ValueError, match="`fillers` must hold at least two"):
        map_divergence(model, x, y, SlidingPatchOcclusion, ["zeros"])


def test_leakage_warning_when_the_generating_filler_scores_the_map():
    from pl_saliency import DeletionAUC
    from pl_saliency import evaluate
    from pl_saliency.explainers.removal import SlidingPatchOcclusion

    model, x, y, _ = _problem()
    with pytest.warns(UserWarning, match="explainer 'occ' removes pixels with the filler 'zeros' that metric 'd' scores with"):
        evaluate(model, x[:4], y[:4], {"occ": SlidingPatchOcclusion(patch_size=2, stride=2, filler="zeros")}, {"d": DeletionAUC(steps=4)})


def test_metric_names_come_from_the_registry_aliases_included():
    """The analysis names metrics as the registry does: the CLI's alias `deletion` is `deletion_auc`."""
    model, x, y, maps = _flip_setup()
    a = baseline_sensitivity(model, x, y, maps, ["zeros"], metrics=("deletion",), steps=4)
    b = baseline_sensitivity(model, x, y, maps, ["zeros"], metrics=("deletion_auc",), steps=4)
    torch.testing.assert_close(a.scores["deletion"], b.scores["deletion_auc"])
