"""The coherence paper's reliability statistics: Krippendorff's α against the ``krippendorff`` package
(every level, missing values), the authors' exact ``ranked_interrater_relevance`` computation, per-image
rankings, Spearman / point-biserial / φ against SciPy, and the report over a coherence report."""

from __future__ import annotations

import math

import krippendorff
import numpy as np
import pytest
import torch
from scipy import stats
from torch.testing import assert_close

from pl_saliency.analysis.reliability import average_ranks
from pl_saliency.analysis.reliability import coherence_reliability
from pl_saliency.analysis.reliability import image_rankings
from pl_saliency.analysis.reliability import krippendorff_alpha
from pl_saliency.analysis.reliability import metric_correlation
from pl_saliency.analysis.reliability import ranking_reliability
from pl_saliency.analysis.reliability import reliability_report


@pytest.mark.parametrize("level", ["nominal", "ordinal", "interval", "ratio"])
def test_krippendorff_alpha_matches_the_package(level):
    rng = np.random.default_rng(0)
    for _ in range(6):
        data = rng.integers(1, 6, size=(7, 11)).astype(float)
        data[rng.random(data.shape) < 0.25] = np.nan  # missing values
        assert krippendorff_alpha(data, level) == pytest.approx(krippendorff.alpha(data, level_of_measurement=level), abs=1e-10)
    ranks = np.stack([rng.permutation(5) + 1.0 for _ in range(9)])  # images x explainers, ranks
    assert krippendorff_alpha(ranks, level) == pytest.approx(krippendorff.alpha(ranks, level_of_measurement=level), abs=1e-10)


def test_krippendorff_alpha_closed_forms():
    same = np.tile(np.arange(1.0, 6.0), (4, 1))  # every rater ranks the units alike
    assert krippendorff_alpha(same, "ordinal") == pytest.approx(1.0)
    assert math.isnan(krippendorff_alpha(np.ones((3, 4))))  # no expected disagreement
    assert math.isnan(krippendorff_alpha(np.array([[1.0, np.nan], [np.nan, 2.0]])))  # nothing pairable


def test_the_authors_ranked_interrater_relevance_is_reproduced():
    """reliability.py l. 8-15: krippendorff.alpha(np.argsort(values, axis=0).swapaxes(0, 1)), default level."""
    rng = np.random.default_rng(1)
    values = rng.random((6, 20))  # (explainers, images) as their make_aucs returns
    theirs = krippendorff.alpha(np.argsort(values, axis=0).swapaxes(0, 1))
    ours = ranking_reliability(torch.from_numpy(values), level="interval", ranking="argsort", orient=False)
    assert ours == pytest.approx(theirs, abs=1e-10)
    # argsort is the inverse permutation of the ranks: our default (ranks, ordinal) differs in general
    ranks = stats.rankdata(values, axis=0).T
    assert ranking_reliability(torch.from_numpy(values)) == pytest.approx(krippendorff.alpha(ranks, level_of_measurement="ordinal"), abs=1e-10)


def test_image_rankings_orientation_ties_and_nan():
    scores = torch.tensor([[0.1, 0.5], [0.3, 0.5], [0.2, math.nan]])  # 3 explainers x 2 images
    r = image_rankings(scores, higher_is_better=True)
    assert r[0].tolist() == [1.0, 3.0, 2.0]
    assert r[1, :2].tolist() == [1.5, 1.5] and math.isnan(r[1, 2])
    assert image_rankings(scores, higher_is_better=False)[0].tolist() == [3.0, 1.0, 2.0]
    assert_close(average_ranks(torch.tensor([3.0, 1.0, 3.0, 2.0])), torch.from_numpy(stats.rankdata([3, 1, 3, 2])).double())


def test_agreeing_images_are_reliable_and_shuffled_ones_are_not():
    g = torch.Generator().manual_seed(0)
    quality = torch.arange(6.0)[:, None]
    consistent = quality + 0.1 * torch.randn(6, 40, generator=g)
    noise = torch.randn(6, 40, generator=g)
    assert ranking_reliability(consistent) > 0.9
    assert abs(ranking_reliability(noise)) < 0.1
    assert ranking_reliability(-consistent, higher_is_better=False) == pytest.approx(ranking_reliability(consistent))


def test_correlations_match_scipy():
    rng = np.random.default_rng(2)
    a, b = rng.random(30), rng.random(30)
    a[3] = np.nan
    r, method = metric_correlation(a, b)
    assert method == "spearman"
    assert r == pytest.approx(stats.spearmanr(a, b, nan_policy="omit").statistic, abs=1e-10)
    hit = (rng.random(30) > 0.4).astype(float)
    r, method = metric_correlation(hit, b)
    assert method == "pointbiserial" and r == pytest.approx(stats.pointbiserialr(hit, b).statistic, abs=1e-10)
    other = (rng.random(30) > 0.5).astype(float)
    r, method = metric_correlation(hit, other)
    assert method == "pearson" and r == pytest.approx(stats.pearsonr(hit, other).statistic, abs=1e-10)
    assert math.isnan(metric_correlation(np.ones(5), np.arange(5.0), method="pearson")[0])


def test_report_orients_and_tabulates():
    g = torch.Generator().manual_seed(3)
    n = 25
    good = torch.rand(n, generator=g)
    per_sample = {
        "insertion": {"a": good, "b": good * 0.5},
        "deletion": {"a": 1 - good, "b": 1 - 0.5 * good},  # lower is better: agrees with insertion
        "pointing": {"a": (good > 0.5).float(), "b": None},
    }
    hib = {"insertion": True, "deletion": False, "pointing": True}
    rep = reliability_report(per_sample, hib)
    assert rep.metrics == ["insertion", "deletion", "pointing"] and rep.explainers == ["a", "b"]
    assert rep.correlation["a"][0, 1] == pytest.approx(1.0)  # oriented: perfect agreement
    assert rep.methods["a"][0][2] == "pointbiserial"
    assert math.isnan(rep.correlation["b"][0, 2])
    assert rep.alpha["insertion"] == pytest.approx(1.0)  # a beats b on every image
    assert len(rep.rows()) == 2 * 3 and rep.alpha_rows()[0]["level"] == "ordinal"
    with pytest.raises(ValueError, match="`higher_is_better` must give the direction of metric 'pointing'"):
        reliability_report(per_sample, {"insertion": True, "deletion": False})


def test_report_from_a_coherence_report():
    from pl_saliency import DeletionAUC
    from pl_saliency import InsertionAUC
    from pl_saliency.analysis import coherence_report

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(6, 1, 4, 4, generator=g), torch.tensor([0, 1, 2, 0, 1, 2])
    maps = {e: torch.rand(6, 1, 4, 4, generator=g) for e in ("a", "b", "c")}
    metrics = {"del": DeletionAUC(steps=4, keep_per_sample=True), "ins": InsertionAUC(steps=4, keep_per_sample=True)}
    report = coherence_report(model, x, y, maps, metrics, binarize=None)
    rel = coherence_reliability(report)
    assert set(rel.alpha) == {"del", "ins"} and rel.correlation["a"].shape == (2, 2)
    with pytest.raises(ValueError, match="`variant` must be one of"):
        coherence_reliability(report, "binary@0.5")


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="`level` must be one of"):
        krippendorff_alpha(np.ones((2, 2)), "cardinal")
    with pytest.raises(ValueError, match="`reliability_data` must be a 2-D matrix"):
        krippendorff_alpha(np.ones(3))
    with pytest.raises(ValueError, match="`ranking` must be one of"):
        image_rankings(np.ones((2, 2)), ranking="sort")
    with pytest.raises(ValueError, match="`a` and `b` must hold the same number of images"):
        metric_correlation(np.ones(3), np.ones(4))


def test_reproduction_script_runs_offline_and_writes_its_tables(tmp_path):
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "examples" / "reproduce_coherence.py"
    spec = importlib.util.spec_from_file_location("reproduce_coherence", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["reproduce_coherence"] = module
    try:
        spec.loader.exec_module(module)
        results = module.main(["--quick", "--out", str(tmp_path)])
    finally:
        sys.modules.pop("reproduce_coherence", None)
    for name in ("scores.csv", "alpha.csv", "correlations.csv", "tau.csv", "results.json", "findings.txt"):
        assert (tmp_path / name).exists()
    assert len(results["alpha"]) == 17 and {"gradcam", "rise", "occlusion"} <= set(results["scores"]["pointing"])
    assert set(results["controls"]["pointing"]) == {"ig", "ig+blur", "smoothgrad", "smoothgrad+blur", "box"}
    assert results["controls"]["pointing"]["box"] == 1.0  # the ground-truth box always points inside itself
    lines = (tmp_path / "findings.txt").read_text().splitlines()
    assert len(lines) == 5 and all(line.startswith(("HOLDS", "DOES NOT HOLD")) for line in lines)
