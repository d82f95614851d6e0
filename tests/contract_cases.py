"""The per-class problem table of the metric contract harness.

Read by ``tests/test_metric_contract.py`` (single process) and ``tests/_ddp_contract_worker.py`` (one
process per gloo rank); importing it has no side effects beyond defining the table.

* :func:`cases`: one :class:`Case` per ``torchmetrics.Metric`` class exported by
  :mod:`pl_saliency.metrics`: the class, small constructor settings, the problem it runs on, the
  outputs compared besides ``compute()``, and its functional twin (or why it has none);
* :data:`NOT_COVERED`: the exported classes that are not run, with the reason (base classes);
* :data:`RANDOM_VARIANTS`: settings that switch on the random draws a row avoids.

The known bugs that make contract checks fail are listed in ``tests/test_metric_contract.py``.

Every problem has :data:`N_SAMPLES` seeded samples; :data:`SPLIT` cuts them into the two updates
(5 + 3) of the accumulation, merge and DDP checks.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
from typing import Any

import torch
from torch import Tensor
from torch import nn

N_SAMPLES = 8
SPLIT = 5
NUM_CLASSES = 4
TOL = 1e-6


class ContractCNN(nn.Module):
    """conv(C -> 4) -> ReLU -> conv(4 -> 6) -> ReLU -> 2 x 2 average pool -> linear(24 -> K): three
    layers with parameters (the model-randomization steps); weights scaled so that removing pixels
    moves the logits by O(1) (a flat model could not tell a wrong split from a right one)."""

    def __init__(self, channels: int, num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 6, 3, padding=1)
        self.head = nn.Linear(24, num_classes)
        with torch.no_grad():
            for p in self.parameters():
                p.mul_(3.0)

    def forward(self, x: Tensor) -> Tensor:
        h = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        return self.head(nn.functional.adaptive_avg_pool2d(h, 2).flatten(1))


@dataclass
class Problem:
    """A seeded batch of :data:`N_SAMPLES` samples; :meth:`batch` gives one update's arguments."""

    model: nn.Module
    inputs: Tensor
    saliency: Tensor
    target: Tensor
    extras: dict[str, Tensor] = field(default_factory=dict)
    explainer: Callable[..., Tensor] | None = None
    #: the saliency of an update is the explainer's output on that update's slice (its ``last_report``
    #: then describes exactly these inputs, as the monitor hands it over)
    explain_slices: bool = False

    def batch(self, a: int = 0, b: int = N_SAMPLES) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """``(args, kwargs)`` of ``update`` / ``forward`` on samples ``a:b``, with a fresh ``BatchContext``
        (as the monitor makes one per batch) holding the explainer and the sliced extras."""
        from pl_saliency.perturbation import BatchContext

        x, y = self.inputs[a:b], self.target[a:b]
        sal = self.explainer(self.model, x, y) if self.explain_slices else self.saliency[a:b]
        context = BatchContext(explainer=self.explainer, extras={k: v[a:b] for k, v in self.extras.items()})
        return (self.model, x, sal, y), {"context": context}


def _images(channels: int, size: int, seed: int, predicted: bool = False) -> tuple[nn.Module, Tensor, Tensor, Tensor]:
    """Seeded model, inputs, maps and targets: random classes, or (``predicted``) the model's predictions
    (a head without bias, so that they differ between samples)."""
    torch.manual_seed(seed)
    model = ContractCNN(channels).eval()
    g = torch.Generator().manual_seed(seed + 100)
    x = torch.rand(N_SAMPLES, channels, size, size, generator=g)
    sal = torch.rand(N_SAMPLES, 1, size, size, generator=g)  # continuous: no ties in any feature order
    y = torch.randint(0, NUM_CLASSES, (N_SAMPLES,), generator=g)
    if predicted:
        with torch.no_grad():
            model.head.bias.zero_()
            y = model(x).argmax(dim=1)
    return model, x, sal, y


def _ground_truth(size: int) -> dict[str, Tensor]:
    """Boxes (x0, y0, x1, y1, exclusive end) of several sizes and their masks; sample 6's mask is empty
    (an undefined score: counted apart, never a 0 or a 1)."""
    g = torch.Generator().manual_seed(7)
    x0 = torch.randint(0, size // 2, (N_SAMPLES,), generator=g)
    y0 = torch.randint(0, size // 2, (N_SAMPLES,), generator=g)
    side = torch.randint(2, size // 2 + 1, (N_SAMPLES,), generator=g)
    boxes = torch.stack([x0, y0, x0 + side, y0 + side], dim=1)
    masks = torch.zeros(N_SAMPLES, 1, size, size)
    for i, (a, b, c, d) in enumerate(boxes.tolist()):
        masks[i, 0, b:d, a:c] = 1.0
    masks[6] = 0.0
    return {"masks": masks, "boxes": boxes.float()}


_ALIGNED = torch.tensor([1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 1.0, 0.0])


@functools.cache
def make_problem(kind: str) -> Problem:
    """The problems (built once per process; metrics never modify them)."""
    from pl_saliency.explainers import DecoyEnhanced
    from pl_saliency.explainers import Gradient

    if kind == "rgb":  # 3 channels, 10 px
        return Problem(*_images(3, 10, seed=0))
    if kind == "gray":  # 1 channel, 12 px
        return Problem(*_images(1, 12, seed=1))
    if kind == "predicted":  # 3 channels, 12 px, the targets are the model's (varied) predictions
        return Problem(*_images(3, 12, seed=2, predicted=True))
    if kind in ("localization", "boxes"):  # masks in context.extras["masks"], or boxes only, in ["boxes"]
        model, x, sal, y = _images(3, 10, seed=2) if kind == "localization" else _images(1, 10, seed=3)
        gt = _ground_truth(10)
        sal = sal + _ALIGNED.view(-1, 1, 1, 1) * gt["masks"]  # half the maps peak on the ground truth: hits, misses
        key = "masks" if kind == "localization" else "boxes"
        return Problem(model, x, sal, y, extras={key: gt[key]})
    if kind == "explained":  # the maps are the explainer's, the explainer is context.explainer
        model, x, _, y = _images(2, 8, seed=4)
        explainer = Gradient()
        return Problem(model, x, explainer(model, x, y).detach(), y, explainer=explainer)
    if kind == "decoys":  # DANCE decoys with LPIPS on a random (pnet_rand) backbone: no weights needed
        model, x, _, y = _images(1, 8, seed=5)
        explainer = DecoyEnhanced(
            Gradient(), layer="conv1", patch_size=4, num_patches=2, iterations=12, epsilon=0.5, lpips_net="alex",
            pnet_rand=True, lpips_upsample_to=32,
        )  # fmt: skip
        return Problem(model, x, explainer(model, x, y).detach(), y, explainer=explainer, explain_slices=True)
    raise ValueError(f"Argument `kind` must name a problem of the contract table, but got {kind!r}.")


# ------------------------------------------------------------------------------------------- the table

#: ``twin(problem, reduction, **settings)``: the functional twin's value on all the problem's samples
Twin = Callable[..., Tensor]


@dataclass(frozen=True)
class Case:
    """One metric class under contract.

    ``settings``: constructor keywords (small problems, few steps); ``outputs``: names of methods whose
    results are compared besides ``compute()`` (curves, baselines); ``twin(problem, reduction)``: its
    functional twin on the whole problem, ``reduction`` ``"mean"`` (compared with ``compute()``) or
    ``"none"`` (compared with ``per_sample()`` of a ``keep_per_sample=True`` metric, where the class has
    that argument); ``no_twin``: why there is none.
    """

    cls: type
    problem: str
    settings: Mapping[str, Any] = field(default_factory=dict)
    outputs: tuple[str, ...] = ()
    twin: Twin | None = None
    no_twin: str | None = None
    wrap: Callable[..., Any] | None = None  # builds the metric from the settings (ControlledScore)

    @property
    def name(self) -> str:
        return self.cls.__name__

    def make(self, **overrides: Any) -> Any:
        kwargs = {**self.settings, **overrides}
        return self.wrap(**kwargs) if self.wrap is not None else self.cls(**kwargs)


def _model_twin(fn_name: str, **fixed: Any) -> Twin:
    """``F.<fn_name>(model, inputs, saliency, target, **settings, reduction=...)``."""

    def twin(p: Problem, reduction: str, **settings: Any) -> Tensor:
        import pl_saliency.functional as F

        (model, x, sal, y), _ = p.batch()
        return getattr(F, fn_name)(model, x, sal, y, **settings, **fixed, reduction=reduction)

    return twin


def _map_twin(fn_name: str, gt: str | None = None) -> Twin:
    """``F.<fn_name>(saliency[, masks=/boxes=], **settings, reduction=...)`` (localization / complexity)."""

    def twin(p: Problem, reduction: str, **settings: Any) -> Tensor:
        import pl_saliency.functional as F

        truth = {} if gt is None else {gt: p.extras[gt]}
        return getattr(F, fn_name)(p.saliency, **truth, **settings, reduction=reduction)

    return twin


def _mean_of(per_sample: Tensor, reduction: str) -> Tensor:
    """The classes' rule for twins that return per-sample values only: mean over finite values."""
    if reduction == "none":
        return per_sample
    finite = per_sample[torch.isfinite(per_sample)]
    return finite.double().mean().float() if finite.numel() else torch.tensor(float("nan"))


def _mprt_twin(p: Problem, reduction: str, **settings: Any) -> Tensor:
    from pl_saliency.functional import model_parameter_randomization

    aggregate = settings.pop("aggregate", "last")
    res = model_parameter_randomization(p.model, p.inputs, p.target, p.explainer, p.saliency, **settings)
    sims = res.similarity[:, -1] if aggregate == "last" else res.similarity.nanmean(dim=1)
    return _mean_of(sims, reduction)


def _random_logit_twin(p: Problem, reduction: str, **settings: Any) -> Tensor:
    from pl_saliency.functional import random_logit

    return random_logit(p.model, p.inputs, p.target, p.explainer, p.saliency, **settings, reduction=reduction)


def _neighbourhood_twin(mode: str) -> Twin:
    def twin(p: Problem, reduction: str, **settings: Any) -> Tensor:
        from pl_saliency.functional import neighbourhood_auc

        areas = neighbourhood_auc(
            p.model, p.inputs, p.saliency, p.target, mode=mode, generator=torch.Generator().manual_seed(0), **settings
        )
        return _mean_of(areas, reduction)

    return twin


def _decoy_twin(p: Problem, reduction: str, **settings: Any) -> Tensor:
    """``decoy_realism`` of the decoys that ``generate_decoys`` makes with the explainer's settings."""
    from pl_saliency.explainers import generate_decoys
    from pl_saliency.functional import decoy_realism

    e, cfg = p.explainer, p.explainer.cfg
    decoys = generate_decoys(
        p.model, p.inputs, e.layer, patch_size=cfg.patch_size, stride=e.stride, num_patches=e.num_patches,
        epsilon=cfg.epsilon, epsilon_scale=cfg.epsilon_scale, iterations=cfg.iterations, lr=cfg.lr,
        lambda_init=cfg.lambda_init, lambda_factor=cfg.lambda_factor, input_range=e.input_range,
        max_perturbation=cfg.max_perturbation, chunk_size=e.chunk_size, generator=torch.Generator().manual_seed(e.seed),
        patch_sampling=e.patch_sampling, coverage=e.coverage,
    )  # fmt: skip
    values = decoy_realism(
        p.inputs, decoys, lpips_net=e.lpips_net, pnet_rand=e.pnet_rand, upsample_to=e.lpips_upsample_to
    )
    per = values[settings.get("measure", "lpips")]
    per = per.mean(dim=1) if settings.get("reduction", "mean") == "mean" else per.amax(dim=1)
    return _mean_of(per, reduction)


def _localization_error_twin(p: Problem, reduction: str, **settings: Any) -> Tensor:
    """``object_localization_error`` gives one error per level (L,) (``"none"``: (N, L)); the class
    reports the smallest mean error over the levels, and the first level's per-sample errors."""
    from pl_saliency.functional import object_localization_error

    errors = object_localization_error(p.saliency, p.extras["boxes"], **settings, reduction=reduction)
    return errors[:, 0] if reduction == "none" else torch.nan_to_num(errors, nan=2.0).min()


def _sens_twin(fn_name: str) -> Twin:
    def twin(p: Problem, reduction: str, **settings: Any) -> Tensor:
        import pl_saliency.functional as F

        return getattr(F, fn_name)(p.model, p.inputs, p.saliency, p.target, explainer=p.explainer, **settings,
                                   reduction=reduction)  # fmt: skip

    return twin


def _removal_realism_twin(p: Problem, reduction: str, **settings: Any) -> Tensor:
    from pl_saliency.functional import removal_realism

    return removal_realism(p.inputs, p.saliency, **settings, reduction=reduction)


def _controlled(**settings: Any) -> Any:
    from pl_saliency.metrics import ControlledScore
    from pl_saliency.metrics import DeletionAUC

    return ControlledScore(DeletionAUC(steps=4, score="logit"), **settings)


_CURVE = ("curve", "curve_x")


def _road_filler() -> Any:
    from pl_saliency.perturbation.imputation import NoisyLinear

    return NoisyLinear(noise=0.0)  # ROAD's imputation without its noise: no random draw (see RANDOM_VARIANTS)


_CURVE_SETTINGS = {"steps": 4, "score": "logit"}


def _cases() -> list[Case]:
    from pl_saliency import metrics as M

    road_filler = _road_filler()
    return [
        Case(M.DeletionAUC, "rgb", _CURVE_SETTINGS, _CURVE, _model_twin("deletion_auc")),
        Case(M.InsertionAUC, "gray", _CURVE_SETTINGS, _CURVE, _model_twin("insertion_auc")),
        Case(M.AOPCMorf, "rgb", _CURVE_SETTINGS, _CURVE, _model_twin("aopc_morf")),
        Case(M.AOPCLerf, "gray", _CURVE_SETTINGS, _CURVE, _model_twin("aopc_lerf")),
        Case(M.ABPC, "rgb", _CURVE_SETTINGS, _CURVE, _model_twin("abpc")),
        Case(M.PixelFlipping, "gray", _CURVE_SETTINGS, _CURVE, _model_twin("pixel_flipping")),
        Case(M.RegionPerturbation, "rgb", {"patch_size": 3, "regions": 5, "score": "logit"}, _CURVE,
             _model_twin("region_perturbation")),
        Case(M.Selectivity, "gray", {"patch_size": 4, "score": "logit"}, _CURVE, _model_twin("selectivity")),
        Case(M.ROADMorf, "rgb", {"percentages": (25, 50, 75), "score": "logit", "filler": road_filler}, _CURVE,
             _model_twin("road", order="morf")),
        Case(M.ROADLerf, "gray", {"percentages": (30, 60), "score": "logit", "filler": road_filler}, _CURVE,
             _model_twin("road", order="lerf")),
        Case(M.NormalizedABPC, "predicted", {"steps": 4}, (), _model_twin("normalized_abpc")),
        Case(M.ControlledScore, "predicted", {"repeats": 2, "seed": 3, "num_resamples": 50}, (), wrap=_controlled,
             no_twin="a composite of the wrapped metric and pl_saliency.functional.controls (gain_over_random, "
                     "bootstrap_ci, win_rate, normalized_gain) over per-sample random-order curves: no one "
                     "function computes it"),
        Case(M.FaithfulnessCorrelation, "rgb", {"n_runs": 6, "subset_size": 10}, (),
             _model_twin("faithfulness_correlation")),
        Case(M.Infidelity, "gray", {"n_samples": 3, "noise_std": 0.3}, (), _model_twin("infidelity")),
        Case(M.MaxSensitivity, "explained", {"n_samples": 3, "radius": 0.05}, (), _sens_twin("max_sensitivity")),
        Case(M.AvgSensitivity, "explained", {"n_samples": 3, "radius": 0.05}, (), _sens_twin("avg_sensitivity")),
        Case(M.ModelParameterRandomization, "explained", {"similarity": "spearman"}, _CURVE, _mprt_twin),
        Case(M.RandomLogit, "explained", {"similarity": "ssim", "ssim_kernel_size": 3}, (), _random_logit_twin),
        Case(M.AdversarialReliability, "rgb",
             {"fractions": (0.25, 0.5), "eps": 0.1, "iterations": 2, "bounds": (0.0, 1.0), "score": "logit",
              "baselines": ("least",)},
             ("curve", "curve_x", "compute_baselines"), _model_twin("adversarial_reliability")),
        Case(M.AdversarialFlipBudget, "predicted", {"max_budget": 5.0, "resolution": 100, "baselines": ("inverse",)},
             ("compute_baselines", "compute_linf"), _model_twin("adversarial_flip_budget")),
        Case(M.AverageDrop, "rgb", {}, (), _model_twin("average_drop")),
        Case(M.IncreaseInConfidence, "gray", {"percentile": 50.0}, (), _model_twin("increase_in_confidence")),
        Case(M.SaliencyMetric, "rgb", {}, (), _model_twin("saliency_metric")),
        Case(M.NeighbourhoodDeletionAUC, "rgb", {"steps": 4, "region": (3, 3)}, (), _neighbourhood_twin("deletion")),
        Case(M.NeighbourhoodInsertionAUC, "gray", {"steps": 4, "region": (3, 3)}, (), _neighbourhood_twin("insertion")),
        Case(M.GiniSparseness, "rgb", {}, (), _map_twin("gini_sparseness")),
        Case(M.EntropyComplexity, "gray", {}, (), _map_twin("entropy_complexity")),
        Case(M.PointingGame, "localization", {"tolerance": 0.0}, (), _map_twin("pointing_game", "masks")),
        Case(M.EnergyPointingGame, "boxes", {}, (), _map_twin("energy_pointing_game", "boxes")),
        Case(M.RelevanceMassAccuracy, "localization", {}, (), _map_twin("relevance_mass_accuracy", "masks")),
        Case(M.RelevanceRankAccuracy, "boxes", {}, (), _map_twin("relevance_rank_accuracy", "boxes")),
        Case(M.ObjectLocalizationError, "boxes", {"thresholds": (0.6, 0.3)}, ("errors_per_threshold",),
             _localization_error_twin),
        Case(M.RemovalRealism, "rgb", {"fractions": (0.25, 0.5), "pnet_rand": True, "upsample_to": 32}, ("curve",),
             _removal_realism_twin),
        Case(M.DecoyRealism, "decoys", {"measure": "lpips"}, (), _decoy_twin),
    ]  # fmt: skip


#: exported Metric classes that are not run, and why
NOT_COVERED: dict[str, str] = {
    "ProtocolMetric": "base class: declares the protocol's `update`; `_update_batch` is abstract",
    "SampleScoreMetric": "base class: no `update` (subclasses define the per-sample score)",
    "CurveAUCMetric": "base class of the curve metrics: no `higher_is_better`; DeletionAUC / InsertionAUC are its "
                      "concrete forms and are covered",
    "CurveMetric": "base class of the curve metrics whose direction follows their order: no `higher_is_better` of "
                   "its own; its concrete forms (AOPC, ABPC, region perturbation, selectivity, ROAD) are covered",
    "LocalizationMetric": "base class: `_score` is abstract (raises NotImplementedError)",
}  # fmt: skip

#: class -> settings that switch on the random draws its table row avoids (a stochastic filler, a random
#: baseline); compared 5 + 3 against 8 with the global RNG reseeded before every update
RANDOM_VARIANTS: dict[str, dict[str, Any]] = {
    "DeletionAUC": {"filler": "uniform_noise"},
    "ROADMorf": {"filler": None},  # ROAD's default: noisy linear imputation, noise std 0.01
    "NeighbourhoodDeletionAUC": {"filler": "uniform_noise"},
    "AverageDrop": {"filler": "uniform_noise"},
    "RemovalRealism": {"filler": "uniform_noise"},
    "AdversarialReliability": {"baselines": ("least", "random")},
    "AdversarialFlipBudget": {"baselines": ("inverse", "shuffled", "inverse_shuffled"), "shuffles": 2},
}


@functools.cache
def cases() -> dict[str, Case]:
    return {c.name: c for c in _cases()}


# ----------------------------------------------------------------------------------------------- outputs


def flatten(prefix: str, value: Any) -> dict[str, Tensor]:
    """``{prefix: tensor}``, or ``{prefix.key: tensor}`` for a (nested) dict of values."""
    if isinstance(value, Mapping):
        out: dict[str, Tensor] = {}
        for k, v in value.items():
            out.update(flatten(f"{prefix}.{k}", v))
        return out
    return {prefix: torch.as_tensor(value).detach().cpu().clone()}


def outputs(case: Case, metric: Any) -> dict[str, Tensor]:
    """``compute()`` and the case's other outputs, flattened to ``{"compute": ..., "curve": ...}``."""
    out = flatten("compute", metric.compute())
    for name in case.outputs:
        out.update(flatten(name, getattr(metric, name)()))
    return out


def assert_same(actual: Mapping[str, Tensor], expected: Mapping[str, Tensor], what: str = "") -> None:
    """Same keys, same shapes, equal within :data:`TOL` (NaN equal to NaN)."""
    if set(actual) != set(expected):
        raise AssertionError(f"{what}: outputs {sorted(actual)} != {sorted(expected)}")
    for key in expected:
        a, e = actual[key], expected[key]
        torch.testing.assert_close(
            a.double(), e.double(), atol=TOL, rtol=TOL, equal_nan=True, msg=lambda m, k=key: f"{what} [{k}]: {m}"
        )
