"""Metric classes: state, compute and plot agree with the functional twins; bad inputs name the argument."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pytest
import torch
from torch import nn

from pl_saliency.functional import deletion_auc
from pl_saliency.functional import insertion_auc
from pl_saliency.metrics import DeletionAUC
from pl_saliency.metrics import InsertionAUC
from pl_saliency.perturbation import perturbation_curves


@pytest.mark.parametrize("cls, fn", [(DeletionAUC, deletion_auc), (InsertionAUC, insertion_auc)])
def test_metric_accumulates_like_functional(tiny_cnn, cls, fn):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(7, 3, 12, 12, generator=g)
    y = torch.randint(0, 5, (7,), generator=g)
    s = torch.rand(7, 1, 12, 12, generator=g)
    metric = cls(steps=8, keep_per_sample=True)
    metric.update(tiny_cnn, x[:3], s[:3], y[:3])
    metric.update(tiny_cnn, x[3:], s[3:], y[3:])
    areas, curves = fn(tiny_cnn, x, s, y, steps=8, reduction="none", return_curves=True)
    torch.testing.assert_close(metric.compute(), areas.mean(), atol=1e-6, rtol=0)
    torch.testing.assert_close(metric.curve(), curves.mean(0), atol=1e-6, rtol=0)
    torch.testing.assert_close(metric.per_sample(), areas)
    assert metric.curve_x()[0] == 0 and metric.curve_x()[-1] == 1 and len(metric.curve_x()) == 9
    metric.reset()
    assert metric.total == 0 and metric.scores == []
    with pytest.warns(UserWarning):  # torchmetrics: compute before update
        assert torch.isnan(metric.compute())


def test_class_attributes_and_definition():
    d, i = DeletionAUC(), InsertionAUC()
    assert d.higher_is_better is False and i.higher_is_better is True
    assert d.is_differentiable is False and d.full_state_update is False
    assert (d.plot_lower_bound, d.plot_upper_bound) == (0.0, 1.0)
    assert d.definition["filler"] == "zeros" and i.definition["filler"] == "blur(5,11)"
    assert d.definition["order"] == "morf" and d.definition["score"] == "probability"
    assert DeletionAUC(score="logit").plot_upper_bound is None
    assert d.state_dict() == {}  # states are not persistent; the model is not a sub-module


def test_model_is_not_registered(tiny_cnn, rgb_batch):
    x, y = rgb_batch
    metric = DeletionAUC(steps=4)
    metric.update(tiny_cnn, x, torch.rand(4, 1, 12, 12), y)
    assert list(metric.children()) == [] and list(metric.parameters()) == []


def test_plot_returns_figure(tiny_cnn, rgb_batch):
    x, y = rgb_batch
    metric = DeletionAUC(steps=4)
    values = []
    for _ in range(3):
        values.append(metric(tiny_cnn, x, torch.rand(4, 1, 12, 12), y))
    fig, ax = metric.plot(values)
    assert isinstance(fig, matplotlib.figure.Figure)
    fig2, _ = metric.plot()
    assert isinstance(fig2, matplotlib.figure.Figure)


def test_plot_curve(tiny_cnn, rgb_batch):
    x, y = rgb_batch
    metric = InsertionAUC(steps=4)
    metric.update(tiny_cnn, x, torch.rand(4, 1, 12, 12), y)
    fig, ax = metric.plot_curve()
    line = ax.get_lines()[0]
    assert list(line.get_xdata()) == pytest.approx(metric.curve_x().tolist())
    assert list(line.get_ydata()) == pytest.approx(metric.curve().tolist())
    assert "inserted" in ax.get_xlabel()


def test_forward_returns_batch_value_and_accumulates(tiny_cnn, rgb_batch):
    x, y = rgb_batch
    s = torch.rand(4, 1, 12, 12)
    metric = DeletionAUC(steps=4)
    v1 = metric(tiny_cnn, x[:2], s[:2], y[:2])
    v2 = metric(tiny_cnn, x[2:], s[2:], y[2:])
    torch.testing.assert_close(v1, deletion_auc(tiny_cnn, x[:2], s[:2], y[:2], steps=4))
    torch.testing.assert_close(metric.compute(), (v1 + v2) / 2, atol=1e-6, rtol=0)


def test_saliency_forms_are_equivalent(tiny_cnn, rgb_batch):
    x, y = rgb_batch
    s3 = torch.rand(4, 3, 12, 12)
    a = deletion_auc(tiny_cnn, x, s3, y, steps=6)
    b = deletion_auc(tiny_cnn, x, s3.sum(1, keepdim=True), y, steps=6)
    c = deletion_auc(tiny_cnn, x, s3.sum(1), y, steps=6)  # (N, H, W)
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a, c)


def test_low_resolution_saliency_is_upsampled_with_notice(tiny_cnn, rgb_batch):
    x, y = rgb_batch
    from pl_saliency import utils

    utils._warned_upsample.discard((3, 3, 12, 12))  # the notice is shown once per size pair and process
    low = torch.rand(4, 1, 3, 3)
    with pytest.warns(UserWarning, match="upsampling"):
        a = deletion_auc(tiny_cnn, x, low, y, steps=6)
    up = torch.nn.functional.interpolate(low, size=(12, 12), mode="bilinear", align_corners=False)
    torch.testing.assert_close(a, deletion_auc(tiny_cnn, x, up, y, steps=6))


def test_positive_scaling_invariance(tiny_cnn, rgb_batch):
    x, y = rgb_batch
    s = torch.rand(4, 1, 12, 12)
    torch.testing.assert_close(deletion_auc(tiny_cnn, x, s, y, steps=6), deletion_auc(tiny_cnn, x, 7.5 * s, y, steps=6))


def test_output_transform_for_tuple_models(tiny_cnn, rgb_batch):
    x, y = rgb_batch
    s = torch.rand(4, 1, 12, 12)

    class TupleModel(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, inp):
            return self.inner(inp), "aux"

    wrapped = TupleModel(tiny_cnn)
    with pytest.raises(TypeError, match="output_transform"):
        deletion_auc(wrapped, x, s, y, steps=4)
    torch.testing.assert_close(
        deletion_auc(wrapped, x, s, y, steps=4, output_transform=lambda out: out[0]), deletion_auc(tiny_cnn, x, s, y, steps=4)
    )


def _good(rgb_batch):
    x, y = rgb_batch
    return x, torch.rand(4, 1, 12, 12), y


BAD_CALLS = [
    # (description, kwargs override, exception, argument named in the message)
    ("inputs rank 3", {"inputs": torch.rand(4, 12, 12)}, ValueError, "`inputs`"),
    ("inputs integer", {"inputs": torch.randint(0, 255, (4, 3, 12, 12))}, TypeError, "`inputs`"),
    ("inputs NaN", {"inputs": torch.full((4, 3, 12, 12), float("nan"))}, ValueError, "`inputs`"),
    ("inputs empty", {"inputs": torch.rand(0, 3, 12, 12), "saliency": torch.rand(0, 1, 12, 12), "target": torch.zeros(0, dtype=torch.long)}, ValueError, "`inputs`"),
    ("inputs not tensor", {"inputs": [[1.0]]}, TypeError, "`inputs`"),
    ("saliency batch mismatch", {"saliency": torch.rand(3, 1, 12, 12)}, ValueError, "`saliency`"),
    ("saliency channels", {"saliency": torch.rand(4, 2, 12, 12)}, ValueError, "`saliency`"),
    ("saliency Inf", {"saliency": torch.full((4, 1, 12, 12), float("inf"))}, ValueError, "`saliency`"),
    ("saliency rank 5", {"saliency": torch.rand(4, 1, 1, 12, 12)}, ValueError, "`saliency`"),
    ("target float", {"target": torch.zeros(4)}, TypeError, "`target`"),
    ("target shape", {"target": torch.zeros(4, 1, dtype=torch.long)}, ValueError, "`target`"),
    ("target negative", {"target": torch.tensor([0, -1, 0, 0])}, ValueError, "`target`"),
    ("target list", {"target": [0, 1, 2, 3]}, TypeError, "`target`"),
    ("steps zero", {"steps": 0}, ValueError, "`steps`"),
    ("steps negative", {"steps": -3}, ValueError, "`steps`"),
    ("steps float", {"steps": 2.5}, TypeError, "`steps`"),
    ("steps above features", {"steps": 145}, ValueError, "`steps`"),
    ("patch larger than image", {"patch_size": 13}, ValueError, "`patch_size`"),
    ("patch zero", {"patch_size": 0}, ValueError, "`patch_size`"),
    ("chunk zero", {"chunk_size": 0}, ValueError, "`chunk_size`"),
    ("order unknown", {"order": "best"}, ValueError, "`order`"),
    ("filler unknown", {"filler": "gray"}, ValueError, "`filler`"),
    ("filler wrong type", {"filler": object()}, TypeError, "`filler`"),
    ("score unknown", {"score": "prob"}, ValueError, "`score`"),
    ("tie_break unknown", {"tie_break": "first"}, ValueError, "`tie_break`"),
    ("reduction unknown", {"reduction": "avg"}, ValueError, "`reduction`"),
    ("model not callable", {"model": 3}, TypeError, "`model`"),
    ("target beyond model classes", {"target": torch.tensor([0, 1, 2, 9])}, ValueError, "`target`"),
]


@pytest.mark.parametrize("desc, override, exc, needle", BAD_CALLS, ids=[b[0] for b in BAD_CALLS])
def test_bad_inputs_raise_naming_the_argument(tiny_cnn, rgb_batch, desc, override, exc, needle):
    x, s, y = _good(rgb_batch)
    kwargs = {"model": tiny_cnn, "inputs": x, "saliency": s, "target": y, "steps": 6}
    kwargs.update(override)
    model, inputs, saliency, target = (kwargs.pop(k) for k in ("model", "inputs", "saliency", "target"))
    with pytest.raises(exc, match=needle.replace("`", "\\`")):
        deletion_auc(model, inputs, saliency, target, **kwargs)


def test_model_returning_wrong_shape_is_reported(rgb_batch):
    x, s, y = _good(rgb_batch)
    with pytest.raises(ValueError, match="`model`"):
        perturbation_curves(lambda t: t.flatten(), x, s, y, steps=4)


@pytest.mark.parametrize(
    "kwargs, needle",
    [({"steps": 0}, "`steps`"), ({"order": "x"}, "`order`"), ({"score": "x"}, "`score`"), ({"filler": "x"}, "`filler`"), ({"chunk_size": -1}, "`chunk_size`")],
)
def test_metric_constructor_rejects_bad_arguments(kwargs, needle):
    with pytest.raises((ValueError, TypeError), match=needle.replace("`", "\\`")):
        DeletionAUC(**kwargs)


def test_per_sample_needs_flag(tiny_cnn, rgb_batch):
    with pytest.raises(RuntimeError, match="keep_per_sample"):
        DeletionAUC().per_sample()
    with pytest.raises(RuntimeError, match="before any `update`"):
        DeletionAUC().curve()


def _concrete_metric_classes():
    import inspect

    import pl_saliency.metrics as M
    from pl_saliency.metrics.base import SampleScoreMetric

    abstract = {"SampleScoreMetric", "CurveAUCMetric", "CurveMetric", "LocalizationMetric"}
    return [
        getattr(M, n)
        for n in sorted(M.__all__)
        if inspect.isclass(getattr(M, n)) and issubclass(getattr(M, n), SampleScoreMetric) and n not in abstract
    ]


@pytest.mark.parametrize("cls", _concrete_metric_classes(), ids=lambda c: c.__name__)
def test_every_metric_plots_and_declares_its_definition(cls):
    import matplotlib.pyplot as plt

    metric = cls()
    fig, ax = metric.plot(torch.tensor(0.5))
    assert isinstance(fig, matplotlib.figure.Figure) and ax is not None
    plt.close(fig)
    definition = metric.definition
    assert definition["metric"] == cls.__name__ and "higher_is_better" in definition
    assert metric.is_differentiable is False and metric.full_state_update is False


def test_update_protocol_is_declared_once_and_refuses_other_keywords(tiny_cnn):
    """Every metric class takes the monitor protocol's ``update`` from ``ProtocolMetric`` (not a copy of
    its own); a keyword the class does not take raises ``TypeError`` naming it, before any state changes."""
    from torchmetrics import Metric

    import pl_saliency.metrics as M
    from pl_saliency.metrics.base import ProtocolMetric

    classes = [getattr(M, n) for n in M.__all__ if isinstance(getattr(M, n), type) and issubclass(getattr(M, n), Metric)]
    assert len(classes) > 30
    for cls in classes:
        assert issubclass(cls, ProtocolMetric) and cls.update is ProtocolMetric.update, cls.__name__
    x, y = torch.rand(2, 3, 8, 8), torch.tensor([0, 1])
    metric = DeletionAUC(steps=4)
    with pytest.raises(TypeError, match=r"DeletionAUC.update\(\) got unexpected keyword arguments \['masks'\]; its keyword extras: none"):
        metric.update(tiny_cnn, x, torch.rand(2, 1, 8, 8), y, masks=torch.ones(2, 1, 8, 8))
    assert metric.total == 0 and metric._update_count == 0
    with pytest.raises(TypeError, match=r"\['explainer'\]; its keyword extras: `masks`, `boxes`"):
        M.PointingGame().update(None, x, torch.rand(2, 1, 8, 8), y, explainer=None)
    game = M.PointingGame()
    game.update(None, x, torch.rand(2, 1, 8, 8), y, masks=torch.ones(2, 1, 8, 8))
    assert game.compute() == 1.0
    # the metrics of the map alone take the call without a target, the others name it
    gini = M.GiniSparseness()
    gini.update(None, x, torch.rand(2, 1, 8, 8))
    assert gini.total == 2
    with pytest.raises(TypeError, match="Argument `target` must be an int64 tensor"):
        metric.update(tiny_cnn, x, torch.rand(2, 1, 8, 8))
    assert metric.total == 0
