"""The monitor's optional reports (baseline sensitivity, metric coherence, adversarially cleaned maps).

They run on the *whole* probe: every process gathers every process's probe samples, targets, extras
and maps first (collectives reached by every process in the same order), then computes the report
locally (no metric syncs), so every process holds the same report and a report never mixes one
process's probe with another's mean.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from pl_saliency.evaluation import Sync


def report_options(name: str, value: Any) -> dict[str, Any]:
    if value is True:
        return {}
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"Argument `{name}` must be True, None or a dict of keyword arguments, but got {type(value).__name__}.")


class CleanedMapsReport:
    """Adversarially cleaned maps of every explainer on the probe set (see ``clean_maps``)."""

    def __init__(self, inputs: Tensor, cleaned: dict[str, Any], original: dict[str, Tensor]) -> None:
        self.inputs, self.cleaned, self.original = inputs, cleaned, original

    def summary(self) -> dict[str, float]:
        out = {}
        for e, res in self.cleaned.items():
            out[f"{e}/kept_fraction"] = float(torch.as_tensor(res.fraction).float().mean())
            out[f"{e}/measure_before"] = float(torch.as_tensor(res.before).float().nanmean())
            out[f"{e}/measure_after"] = float(torch.as_tensor(res.after).float().nanmean())
        return out

    def media(self, prefix: str, max_images: int, **style: Any) -> dict[str, Any]:
        from pl_saliency.loggers.wandb import overlay_images

        return {
            f"{prefix}/overlays/{e}": overlay_images(
                self.inputs.cpu(), self.original[e].cpu(),
                [f"before | after: kept {float(f):.0%} of the features" for f in torch.as_tensor(res.fraction).reshape(-1)],
                max_images, after=res.saliency.cpu(), **style,
            )
            for e, res in self.cleaned.items()
        }  # fmt: skip


def gather_probe(
    sync: Sync, inputs: Tensor, targets: Tensor, extras: Mapping[str, Tensor], maps: Mapping[str, Tensor], explainers: list[str]
) -> tuple[Tensor, Tensor, dict[str, Tensor], dict[str, Tensor]]:
    """Every process's probe, targets, extras and maps, concatenated in rank order (one collective per
    tensor, in a fixed order; a process without an explainer's complete maps sends none of them and
    that explainer is left out everywhere)."""
    if sync.world_size == 1:
        return inputs, targets, dict(extras), dict(maps)
    have = torch.tensor([[e in maps for e in explainers]], dtype=torch.uint8)
    complete = sync.gather(have).amin(dim=0).bool().tolist()
    x = sync.gather(inputs)
    y = sync.gather(targets)
    ex = {k: sync.gather(extras[k]) for k in sorted(extras)}
    mp = {e: sync.gather(maps[e]) for e, ok in zip(explainers, complete) if ok}
    return x, y, ex, mp


def run_reports(
    reports: Mapping[str, dict[str, Any]],
    model: Any,
    inputs: Tensor,
    targets: Tensor,
    extras: Mapping[str, Tensor],
    maps: Mapping[str, Tensor],
    explainers: Mapping[str, Callable[..., Tensor]],
    metric_templates: Mapping[str, Any],
    output_transform: Callable[[Any], Tensor] | None,
    on_failure: Callable[[str, Exception], None],
) -> dict[str, Any]:
    """Compute each requested report locally on the (gathered) probe; a failing report is handed to
    ``on_failure`` and left out."""
    from pl_saliency.analysis import baseline_sensitivity
    from pl_saliency.analysis import coherence_report
    from pl_saliency.functional import clean_saliency

    device = next((p.device for p in model.parameters()), torch.device("cpu")) if hasattr(model, "parameters") else torch.device("cpu")
    x, t = inputs.to(device), targets.to(device)
    full = {e: m.to(device) for e, m in maps.items()}
    out: dict[str, Any] = {}
    for name, options in reports.items():
        try:
            opts = dict(options)
            if name == "baseline_sensitivity":
                opts.setdefault("output_transform", output_transform)
                report = baseline_sensitivity(model, x, t, full, **opts)
            elif name == "clean_maps":
                opts.setdefault("output_transform", output_transform)
                report = CleanedMapsReport(x, {e: clean_saliency(model, x, m, t, **opts) for e, m in full.items()}, full)
            else:
                kept = {e: fn for e, fn in explainers.items() if e in full}
                ex = {k: v.to(device) for k, v in extras.items()}
                report = coherence_report(model, x, t, kept, metric_templates, extras=ex or None, **opts)
        except Exception as err:  # noqa: BLE001 - reported per the monitor's policy
            on_failure(f"report {name!r}", err)
            continue
        out[name] = report
    return out
