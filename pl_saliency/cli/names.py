"""Explainer and metric names of the command line: the names of :mod:`pl_saliency.registry`.

* ``--explainers``: ``[key=]name[:argument]`` with ``name`` a registry explainer (``gradient``,
  ``gradcam``, …) or ``captum``; ``gradcam:<layer>`` picks the layer (plain ``gradcam``: the model's
  last ``nn.Conv2d``), ``captum:<Method>`` a ``captum.attr`` class. ``key=`` names the result
  columns (default: the token as written), e.g. ``gradcam=gradcam:features.2`` to log under the same
  name as the monitor's ``GradCAM(layer="features.2")``.
* ``--metrics``: registry names (``deletion_auc``, ``insertion_auc``, ``gini_sparseness``, …) or their
  aliases (``deletion``, ``insertion``, ``gini``, ``entropy``, ``mprt``); results use the registry's
  name. Metrics needing ground truth the command line cannot give are in :data:`NOT_SCORABLE`.

Classes are looked up when used: importing this module imports no metric or explainer.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
from typing import Any

from pl_saliency import registry
from pl_saliency.cli.common import CLIError
from pl_saliency.cli.common import one_line
from pl_saliency.cli.common import per_name_kwargs
from pl_saliency.cli.common import split_names


# ---------------------------------------------------------------------------------------- explainers
def _convs(model: Any) -> list[str]:
    from torch import nn

    return [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]


def _gradcam(arg: str | None, model: Any, **kwargs: Any) -> Any:
    from pl_saliency.explainers import GradCAM

    convs = _convs(model)
    if arg is None and not convs:
        raise CLIError("--explainers", "'gradcam' needs a layer and the model has no nn.Conv2d; pass gradcam:<layer>.")
    layer = arg or convs[-1]
    try:
        model.get_submodule(layer)
    except AttributeError:
        raise CLIError(
            "--explainers", f"gradcam layer {layer!r} is not a sub-module of the model; its convolutions are {convs[-10:]}."
        ) from None
    return GradCAM(layer=layer, **kwargs)


def _captum(arg: str | None, model: Any, **kwargs: Any) -> Any:
    from captum import attr as captum_attr

    from pl_saliency.explainers import CaptumExplainer

    method = getattr(captum_attr, arg or "", None)
    if not arg or not isinstance(method, type) or not hasattr(method, "attribute"):
        raise CLIError("--explainers", f"'captum:<Method>' needs a captum.attr class name such as GuidedBackprop, but got {arg!r}.")
    return CaptumExplainer(method, **kwargs)


def _plain(name: str) -> Callable[..., Any]:
    def build(arg: str | None, model: Any, **kwargs: Any) -> Any:
        cls = registry.explainer_class(name)
        if arg is not None:
            raise CLIError("--explainers", f"{cls.__name__} takes no ':<argument>', but got {arg!r}.")
        return cls(**kwargs)

    return build


EXPLAINERS: dict[str, Callable[..., Any]] = {name: _plain(name) for name in registry.EXPLAINERS}
EXPLAINERS["gradcam"] = _gradcam  # gradcam:<layer>; plain 'gradcam' takes the model's last nn.Conv2d
EXPLAINERS["captum"] = _captum  # captum:<captum.attr class>, e.g. captum:GuidedBackprop
"""Explainer names (the registry's, plus ``captum``) → ``builder(argument, model, **kwargs)``."""


def _parse_token(token: str) -> tuple[str, str, str | None]:
    """``"[key=]name[:argument]"`` → ``(key, name, argument)``."""
    key, eq, spec = token.partition("=")
    if not eq:
        key, spec = token, token
    key, spec = key.strip(), spec.strip()
    if not key or "/" in key:
        raise CLIError("--explainers", f"the name before '=' must be non-empty and without '/', but got {token!r}.")
    base, _, arg = spec.partition(":")
    return key, base, (arg or None)


def build_explainers(spec: str, model: Any, kwargs_json: str | None = None) -> dict[str, Any]:
    """``"gradient,gradcam:features.conv3"`` → ``{"gradient": Gradient(), "gradcam:features.conv3": GradCAM(...)}``.

    ``kwargs_json`` is a JSON object ``{"<key>": {constructor keyword arguments}}``.
    """
    parsed = [_parse_token(t) for t in split_names(spec, "--explainers")]
    keys = [k for k, _, _ in parsed]
    per_name = per_name_kwargs(kwargs_json, "--explainer-kwargs", keys)
    out: dict[str, Any] = {}
    for key, base, arg in parsed:
        if base not in EXPLAINERS:
            raise CLIError(
                "--explainers", f"unknown explainer {base!r}; valid: {', '.join(EXPLAINERS)} (gradcam:<layer>, captum:<Method>)."
            )
        if key in out:
            raise CLIError("--explainers", f"{key!r} is given twice.")
        try:
            explainer = EXPLAINERS[base](arg, model, **per_name.get(key, {}))
        except CLIError:
            raise
        except (TypeError, ValueError) as err:
            raise CLIError("--explainer-kwargs" if key in per_name else "--explainers", f"{key}: {one_line(err)}") from err
        explainer.name = key.replace("/", "_")
        out[key] = explainer
    return out


# ---------------------------------------------------------------------------------------- metrics
@dataclass(frozen=True)
class MetricSpec:
    """A command-line metric: the class exported by :mod:`pl_saliency.metrics` and its defaults.

    ``--steps`` (curve points) is passed to every metric whose constructor takes ``steps``, unless
    ``curve_steps=False``; ``kwargs`` are the command line's constructor defaults
    (``--metric-kwargs`` overrides them).
    """

    cls: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    curve_steps: bool = True  # False where the constructor's `steps` means something else (attack steps)


NOT_SCORABLE: dict[str, str] = {
    "ProtocolMetric": "base class",
    "SampleScoreMetric": "base class",
    "ControlledScore": "a wrapper of a curve metric (random-order controls), not a metric of its own",
    "CurveAUCMetric": "base class",
    "CurveMetric": "base class",
    "LocalizationMetric": "base class",
    "PointingGame": "needs ground-truth masks or boxes (context.extras)",
    "EnergyPointingGame": "needs ground-truth masks or boxes (context.extras)",
    "RelevanceMassAccuracy": "needs ground-truth masks or boxes (context.extras)",
    "RelevanceRankAccuracy": "needs ground-truth masks or boxes (context.extras)",
    "ObjectLocalizationError": "needs ground-truth boxes (context.extras)",
    "DecoyRealism": "needs a DecoyEnhanced explainer, which the command line does not offer",
}
"""Metric classes exported by :mod:`pl_saliency.metrics` that the command line does not offer, with
the reason (e.g. a metric needing ground-truth masks in ``context.extras``)."""

_ATTACK_STEPS = ("AdversarialReliability",)

METRICS: dict[str, MetricSpec] = {
    name: MetricSpec(cls, curve_steps=cls not in _ATTACK_STEPS)
    for name, cls in registry.METRICS.items()
    if cls not in NOT_SCORABLE
}
"""Registry metric names → :class:`MetricSpec` (every registry metric not in :data:`NOT_SCORABLE`).
A metric following the monitor protocol (``update(model, inputs, saliency, target, context=None)``)
is offered once it is in :data:`pl_saliency.registry.METRICS`."""


def metric_names() -> list[str]:
    """The names ``--metrics`` accepts (aliases not listed), without importing any metric."""
    return list(METRICS)


def canonical_metric(name: str) -> str:
    """The registry's name of ``name`` (an alias resolved), or :class:`CLIError` naming the valid ones."""
    canonical = registry.METRIC_ALIASES.get(name, name)
    if canonical not in METRICS:
        aliases = ", ".join(f"{a} = {c}" for a, c in registry.METRIC_ALIASES.items())
        raise CLIError("--metrics", f"unknown metric {name!r}; valid: {', '.join(METRICS)} (aliases: {aliases}).")
    return canonical


def available_metrics() -> dict[str, type]:
    """``{name: class}`` for every :data:`METRICS` entry whose class :mod:`pl_saliency.metrics` exports."""
    from pl_saliency import metrics as metrics_module

    out = {}
    for name, spec in METRICS.items():
        cls = getattr(metrics_module, spec.cls, None)
        if isinstance(cls, type):
            out[name] = cls
    return out


def build_metrics(spec: str, steps: int | None = None, kwargs_json: str | None = None) -> dict[str, Any]:
    """``"deletion,insertion_auc"`` → ``{"deletion_auc": DeletionAUC(steps=...), "insertion_auc": ...}``
    (templates, not yet updated; keyed by the registry's names)."""
    names: list[str] = []
    for given in split_names(spec, "--metrics"):
        name = canonical_metric(given)
        if name in names:
            raise CLIError("--metrics", f"{given!r} is given twice" + (f" (as {name!r})." if given != name else "."))
        names.append(name)
    per_name = per_name_kwargs(kwargs_json, "--metric-kwargs", names, rename=lambda k: registry.METRIC_ALIASES.get(k, k))
    available = available_metrics()
    out: dict[str, Any] = {}
    for name in names:
        if name not in available:
            raise CLIError("--metrics", f"{name!r} is registered but pl_saliency.metrics does not export {METRICS[name].cls}.")
        cls = available[name]
        kwargs = dict(METRICS[name].kwargs)
        params = inspect.signature(cls).parameters
        if steps is not None and "steps" in params and METRICS[name].curve_steps:
            kwargs["steps"] = steps
        kwargs.update(per_name.get(name, {}))
        if "keep_per_sample" in params:
            kwargs["keep_per_sample"] = True
        try:
            out[name] = cls(**kwargs)
        except (TypeError, ValueError) as err:
            raise CLIError("--metric-kwargs" if name in per_name else "--metrics", f"{name}: {one_line(err)}") from err
    return out
