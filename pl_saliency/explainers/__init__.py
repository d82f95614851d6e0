"""Explainers: ``explainer(model, inputs, target) -> saliency (N, 1, H, W)``."""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Mapping
from typing import Any

from pl_saliency.explainers.base import Explainer
from pl_saliency.explainers.base import FunctionExplainer
from pl_saliency.explainers.captum import CaptumExplainer
from pl_saliency.explainers.captum import GradCAM
from pl_saliency.explainers.captum import Gradient
from pl_saliency.explainers.captum import GradientXInput
from pl_saliency.explainers.captum import IntegratedGradients
from pl_saliency.explainers.captum import SmoothGrad
from pl_saliency.explainers.decoy import DecoyEnhanced
from pl_saliency.explainers.decoy import DecoyReport
from pl_saliency.explainers.decoy import Decoys
from pl_saliency.explainers.decoy import dance_postprocess
from pl_saliency.explainers.decoy import generate_decoys
from pl_saliency.explainers.decoy import patch_positions
from pl_saliency.explainers.decoy import range_aggregate
from pl_saliency.explainers.layers import TokenLayout
from pl_saliency.explainers.layers import conv_layer_names
from pl_saliency.explainers.layers import resolve_layer
from pl_saliency.explainers.random_map import RandomMap
from pl_saliency.explainers.removal import RISE
from pl_saliency.explainers.removal import Lime
from pl_saliency.explainers.removal import MeaningfulPerturbation
from pl_saliency.explainers.removal import RemovalExplainer
from pl_saliency.explainers.removal import SlidingPatchOcclusion
from pl_saliency.registry import named_items


def named_explainers(explainers: Any, name: str = "explainers") -> dict[str, Callable[..., Any]]:
    """Normalize an explainer spec to ``{name: explainer}``.

    Accepts one explainer, a list of explainers (named by their ``name`` attribute), or a mapping
    from name to any callable ``(model, inputs, target) -> (N, 1, H, W)``.
    """
    if isinstance(explainers, Mapping):
        items = list(explainers.items())
    elif callable(explainers):
        items = [(getattr(explainers, "name", None), explainers)]
    elif isinstance(explainers, (list, tuple)):
        items = [(getattr(e, "name", None), e) for e in explainers]
    else:
        raise TypeError(f"Argument `{name}` must be an explainer, a list of explainers or a dict name -> explainer, but got {type(explainers).__name__}.")

    def check(key: Any, fn: Any) -> Any:
        if not callable(fn):
            raise TypeError(f"Argument `{name}`: explainer {key!r} must be callable (model, inputs, target), but got {type(fn).__name__}.")
        if not isinstance(key, str) or not key or "/" in key:
            raise ValueError(f"Argument `{name}`: every explainer needs a name (a non-empty string without '/'), but got {key!r} for {fn!r}; pass a dict to name them.")
        return fn

    return named_items(items, check, argument=name, noun="explainer", empty=f"an empty {type(explainers).__name__}", hint="pass a dict or set `name=`")


__all__ = [
    "RandomMap",
    "CaptumExplainer",
    "conv_layer_names",
    "dance_postprocess",
    "DecoyEnhanced",
    "DecoyReport",
    "Decoys",
    "Explainer",
    "FunctionExplainer",
    "generate_decoys",
    "GradCAM",
    "Gradient",
    "GradientXInput",
    "IntegratedGradients",
    "Lime",
    "MeaningfulPerturbation",
    "named_explainers",
    "patch_positions",
    "range_aggregate",
    "RemovalExplainer",
    "resolve_layer",
    "RISE",
    "SlidingPatchOcclusion",
    "SmoothGrad",
    "TokenLayout",
]
