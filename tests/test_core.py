"""The evaluation core: settings objects as cache keys, one scoring loop, one name registry."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from pl_saliency import DeletionAUC
from pl_saliency import Gradient
from pl_saliency import GradientXInput
from pl_saliency import InsertionAUC
from pl_saliency import evaluate
from pl_saliency.analysis import baseline_sensitivity
from pl_saliency.evaluation import Evaluator
from pl_saliency.evaluation import ScoreGrid
from pl_saliency.metrics import AOPCMorf
from pl_saliency.metrics import ControlledScore
from pl_saliency.perturbation import BatchContext
from pl_saliency.perturbation import perturbation_curves
from pl_saliency.perturbation.fillers import Filler
from pl_saliency.registry import METRIC_ALIASES
from pl_saliency.registry import METRICS
from pl_saliency.registry import canonical_metric_name
from pl_saliency.registry import metric_class
from pl_saliency.registry import metric_name
from pl_saliency.registry import snake_case
from pl_saliency.spec import CurveSpec
from pl_saliency.spec import SpeedOptions
from pl_saliency.spec import filler_key
from pl_saliency.spec import generator_key

# ------------------------------------------------------------------------------------------ cache keys


def test_two_function_fillers_in_one_context_give_their_own_numbers(problem):
    model, x, sal, y = problem
    ones, halves = (lambda t: torch.ones_like(t)), (lambda t: torch.full_like(t, 0.5))
    alone = [perturbation_curves(model, x, sal, y, filler=f, steps=6) for f in (ones, halves)]
    ctx = BatchContext()
    shared = [perturbation_curves(model, x, sal, y, filler=f, steps=6, context=ctx) for f in (ones, halves)]
    assert ctx.hits == 0 and len(ctx.entries) == 2
    for a, b in zip(alone, shared):
        torch.testing.assert_close(a, b)
    assert not torch.allclose(shared[0], shared[1])  # the fillers really differ
    # the same function twice is the same curve (served from the cache)
    again = perturbation_curves(model, x, sal, y, filler=ones, steps=6, context=ctx)
    assert ctx.hits == 1 and again is shared[0]


def test_filler_subclass_without_its_own_key_is_keyed_by_identity(problem):
    model, x, sal, y = problem

    class Fill(Filler):
        def __init__(self, v):
            self.v = v

        def substrate(self, inputs, generator=None):
            return torch.full_like(inputs, self.v)

    a, b = Fill(1.0), Fill(-1.0)
    assert a.key == b.key == "filler" and filler_key(a) != filler_key(b)
    ctx = BatchContext()
    ca = perturbation_curves(model, x, sal, y, filler=a, steps=4, context=ctx)
    cb = perturbation_curves(model, x, sal, y, filler=b, steps=4, context=ctx)
    torch.testing.assert_close(cb, perturbation_curves(model, x, sal, y, filler=b, steps=4))
    assert not torch.allclose(ca, cb)


def test_two_generators_in_one_context_give_their_own_numbers(problem):
    model, x, sal, y = problem
    alone = [perturbation_curves(model, x, sal, y, order="random", generator=torch.Generator().manual_seed(s), steps=6) for s in (1, 2)]
    ctx = BatchContext()
    shared = [
        perturbation_curves(model, x, sal, y, order="random", generator=torch.Generator().manual_seed(s), steps=6, context=ctx)
        for s in (1, 2)
    ]
    assert ctx.hits == 0
    for a, b in zip(alone, shared):
        torch.testing.assert_close(a, b)
    assert not torch.allclose(shared[0], shared[1])


def test_generator_key_follows_its_state():
    g = torch.Generator().manual_seed(0)
    before = generator_key(g)
    torch.rand(3, generator=g)
    assert generator_key(g) != before and generator_key(None) is None


def test_value_fillers_share_one_curve_across_metrics(problem):
    model, x, sal, y = problem
    ctx = BatchContext()
    d, a = DeletionAUC(steps=6), AOPCMorf(steps=6)
    d.update(model, x, sal, y, context=ctx)
    a.update(model, x, sal, y, context=ctx)
    assert ctx.hits == 1 and len(ctx.entries) == 1
    assert CurveSpec(filler="zeros", steps=6).key() == d.spec.key() != CurveSpec(filler="blur", steps=6).key()


def test_spec_validates_its_settings():
    with pytest.raises(ValueError, match="`order`"):
        CurveSpec(order="sideways")
    with pytest.raises(TypeError, match="`generator`"):
        CurveSpec(generator=3)
    with pytest.raises(ValueError, match="`chunk_size`"):
        SpeedOptions(chunk_size="big")
    assert CurveSpec().replace(steps=7).steps == 7


def test_metric_settings_read_from_its_spec(problem):
    m = DeletionAUC(steps=6, filler="mean", chunk_size=5)
    assert (m.steps, m.filler.key, m.chunk_size) == (6, "mean", 5)
    m.chunk_size = 2  # the monitor's out-of-memory retry
    assert m.speed.chunk_size == 2 and m.spec.steps == 6


def test_baseline_sensitivity_with_function_fillers_reports_their_differences(problem):
    model, x, _, y = problem
    g = torch.Generator().manual_seed(5)
    maps = {"a": torch.rand(6, 1, 12, 12, generator=g), "b": torch.rand(6, 1, 12, 12, generator=g), "c": torch.rand(6, 1, 12, 12, generator=g)}
    fillers = {"ones": lambda t: torch.ones_like(t), "noise": lambda t: torch.rand(t.shape, generator=torch.Generator().manual_seed(0))}
    report = baseline_sensitivity(model, x, y, maps, fillers, metrics=("deletion_auc",), steps=4)
    rows = report.scores["deletion_auc"]
    assert not torch.allclose(rows[0], rows[1])  # before: identical rows ("perfectly stable")
    for si, f in enumerate(fillers.values()):
        for ei, e in enumerate(report.explainers):
            direct = DeletionAUC(steps=4, filler=f)
            direct.update(model, x, maps[e], y)
            assert float(rows[si, ei]) == pytest.approx(float(direct.compute()), abs=1e-6)


# ------------------------------------------------------------------------------------------ the loop


def test_evaluate_equals_the_metrics_alone(problem):
    model, x, _, y = problem
    explainers = {"gradient": Gradient(), "gxi": GradientXInput()}
    metrics = {"deletion_auc": DeletionAUC(steps=6), "insertion_auc": InsertionAUC(steps=6)}
    grid = evaluate(model, x, y, explainers, metrics, batch_size=4)
    assert isinstance(grid, ScoreGrid) and not grid.failures
    for e, explainer in explainers.items():
        sal = explainer(model, x, y)
        for m, template in metrics.items():
            direct = type(template)(steps=6)
            direct.update(model, x[:4], sal[:4], y[:4])
            direct.update(model, x[4:], sal[4:], y[4:])
            assert grid.value(e, m) == pytest.approx(float(direct.compute()), abs=1e-6)
            torch.testing.assert_close(grid.curves[m][e], direct.curve().cpu())
        torch.testing.assert_close(grid.maps[e], sal)
    assert set(grid.flat()) >= {"gradient/deletion_auc", "gradient/deletion_auc/gain", "deletion_auc/random", "context/confidence"}


def test_random_controls_are_computed_once_per_setting_whatever_the_explainers(problem):
    model, x, _, y = problem
    calls = {}
    for k in (1, 3):
        explainers = {f"e{i}": (lambda m, inp, t, i=i: torch.rand(inp.shape[0], 1, 12, 12, generator=torch.Generator().manual_seed(i))) for i in range(k)}
        grid = evaluate(model, x, y, explainers, {"d": DeletionAUC(steps=6, chunk_size=1000)}, context_series=False)
        calls[k] = grid.model_calls
    # one call per curve set: k explainers' curves + one random-order control set (4 orders in one call)
    assert calls[1] == 2 and calls[3] == 4


def test_failures_are_absent_and_raise_on_request(problem):
    model, x, _, y = problem

    def broken(m, inp, t):
        raise RuntimeError("boom")

    with pytest.warns(UserWarning, match="explainer 'broken' failed"):
        grid = evaluate(model, x, y, {"broken": broken, "gradient": Gradient()}, {"d": DeletionAUC(steps=4)})
    assert ("broken", "d") in grid.failures and grid.value("broken", "d") is None and grid.value("gradient", "d") is not None
    assert "broken/d" in grid.flat() and grid.flat()["broken/d"] is None
    with pytest.raises(RuntimeError, match="boom"):
        evaluate(model, x, y, {"broken": broken}, {"d": DeletionAUC(steps=4)}, on_error="raise")


def test_evaluate_leaves_the_global_rng_alone(problem):
    model, x, _, y = problem

    def draws(m, inp, t):
        return torch.rand(inp.shape[0], 1, 12, 12)  # the global RNG

    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    evaluate(model, x, y, {"draws": draws}, {"d": DeletionAUC(steps=4)})
    torch.testing.assert_close(torch.rand(3), expected)


def test_evaluator_checks_its_arguments(problem):
    model, *_ = problem
    with pytest.raises(ValueError, match="`on_error`"):
        Evaluator(model, {"g": Gradient()}, {"d": DeletionAUC()}, on_error="ignore")
    with pytest.raises(ValueError, match="`explainers`"):
        Evaluator(model, {}, {"d": DeletionAUC()})
    with pytest.raises(TypeError, match="`metrics`: 'd' must follow the monitor protocol"):
        Evaluator(model, {"g": Gradient()}, {"d": object()})
    with pytest.raises(ValueError, match="`target`"):
        Evaluator(model, {"g": Gradient()}, {"d": DeletionAUC()}, target="truth")


def test_controlled_score_wraps_curve_metrics_only():
    from pl_saliency.metrics import GiniSparseness

    with pytest.raises(TypeError, match="`metric` must be a curve metric"):
        ControlledScore(GiniSparseness())


# ------------------------------------------------------------------------------------------ registry, imports


def test_one_registry_names_every_metric():
    from pl_saliency import metrics

    for name, cls in METRICS.items():
        assert getattr(metrics, cls).__name__ == cls and snake_case(cls) == name  # the monitor's default name
    assert metric_name(DeletionAUC()) == "deletion_auc"
    assert metric_class("deletion") is metrics.DeletionAUC and canonical_metric_name("gini") == "gini_sparseness"
    assert all(v in METRICS for v in METRIC_ALIASES.values())
    with pytest.raises(ValueError, match="`metrics` must name metrics among"):
        canonical_metric_name("nope")


@pytest.mark.parametrize("module", ["pl_saliency.functional", "pl_saliency.metrics", "pl_saliency"])
def test_core_imports_no_lightning(module):
    code = f"import sys, {module}; print(sorted(m for m in sys.modules if m.split('.')[0] in ('lightning', 'pytorch_lightning')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_monitor_still_reachable_from_the_top_level():
    import pl_saliency

    assert pl_saliency.SaliencyMonitor.__name__ == "SaliencyMonitor"
