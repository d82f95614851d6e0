"""The bad-input catalogue: malformed inputs and faults, tried as a new user would, at every public entry
point (functional, Metric classes, explainers, ``evaluate``, the monitor in ``Trainer.fit``/``validate``).

Each case asserts either a clear error — its type and that the message names the argument — and that
nothing changed (metric states, the model's weights and modes, the global RNG), or the correct result.
The CLI's cases live in ``tests/test_cli.py``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from conftest import NaNForFlagged
from conftest import TinyCNN
from monitor_helpers import LitTiny
from monitor_helpers import loader
from torch import nn

from pl_saliency import AOPCMorf
from pl_saliency import CaptumExplainer
from pl_saliency import DeletionAUC
from pl_saliency import GradCAM
from pl_saliency import Gradient
from pl_saliency import InsertionAUC
from pl_saliency import IntegratedGradients
from pl_saliency import ModelParameterRandomization
from pl_saliency import PixelFlipping
from pl_saliency import PointingGame
from pl_saliency import RandomLogit
from pl_saliency import RandomMap
from pl_saliency import RegionPerturbation
from pl_saliency import SaliencyMonitor
from pl_saliency import SmoothGrad
from pl_saliency import evaluate
from pl_saliency.explainers import FunctionExplainer
from pl_saliency.functional import aopc_morf
from pl_saliency.functional import deletion_auc
from pl_saliency.functional import gini_sparseness
from pl_saliency.functional import insertion_auc
from pl_saliency.functional import model_parameter_randomization
from pl_saliency.functional import pointing_game
from pl_saliency.functional.randomization import map_similarity

torch.manual_seed(0)
MODEL = TinyCNN(channels=1, num_classes=4).eval()
X = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(1))
S = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(2))
Y = torch.tensor([0, 3])


# ------------------------------------------------------------------------------------------ helpers
def snapshot(obj: Any) -> dict[str, Any]:
    """Everything a failed call must leave as it was: a metric's states and image size, a model's
    weights, buffers and modes, and the global RNG."""
    out: dict[str, Any] = {"rng": torch.get_rng_state()}
    if hasattr(obj, "metric_state"):
        for k, v in obj.metric_state.items():
            out[k] = v.clone() if isinstance(v, torch.Tensor) else [t.clone() for t in v]
        out["_image_size"] = getattr(obj, "_image_size", None)
        out["_update_count"] = obj._update_count
    if isinstance(obj, nn.Module):
        out.update({f"sd.{k}": v.clone() for k, v in obj.state_dict().items()})
        out["modes"] = [m.training for m in obj.modules()]
        out["grads"] = [p.grad for p in obj.parameters()]
    return out


def same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    if a.keys() != b.keys():
        return False
    for k in a:
        x, y = a[k], b[k]
        if isinstance(x, torch.Tensor):
            if not (x.shape == y.shape and torch.equal(x, y)):
                return False
        elif isinstance(x, list) and x and isinstance(x[0], torch.Tensor):
            if len(x) != len(y) or not all(torch.equal(p, q) for p, q in zip(x, y)):
                return False
        elif x != y:
            return False
    return True


def check_error(fn: Callable[[], Any], exc: type[BaseException], names: tuple[str, ...], state_of: Any = None) -> None:
    before = snapshot(state_of if state_of is not None else MODEL)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(exc) as info:
            fn()
    message = str(info.value)
    for name in names:
        assert name in message, f"{name!r} not named in: {message}"
    assert same(before, snapshot(state_of if state_of is not None else MODEL)), "state changed by a failed call"


class Detaches(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(64, 4)

    def forward(self, x):
        return self.lin(x.detach().flatten(1))


class ReturnsDict(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(64, 4)

    def forward(self, x):
        return {"logits": self.lin(x.flatten(1))}


class WithHead(nn.Module):
    """conv -> (unused conv) -> linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3, padding=1)
        self.unused = nn.Conv2d(3, 3, 3, padding=1)
        self.head = nn.Linear(3, 4)

    def forward(self, x):
        return self.head(torch.relu(self.conv(x)).mean(dim=(2, 3)))


# faulty models, built once here (building one inside a case would draw from the global RNG, which the
# cases check is left alone)
F64 = TinyCNN(channels=1, num_classes=4).double().eval()
META = TinyCNN(channels=1, num_classes=4).to("meta")
DICT = ReturnsDict()
DETACH = Detaches()
NAN_MODEL = NaNForFlagged(64)


# ------------------------------------------------------------------------------------------ functional
d = dict(steps=4)
FUNCTIONAL_ERRORS = [
    ("inputs-list", lambda: deletion_auc(MODEL, X.tolist(), S, Y, **d), TypeError, ("`inputs`",)),
    ("inputs-3d", lambda: deletion_auc(MODEL, X[0], S, Y, **d), ValueError, ("`inputs`",)),
    ("inputs-int", lambda: deletion_auc(MODEL, (X * 255).long(), S, Y, **d), TypeError, ("`inputs`",)),
    ("inputs-nan", lambda: deletion_auc(MODEL, X.clone().fill_(math.nan), S, Y, **d), ValueError, ("`inputs`",)),
    ("inputs-inf", lambda: insertion_auc(MODEL, X + math.inf, S, Y, **d), ValueError, ("`inputs`",)),
    ("inputs-empty", lambda: deletion_auc(MODEL, X[:0], S[:0], Y[:0], **d), ValueError, ("`inputs`",)),
    ("saliency-batch", lambda: deletion_auc(MODEL, X, S[:1], Y, **d), ValueError, ("`saliency`",)),
    ("saliency-channels", lambda: deletion_auc(MODEL, X, S.expand(2, 3, 8, 8), Y, **d), ValueError, ("`saliency`",)),
    ("saliency-nan", lambda: deletion_auc(MODEL, X, S * math.nan, Y, **d), ValueError, ("`saliency`",)),
    ("saliency-complex", lambda: deletion_auc(MODEL, X, torch.complex(S, S), Y, **d), TypeError, ("`saliency`", "complex")),
    ("saliency-numpy", lambda: deletion_auc(MODEL, X, S.numpy(), Y, **d), TypeError, ("`saliency`",)),
    ("saliency-5d", lambda: deletion_auc(MODEL, X, S[None], Y, **d), ValueError, ("`saliency`",)),
    ("target-float", lambda: deletion_auc(MODEL, X, S, Y.float(), **d), TypeError, ("`target`",)),
    ("target-shape", lambda: deletion_auc(MODEL, X, S, Y[:1], **d), ValueError, ("`target`",)),
    ("target-too-large", lambda: deletion_auc(MODEL, X, S, torch.tensor([0, 4]), **d), ValueError, ("`target`",)),
    ("target-negative", lambda: deletion_auc(MODEL, X, S, torch.tensor([0, -1]), **d), ValueError, ("`target`",)),
    ("target-list", lambda: deletion_auc(MODEL, X, S, [0, 3], **d), TypeError, ("`target`",)),
    ("steps-zero", lambda: deletion_auc(MODEL, X, S, Y, steps=0), ValueError, ("`steps`",)),
    ("steps-float", lambda: deletion_auc(MODEL, X, S, Y, steps=4.0), TypeError, ("`steps`",)),
    ("order", lambda: deletion_auc(MODEL, X, S, Y, order="best", **d), ValueError, ("`order`",)),
    ("score", lambda: deletion_auc(MODEL, X, S, Y, score="softmax", **d), ValueError, ("`score`",)),
    ("reduction", lambda: deletion_auc(MODEL, X, S, Y, reduction="avg", **d), ValueError, ("`reduction`",)),
    ("patch-size-too-big", lambda: deletion_auc(MODEL, X, S, Y, patch_size=9, steps=1), ValueError, ("`patch_size`",)),
    ("filler-unknown", lambda: deletion_auc(MODEL, X, S, Y, filler="gray", **d), ValueError, ("`filler`",)),
    ("chunk-size-zero", lambda: deletion_auc(MODEL, X, S, Y, chunk_size=0, **d), ValueError, ("`chunk_size`",)),
    ("chunk-size-word", lambda: deletion_auc(MODEL, X, S, Y, chunk_size="big", **d), ValueError, ("`chunk_size`",)),
    ("amp-float64", lambda: deletion_auc(MODEL, X, S, Y, amp_dtype=torch.float64, **d), ValueError, ("`amp_dtype`",)),
    ("memory-budget", lambda: deletion_auc(MODEL, X, S, Y, chunk_size="auto", memory_budget_mb=-1, **d), ValueError, ("`memory_budget_mb`",)),
    ("tie-break", lambda: deletion_auc(MODEL, X, S, Y, tie_break="first", **d), ValueError, ("`tie_break`",)),
    ("return-curves", lambda: insertion_auc(MODEL, X, S, Y, return_curves="yes", **d), TypeError, ("`return_curves`",)),
    ("model-not-callable", lambda: deletion_auc("resnet", X, S, Y, **d), TypeError, ("`model`",)),
    ("model-returns-dict", lambda: deletion_auc(DICT, X, S, Y, **d), TypeError, ("`model`", "output_transform")),
    ("model-returns-1d", lambda: deletion_auc(lambda t: t.sum(dim=(1, 2, 3)), X, S, Y, **d), ValueError, ("`model`",)),
    ("model-float64", lambda: deletion_auc(F64, X, S, Y, **d), TypeError, ("`model`", "`inputs`", "float64")),
    ("model-other-device", lambda: deletion_auc(META, X, S, Y, **d), ValueError, ("`model`", "`inputs`", "device")),
    ("aopc-steps", lambda: aopc_morf(MODEL, X, S, Y, steps=-2), ValueError, ("`steps`",)),
    ("gini-not-tensor", lambda: gini_sparseness([[1.0]]), TypeError, ("`saliency`",)),
    ("pointing-masks-batch", lambda: pointing_game(S, masks=torch.ones(3, 1, 8, 8)), ValueError, ("`masks`",)),
    ("pointing-masks-not-binary", lambda: pointing_game(S, masks=torch.full((2, 1, 8, 8), 2.0)), ValueError, ("`masks`", "binary")),
    ("pointing-masks-channels", lambda: pointing_game(S, masks=torch.ones(2, 2, 8, 8)), ValueError, ("`masks`",)),
    ("similarity-name", lambda: map_similarity(S, S, "cosine"), ValueError, ("`similarity`",)),
    ("similarity-shapes", lambda: map_similarity(S, S[:1]), ValueError, ("`a`", "`b`")),
    ("mprt-function-model", lambda: model_parameter_randomization(lambda t: MODEL(t), X, Y, Gradient()), TypeError, ("`model`",)),
    ("mprt-unknown-layer", lambda: model_parameter_randomization(MODEL, X, Y, Gradient(), layers=["conv9"]), ValueError, ("`layers`",)),
]


@pytest.mark.parametrize("fn, exc, names", [c[1:] for c in FUNCTIONAL_ERRORS], ids=[c[0] for c in FUNCTIONAL_ERRORS])
def test_functional_rejects(fn, exc, names):
    check_error(fn, exc, names)


def test_functional_low_resolution_and_3d_and_integer_maps_give_the_upsampled_result():
    low = torch.rand(2, 1, 4, 4, generator=torch.Generator().manual_seed(5))
    up = F.interpolate(low, size=(8, 8), mode="bilinear", align_corners=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.testing.assert_close(deletion_auc(MODEL, X, low, Y, **d), deletion_auc(MODEL, X, up, Y, **d))
    torch.testing.assert_close(deletion_auc(MODEL, X, S[:, 0], Y, **d), deletion_auc(MODEL, X, S, Y, **d))
    ints = (S * 10).long()
    torch.testing.assert_close(deletion_auc(MODEL, X, ints, Y, **d), deletion_auc(MODEL, X, ints.float(), Y, **d))
    torch.testing.assert_close(deletion_auc(MODEL, X, S, Y.int(), **d), deletion_auc(MODEL, X, S, Y, **d))


def test_functional_mean_excludes_a_nan_logit_sample_with_a_warning():
    x = X.clone()
    x[1, 0, 0, 0] = 9.0  # flags sample 1: its logits are NaN until that pixel is removed
    s = S.clone()
    s[1, 0, 0, 0] = -1.0  # removed last
    per = deletion_auc(NAN_MODEL, x, s, Y, steps=4, reduction="none")
    assert math.isnan(per[1]) and math.isfinite(per[0])
    with pytest.warns(UserWarning, match=r"deletion_auc: 1 of 2 samples have a non-finite score"):
        mean = deletion_auc(NAN_MODEL, x, s, Y, steps=4)
    torch.testing.assert_close(mean, per[0])
    with pytest.warns(UserWarning, match=r"1 of 2 samples"):
        total = deletion_auc(NAN_MODEL, x, s, Y, steps=4, reduction="sum")
    torch.testing.assert_close(total, per[0])


def test_similarity_of_constant_maps_is_undefined_not_identical():
    zeros, ones = torch.zeros(1, 1, 12, 12), torch.ones(1, 1, 12, 12)
    for sim in ("ssim", "spearman", "pearson"):
        assert torch.isnan(map_similarity(zeros, ones, sim, abs=False)).all(), sim


# ------------------------------------------------------------------------------------------ Metric classes
METRIC_CONSTRUCTOR_ERRORS = [
    ("deletion-steps", lambda: DeletionAUC(steps=0), ValueError, ("`steps`",)),
    ("deletion-order", lambda: DeletionAUC(order="top"), ValueError, ("`order`",)),
    ("deletion-keep-per-sample", lambda: DeletionAUC(keep_per_sample="yes"), TypeError, ("`keep_per_sample`",)),
    ("deletion-filler-object", lambda: DeletionAUC(filler=object()), TypeError, ("`filler`",)),
    ("insertion-score", lambda: InsertionAUC(score="prob"), ValueError, ("`score`",)),
    ("insertion-chunk", lambda: InsertionAUC(chunk_size=-1), ValueError, ("`chunk_size`",)),
    ("region-regions", lambda: RegionPerturbation(regions=0), ValueError, ("`regions`",)),
    ("region-patch", lambda: RegionPerturbation(patch_size=0), ValueError, ("`patch_size`",)),
    ("pixel-flipping-order", lambda: PixelFlipping(order="up"), ValueError, ("`order`",)),
    ("pointing-tolerance", lambda: PointingGame(tolerance=-1), ValueError, ("`tolerance`",)),
    ("random-logit-similarity", lambda: RandomLogit(explainer=Gradient(), similarity="l2"), ValueError, ("`similarity`",)),
    ("mprt-mode", lambda: ModelParameterRandomization(explainer=Gradient(), mode="all"), ValueError, ("`mode`",)),
]


@pytest.mark.parametrize("fn, exc, names", [c[1:] for c in METRIC_CONSTRUCTOR_ERRORS], ids=[c[0] for c in METRIC_CONSTRUCTOR_ERRORS])
def test_metric_constructors_reject(fn, exc, names):
    check_error(fn, exc, names)


def _updated(metric_cls=DeletionAUC, x=X, **kw):
    m = metric_cls(steps=4, **kw) if metric_cls is not RegionPerturbation else metric_cls(patch_size=4, **kw)
    m.update(MODEL, x, torch.rand(x[:, :1].shape, generator=torch.Generator().manual_seed(4)), Y[: len(x)])
    return m


x6 = torch.rand(2, 1, 6, 6, generator=torch.Generator().manual_seed(3))
METRIC_UPDATE_ERRORS = [
    ("update-saliency-shape", lambda m: m.update(MODEL, X, S[:, :, :, None], Y), ValueError, ("`saliency`",)),
    ("update-target-range", lambda m: m.update(MODEL, X, S, torch.tensor([7, 0])), ValueError, ("`target`",)),
    ("update-inputs-int", lambda m: m.update(MODEL, X.long(), S, Y), TypeError, ("`inputs`",)),
    ("update-model-float64", lambda m: m.update(F64, X, S, Y), TypeError, ("`model`", "`inputs`")),
    ("update-image-size", lambda m: m.update(MODEL, x6, x6.clone(), Y), ValueError, ("`inputs`", "(2, 1, 6, 6)", "8x8")),
    ("merge-other-steps", lambda m: m.merge_state(DeletionAUC(steps=8)), ValueError, ("`incoming_state`", "steps")),
    ("merge-other-class", lambda m: m.merge_state(_insertion()), TypeError, ("`incoming_state`", "DeletionAUC")),
    ("merge-other-size", lambda m: m.merge_state(_updated(x=x6)), ValueError, ("`incoming_state`", "6x6", "8x8")),
    ("merge-dict-missing", lambda m: m.merge_state({"score_sum": torch.tensor(1.0)}), ValueError, ("`incoming_state`", "total")),
    ("merge-dict-shape", lambda m: m.merge_state({**_state(m), "curve_sum": torch.zeros(9)}), ValueError, ("`incoming_state`", "curve_sum")),
    ("merge-dict-broadcastable-shape", lambda m: m.merge_state({**_state(m), "curve_sum": torch.zeros(1)}), ValueError, ("`incoming_state`", "curve_sum")),
    ("merge-not-a-metric", lambda m: m.merge_state(3), TypeError, ("`incoming_state`",)),
    ("merge-keep-per-sample", lambda m: m.merge_state(_updated(keep_per_sample=True)), ValueError, ("`keep_per_sample`",)),
    ("merge-other-tie-seed", lambda m: m.merge_state(_updated(tie_seed=5)), ValueError, ("tie_seed",)),
    ("per-sample-not-kept", lambda m: m.per_sample(), RuntimeError, ("keep_per_sample",)),
]


def _insertion():
    m = InsertionAUC(steps=4)
    m.update(MODEL, X, S, Y)
    return m


def _state(m):
    return {k: (v.clone() if isinstance(v, torch.Tensor) else list(v)) for k, v in m.metric_state.items()}


@pytest.mark.parametrize("fn, exc, names", [c[1:] for c in METRIC_UPDATE_ERRORS], ids=[c[0] for c in METRIC_UPDATE_ERRORS])
def test_metric_update_and_merge_reject_and_leave_the_state(fn, exc, names):
    metric = _updated()
    check_error(lambda: fn(metric), exc, names, state_of=metric)
    # still usable afterwards, and still the score of the one good batch
    assert metric.total == 2 and torch.isfinite(metric.compute())


@pytest.mark.parametrize("cls", [AOPCMorf, RegionPerturbation], ids=["aopc", "region-lazy-curve"])
def test_other_curve_metrics_reject_a_second_image_size_before_changing_state(cls):
    metric = _updated(cls)
    check_error(lambda: metric.update(MODEL, x6, x6.clone(), Y), ValueError, ("`inputs`", "(2, 1, 6, 6)"), state_of=metric)
    metric.reset()  # a reset metric takes any size
    metric.update(MODEL, x6, x6.clone(), Y)
    assert metric.total == 2


def test_merge_of_matching_metrics_equals_one_metric_over_both_batches():
    x2, s2 = torch.rand(2, 1, 8, 8), torch.rand(2, 1, 8, 8)
    a, b, both = DeletionAUC(steps=4), DeletionAUC(steps=4), DeletionAUC(steps=4)
    a.update(MODEL, X, S, Y)
    b.update(MODEL, x2, s2, Y)
    both.update(MODEL, X, S, Y)
    both.update(MODEL, x2, s2, Y)
    a.merge_state(b)
    torch.testing.assert_close(a.compute(), both.compute())
    torch.testing.assert_close(a.curve(), both.curve())
    lazy, filled = RegionPerturbation(patch_size=4), _updated(RegionPerturbation)
    lazy.merge_state(filled)  # an empty lazily sized curve merges with any length
    torch.testing.assert_close(lazy.curve(), filled.curve())
    assert lazy.curve_x().shape == filled.curve_x().shape


def test_metric_before_update_and_with_nan_logits():
    m = DeletionAUC(steps=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert torch.isnan(m.compute())
    with pytest.raises(RuntimeError, match="before any `update`"):
        m.curve()
    x = X.clone()
    x[1, 0, 0, 0] = 9.0
    s = S.clone()
    s[1, 0, 0, 0] = -1.0
    areas, curves = deletion_auc(NAN_MODEL, x, s, Y, steps=4, reduction="none", return_curves=True)
    with pytest.warns(UserWarning, match=r"DeletionAUC: 1 of 2 samples have a non-finite score"):
        m.update(NAN_MODEL, x, s, Y)
    assert int(m.nan_count) == 1 and int(m.total) == 1
    torch.testing.assert_close(m.compute(), areas[0])
    torch.testing.assert_close(m.curve(), curves[0])


# ------------------------------------------------------------------------------------------ explainers
EXPLAINER_CONSTRUCTOR_ERRORS = [
    ("reduce", lambda: Gradient(reduce="median"), ValueError, ("`reduce`",)),
    ("abs", lambda: Gradient(abs="yes"), TypeError, ("`abs`",)),
    ("name-slash", lambda: Gradient(name="a/b"), ValueError, ("`name`",)),
    ("output-transform", lambda: Gradient(output_transform=3), TypeError, ("`output_transform`",)),
    ("smoothgrad-stdevs-nan", lambda: SmoothGrad(stdevs=math.nan), ValueError, ("`stdevs`",)),
    ("smoothgrad-stdevs-negative", lambda: SmoothGrad(stdevs=-0.1), ValueError, ("`stdevs`",)),
    ("smoothgrad-nt-samples", lambda: SmoothGrad(nt_samples=0), ValueError, ("`nt_samples`",)),
    ("smoothgrad-seed", lambda: SmoothGrad(seed=1.5), TypeError, ("`seed`",)),
    ("ig-method", lambda: IntegratedGradients(method="simpson"), ValueError, ("`method`",)),
    ("ig-baseline-nan", lambda: IntegratedGradients(baseline=math.nan), ValueError, ("`baseline`",)),
    ("ig-steps", lambda: IntegratedGradients(n_steps=0), ValueError, ("`n_steps`",)),
    ("gradcam-empty-layer", lambda: GradCAM(layer=""), ValueError, ("`layer`",)),
    ("gradcam-relu", lambda: GradCAM(layer="conv", relu="yes"), TypeError, ("`relu`",)),
    ("captum-method", lambda: CaptumExplainer(42), TypeError, ("`method`",)),
    ("random-map-seed", lambda: RandomMap(seed="a"), TypeError, ("`seed`",)),
    ("random-map-smooth", lambda: RandomMap(smooth=0), ValueError, ("`smooth`",)),
    ("function-explainer", lambda: FunctionExplainer(3), TypeError, ("`fn`",)),
]


@pytest.mark.parametrize("fn, exc, names", [c[1:] for c in EXPLAINER_CONSTRUCTOR_ERRORS], ids=[c[0] for c in EXPLAINER_CONSTRUCTOR_ERRORS])
def test_explainer_constructors_reject(fn, exc, names):
    check_error(fn, exc, names)


HEAD = WithHead().eval()
EXPLAINER_CALL_ERRORS = [
    ("target-too-large", lambda: Gradient()(MODEL, X, torch.tensor([4, 0])), ValueError, ("`target`",), MODEL),
    ("target-shape", lambda: Gradient()(MODEL, X, Y[:1]), ValueError, ("`target`",), MODEL),
    ("inputs-int", lambda: SmoothGrad(nt_samples=2)(MODEL, X.long(), Y), TypeError, ("`inputs`",), MODEL),
    ("detached-input", lambda: Gradient()(DETACH, X, Y), ValueError, ("`model`", "gradients to flow"), MODEL),
    ("returns-dict", lambda: Gradient()(DICT, X, Y), TypeError, ("`model`", "output_transform"), MODEL),
    ("gradcam-unknown-layer", lambda: GradCAM(layer="conv9")(HEAD, X, Y), (ValueError, AttributeError, KeyError), ("conv9",), HEAD),
    ("gradcam-unused-layer", lambda: GradCAM(layer="unused")(HEAD, X, Y), ValueError, ("unused",), HEAD),
    ("gradcam-linear-layer", lambda: GradCAM(layer="head")(HEAD, X, Y), ValueError, ("head", "conv"), HEAD),
    ("model-float64", lambda: Gradient()(F64, X, Y), TypeError, ("`model`", "`inputs`"), MODEL),
    ("integrated-float64", lambda: IntegratedGradients(n_steps=2)(F64, X, Y), TypeError, ("`model`", "`inputs`"), MODEL),
    ("model-not-callable", lambda: Gradient()(None, X, Y), TypeError, ("`model`",), MODEL),
]


@pytest.mark.parametrize(
    "fn, exc, names, model", [c[1:] for c in EXPLAINER_CALL_ERRORS], ids=[c[0] for c in EXPLAINER_CALL_ERRORS]
)
def test_explainer_calls_reject_and_leave_the_model(fn, exc, names, model):
    model.train()  # the explainer must restore this mode too
    try:
        check_error(fn, exc, names, state_of=model)
    finally:
        model.eval()


def test_explainers_on_odd_but_valid_inputs():
    # a model in train mode with dropout gives the eval-mode map, and stays in train mode
    drop = nn.Sequential(nn.Flatten(), nn.Dropout(0.5), nn.Linear(64, 4)).train()
    torch.testing.assert_close(Gradient()(drop, X, Y), Gradient()(drop.eval(), X, Y))
    # int32 targets work like int64
    torch.testing.assert_close(Gradient()(MODEL, X, Y.int()), Gradient()(MODEL, X, Y))
    # SmoothGrad with zero noise is the gradient; keyed noise: a sample's map is the same alone or in a batch
    torch.testing.assert_close(SmoothGrad(nt_samples=2, stdevs=0.0)(MODEL, X, Y), Gradient()(MODEL, X, Y))
    torch.testing.assert_close(SmoothGrad(nt_samples=3)(MODEL, X[1:], Y[1:]), SmoothGrad(nt_samples=3)(MODEL, X, Y)[1:])


# ------------------------------------------------------------------------------------------ evaluate
def _boom(model, inputs, target):
    raise RuntimeError("explainer exploded")


EVALUATE_ERRORS = [
    ("no-explainers", lambda: evaluate(MODEL, X, Y, {}, {"d": DeletionAUC(steps=4)}), ValueError, ("`explainers`",)),
    ("no-metrics", lambda: evaluate(MODEL, X, Y, {"g": Gradient()}, {}), ValueError, ("`metrics`",)),
    ("metric-protocol", lambda: evaluate(MODEL, X, Y, {"g": Gradient()}, {"d": object()}), TypeError, ("`metrics`",)),
    ("labels-shape", lambda: evaluate(MODEL, X, Y[:1], {"g": Gradient()}, {"d": DeletionAUC(steps=4)}), ValueError, ("`labels`",)),
    ("labels-list", lambda: evaluate(MODEL, X, [0, 1], {"g": Gradient()}, {"d": DeletionAUC(steps=4)}), ValueError, ("`labels`",)),
    ("batch-size", lambda: evaluate(MODEL, X, Y, {"g": Gradient()}, {"d": DeletionAUC(steps=4)}, batch_size=0), ValueError, ("`batch_size`",)),
    ("target", lambda: evaluate(MODEL, X, Y, {"g": Gradient()}, {"d": DeletionAUC(steps=4)}, target="pred"), ValueError, ("`target`",)),
    ("on-error", lambda: evaluate(MODEL, X, Y, {"g": Gradient()}, {"d": DeletionAUC(steps=4)}, on_error="ignore"), ValueError, ("`on_error`",)),
    ("controls", lambda: evaluate(MODEL, X, Y, {"g": Gradient()}, {"d": DeletionAUC(steps=4)}, controls="yes"), TypeError, ("`controls`",)),
    ("extras-size", lambda: evaluate(MODEL, X, Y, {"g": Gradient()}, {"d": DeletionAUC(steps=4)}, extras={"masks": torch.ones(3, 1, 8, 8)}), ValueError, ("`extras`", "masks")),
    ("inputs", lambda: evaluate(MODEL, X[0], Y, {"g": Gradient()}, {"d": DeletionAUC(steps=4)}), ValueError, ("`inputs`",)),
    ("raise-explainer", lambda: evaluate(MODEL, X, Y, {"g": _boom}, {"d": DeletionAUC(steps=4)}, on_error="raise"), RuntimeError, ("explainer exploded",)),
]


@pytest.mark.parametrize("fn, exc, names", [c[1:] for c in EVALUATE_ERRORS], ids=[c[0] for c in EVALUATE_ERRORS])
def test_evaluate_rejects(fn, exc, names):
    template = DeletionAUC(steps=4)
    check_error(fn, exc, names)
    assert template.total == 0


def test_evaluate_records_faults_and_scores_the_rest():
    template = DeletionAUC(steps=4)
    with pytest.warns(UserWarning, match="explainer 'boom' failed"):
        grid = evaluate(MODEL, X, Y, {"boom": _boom, "g": Gradient(), "short_map": S[:1]}, {"d": template}, controls=False)
    assert "explainer exploded" in grid.failures[("boom", "d")]
    assert "`saliency`" in grid.failures[("short_map", "d")]
    assert grid.value("g", "d") == pytest.approx(float(deletion_auc(MODEL, X, Gradient()(MODEL, X, Y), Y, **d)))
    assert template.total == 0  # templates are copied, never updated


def test_evaluate_names_model_and_inputs_for_a_dtype_mismatch():
    with pytest.warns(UserWarning, match="the model failed"):
        grid = evaluate(F64, X, Y, {"g": Gradient()}, {"d": DeletionAUC(steps=4)})
    assert "`model`" in grid.failures[("g", "d")] and "`inputs`" in grid.failures[("g", "d")]


# ------------------------------------------------------------------------------------------ the monitor
MONITOR_ERRORS = [
    ("num-samples", dict(num_samples=0), ValueError, ("`num_samples`",)),
    ("every-n-epochs", dict(every_n_epochs=0), ValueError, ("`every_n_epochs`",)),
    ("target", dict(target="pred"), ValueError, ("`target`",)),
    ("on-error", dict(on_error="skip"), ValueError, ("`on_error`",)),
    ("metrics-empty", dict(metrics=[]), ValueError, ("`metrics`",)),
    ("metrics-not-metric", dict(metrics=[object()]), TypeError, ("`metrics`",)),
    ("metrics-duplicate", dict(metrics=[DeletionAUC(), DeletionAUC(steps=8)]), ValueError, ("`metrics`", "deletion_auc")),
    ("log-prefix", dict(log_prefix=""), ValueError, ("`log_prefix`",)),
    ("batch-transform", dict(batch_transform=3), TypeError, ("`batch_transform`",)),
    ("controls", dict(controls="yes"), TypeError, ("`controls`",)),
    ("explainers-empty", dict(explainers=[]), ValueError, ("`explainers`",)),
    ("explainers-not-callable", dict(explainers={"x": 3}), TypeError, ("`explainers`",)),
    ("repeats", dict(repeats=0), ValueError, ("`repeats`",)),
]


@pytest.mark.parametrize("kw, exc, names", [c[1:] for c in MONITOR_ERRORS], ids=[c[0] for c in MONITOR_ERRORS])
def test_monitor_constructor_rejects(kw, exc, names):
    opts = dict(explainers=[Gradient()], metrics=[DeletionAUC(steps=4)])
    opts.update(kw)
    check_error(lambda: SaliencyMonitor(**opts), exc, names)


def _fit(monitor, epochs=1, validate=False):
    trainer = pl.Trainer(
        max_epochs=epochs, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0, callbacks=[monitor],
    )  # fmt: skip
    model = LitTiny(lr=0.1)
    if validate:
        trainer.validate(model, loader())
    else:
        trainer.fit(model, loader(), loader(seed=1))
    return model


def _bad_transform(batch):
    raise KeyError("image")


def test_monitor_in_fit_bad_batch_transform_warns_and_training_continues():
    monitor = SaliencyMonitor([Gradient()], [DeletionAUC(steps=4)], num_samples=4, batch_transform=_bad_transform)
    with pytest.warns(UserWarning, match="probe failed.*KeyError"):
        model = _fit(monitor)
    reference = LitTiny(lr=0.1)
    pl.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
               enable_model_summary=False, num_sanity_val_steps=0).fit(reference, loader(), loader(seed=1))  # fmt: skip
    for (k, a), b in zip(model.state_dict().items(), reference.state_dict().values()):
        assert torch.equal(a, b), k
    assert monitor.history == []


def test_monitor_in_fit_failing_explainer_warns_or_raises():
    monitor = SaliencyMonitor({"boom": _boom, "gradient": Gradient()}, [DeletionAUC(steps=4)], num_samples=4)
    with pytest.warns(UserWarning, match="explainer 'boom' failed"):
        _fit(monitor)
    assert monitor.last_scores["boom/deletion_auc"] is None and monitor.last_scores["gradient/deletion_auc"] is not None
    strict = SaliencyMonitor({"boom": _boom}, [DeletionAUC(steps=4)], num_samples=4, on_error="raise")
    with pytest.raises(RuntimeError, match="explainer exploded"):
        _fit(strict)


def test_monitor_in_validate_with_a_mismatched_map_size_metric_fails_clearly():
    """A metric that rejects the probe (RegionPerturbation with a patch larger than the image) is absent
    with a warning naming it; the other metric is scored in ``trainer.validate`` (inference mode)."""
    monitor = SaliencyMonitor([Gradient()], {"region": RegionPerturbation(patch_size=16), "deletion": DeletionAUC(steps=4)}, num_samples=4)
    with pytest.warns(UserWarning, match="metric 'region'.*`patch_size`"):
        _fit(monitor, validate=True)
    assert monitor.last_scores["gradient/region"] is None
    assert monitor.last_scores["gradient/deletion"] is not None


def test_catalogue_size():
    groups = (
        FUNCTIONAL_ERRORS, METRIC_CONSTRUCTOR_ERRORS, METRIC_UPDATE_ERRORS, EXPLAINER_CONSTRUCTOR_ERRORS,
        EXPLAINER_CALL_ERRORS, EVALUATE_ERRORS, MONITOR_ERRORS,
    )  # fmt: skip
    ids = [(i, c[0]) for i, group in enumerate(groups) for c in group]
    assert len(set(ids)) == len(ids)  # every case distinct within its entry point
    assert len(ids) >= 80  # plus the correct-result and in-Trainer cases below the tables


def test_hook_explainer_names_model_and_inputs_for_a_dtype_mismatch():
    check_error(lambda: GradCAM(layer="conv")(HEAD_F64, X, Y), TypeError, ("`model`", "`inputs`"), state_of=HEAD_F64)


HEAD_F64 = WithHead().double().eval()
