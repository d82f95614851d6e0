"""Plain-text reporting: the scores table printed by the monitor (``verbose=True``) and the CLI."""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from collections.abc import Sequence

from pl_saliency.utils import check_choice

#: the layouts of :func:`format_scores_table`
LAYOUTS: tuple[str, ...] = ("auto", "raw", "controlled")


def _head(metric: str, higher: bool | None) -> str:
    """A column heading: the metric and the arrow of its better direction (none when unknown)."""
    return f"{metric}{ {True: ' ↑', False: ' ↓'}.get(higher, '') }"


def _raw(value: float | None) -> str:
    """A raw score to 4 decimals; "—" when absent or NaN."""
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"


def _first_column_width(explainers: Sequence[str]) -> int:
    return max([len("explainer")] + [len(e) for e in explainers])


def format_scores_table(
    scores: Mapping[str, float | None],
    explainers: Sequence[str],
    directions: Mapping[str, bool | None],
    title: str = "saliency scores",
    *,
    layout: str = "auto",
) -> str:
    """A plain-text table: explainers as rows, metrics as columns, arrows for the better direction.

    ``scores`` is keyed ``"<explainer>/<metric>"`` (None or absent: "—"); ``directions`` maps each
    metric, in column order, to its ``higher_is_better``. ``layout``: ``"raw"`` (the raw values),
    ``"controlled"`` (the monitor's headline: per curve metric ``gain ± h``, ``h`` the larger distance
    from the gain to its 95 % interval's ends, higher = better than a random order, and the win rate;
    metrics without a control show their raw value with the direction arrow; below, the controls' raw
    values ``"<metric>/random"``) or ``"auto"`` (default: controlled where any ``"<e>/<m>/gain"`` is
    present, else raw). :meth:`pl_saliency.SaliencyMonitor.format_table` and the CLI call this.

    Example:
        >>> print(format_scores_table(
        ...     {"g/deletion_auc/gain": 0.05, "g/deletion_auc/gain_ci_low": 0.03, "g/deletion_auc/gain_ci_high": 0.08,
        ...      "g/deletion_auc/win_rate": 0.75, "deletion_auc/random": 0.2}, ["g"], {"deletion_auc": False}))
        saliency scores (gain over a random order ± 95% CI; win rate)
        explainer  deletion_auc gain ↑
        g          +0.050 ± 0.030  75%
        random-order control (raw): deletion_auc 0.2000
        >>> print(format_scores_table({"g/deletion_auc": 0.25}, ["g"], {"deletion_auc": False}))
        saliency scores
        explainer  deletion_auc ↓
        g                  0.2500
    """
    check_choice("layout", layout, LAYOUTS)
    if layout == "controlled" or (layout == "auto" and any(k.endswith("/gain") for k in scores)):
        return _controlled_table(scores, explainers, directions, title)
    metrics = list(directions)
    heads = [_head(m, directions[m]) for m in metrics]
    width = _first_column_width(explainers)
    cols = [max(len(h), 8) for h in heads]
    lines = [title, "  ".join(["explainer".ljust(width)] + [h.rjust(c) for h, c in zip(heads, cols)])]
    for e in explainers:
        cells = []
        for m, c in zip(metrics, cols):
            cells.append(_raw(scores.get(f"{e}/{m}")).rjust(c))
        lines.append("  ".join([e.ljust(width)] + cells))
    return "\n".join(lines)


def _controlled_table(scores: Mapping[str, float | None], explainers: Sequence[str], directions: Mapping[str, bool | None], title: str) -> str:
    """:func:`format_scores_table`'s ``layout="controlled"``."""
    metrics = list(directions)
    controlled = {m: any(f"{e}/{m}/gain" in scores for e in explainers) for m in metrics}
    heads = [f"{m} gain ↑" if controlled[m] else _head(m, directions[m]) for m in metrics]
    width = _first_column_width(explainers)

    def cell(e: str, m: str) -> str:
        if not controlled[m]:
            return _raw(scores.get(f"{e}/{m}"))
        g = scores.get(f"{e}/{m}/gain")
        if g is None or math.isnan(g):
            return "—"
        lo, hi, win = (scores.get(f"{e}/{m}/{k}") for k in ("gain_ci_low", "gain_ci_high", "win_rate"))
        half = "" if lo is None or hi is None else f" ± {max(g - lo, hi - g):.3f}"
        rate = "" if win is None else f"  {win:.0%}"
        return f"{g:+.3f}{half}{rate}"

    rows = [[cell(e, m) for m in metrics] for e in explainers]
    cols = [max([len(h)] + [len(r[j]) for r in rows]) for j, h in enumerate(heads)]
    title = title + (" (gain over a random order ± 95% CI; win rate)" if any(controlled.values()) else "")
    lines = [title, "  ".join(["explainer".ljust(width)] + [h.ljust(c) for h, c in zip(heads, cols)]).rstrip()]
    for e, r in zip(explainers, rows):
        lines.append("  ".join([e.ljust(width)] + [v.ljust(c) for v, c in zip(r, cols)]).rstrip())
    randoms = [f"{m} {scores[f'{m}/random']:.4f}" for m in metrics if scores.get(f"{m}/random") is not None]
    if randoms:
        lines.append("random-order control (raw): " + ", ".join(randoms))
    return "\n".join(lines)


#: :func:`format_scores_table` with ``layout="controlled"`` (the name of pl_saliency 0.2's first release)
format_controlled_table = functools.partial(format_scores_table, layout="controlled")
