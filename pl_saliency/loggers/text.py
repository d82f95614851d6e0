"""Plain-text reporting: the scores table printed by the monitor (``verbose=True``) and the CLI."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence


def format_scores_table(
    scores: Mapping[str, float | None],
    explainers: Sequence[str],
    directions: Mapping[str, bool | None],
    title: str = "saliency scores",
) -> str:
    """A plain-text table: explainers as rows, metrics as columns, arrows for the better direction.

    ``scores`` is keyed ``"<explainer>/<metric>"`` (None or absent: "—"); ``directions`` maps each
    metric, in column order, to its ``higher_is_better``. The same layout as
    :meth:`pl_saliency.SaliencyMonitor.format_table` (which calls this).
    """
    metrics = list(directions)
    heads = [f"{m}{ {True: ' ↑', False: ' ↓'}.get(directions[m], '') }" for m in metrics]
    width = max([len("explainer")] + [len(e) for e in explainers])
    cols = [max(len(h), 8) for h in heads]
    lines = [title, "  ".join(["explainer".ljust(width)] + [h.rjust(c) for h, c in zip(heads, cols)])]
    for e in explainers:
        cells = []
        for m, c in zip(metrics, cols):
            v = scores.get(f"{e}/{m}")
            cells.append(("—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4f}").rjust(c))
        lines.append("  ".join([e.ljust(width)] + cells))
    return "\n".join(lines)
