"""What the monitor and ``pl-saliency track`` share about a series of scored epochs (no Lightning here):
the maps' stability across epochs and the W&B summary rule of each key."""

from __future__ import annotations

import math
from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import MutableMapping
from collections.abc import Sequence

import torch
from torch import Tensor

#: the controlled keys whose W&B summary is the best (max) value; every other key keeps its last value
BEST_KEYS: tuple[str, ...] = ("gain", "normalized_gain", "win_rate", "gain_over_inverted")


def summary_directions(keys: Sequence[str]) -> dict[str, bool | None]:
    """W&B summary rule per key: ``True`` (keep the max) for gain, normalized gain, win rate and gain over
    the inverted order; None (keep the last value) for raw scores, controls, intervals and context — raw
    curve scores are confounded with the model's confidence, so their min/max names no best epoch."""
    return {k: (True if k.rsplit("/", 1)[-1] in BEST_KEYS else None) for k in keys}


def stability_scores(
    maps: Mapping[str, Tensor],
    previous: MutableMapping[str, Tensor],
    first: MutableMapping[str, Tensor],
    explainers: Sequence[str],
    num_samples: int,
    gather: Callable[[Tensor], Tensor] | None = None,
) -> dict[str, float | None]:
    """Per explainer, the mean Spearman similarity of its maps (N, 1, H, W) to the previous and the first
    scored epoch's (``<explainer>/stability/previous`` and ``…/first``; None where there is no reference
    yet); ``gather`` concatenates every process's per-sample similarities (one collective, reached by
    every process). Updates ``previous`` and ``first`` in place."""
    from pl_saliency.functional.randomization import spearman_correlation

    cols = []
    for e in explainers:
        now = maps.get(e)
        for ref in (previous.get(e), first.get(e)):
            if now is None or ref is None or ref.shape != now.shape:
                cols.append(torch.full((num_samples,), math.nan, dtype=torch.float64))
            else:
                cols.append(spearman_correlation(now.flatten(1).double(), ref.flatten(1).double()))
    rows = torch.stack(cols, dim=1) if cols and num_samples else torch.empty(0, 2 * len(explainers), dtype=torch.float64)
    if gather is not None:
        rows = gather(rows)
    out: dict[str, float | None] = {}
    for i, e in enumerate(explainers):
        for j, which in enumerate(("previous", "first")):
            col = rows[:, 2 * i + j]
            col = col[torch.isfinite(col)]
            out[f"{e}/stability/{which}"] = float(col.mean()) if col.numel() else None
        if e in maps:
            previous[e] = maps[e]
            first.setdefault(e, maps[e])
    return out
