"""Faithfulness correlation as a torchmetrics ``Metric`` class (state and sync only; the math is in
:mod:`pl_saliency.functional.faithfulness`)."""

from __future__ import annotations

from typing import Any

from pl_saliency._keywords import keyword_only
from pl_saliency._keywords import options_of
from pl_saliency.functional.faithfulness import DEFAULT_RUNS
from pl_saliency.functional.faithfulness import DEFAULT_SUBSET_SIZE
from pl_saliency.functional.faithfulness import faithfulness_correlation
from pl_saliency.metrics.base import FunctionalMetric
from pl_saliency.perturbation.engine import check_speed_options
from pl_saliency.perturbation.fillers import Filler
from pl_saliency.perturbation.fillers import get_filler
from pl_saliency.utils import SCORES
from pl_saliency.utils import check_choice
from pl_saliency.utils import check_positive_int


class FaithfulnessCorrelation(FunctionalMetric):
    r"""Faithfulness correlation (Bhatt, Weller & Moura, IJCAI 2020); **higher is better**.

    .. math::

        \mu_F = \operatorname{corr}_{r \le R}\Big( \sum_{j \in S_r} a_j,\; f_c(x) - f_c(x_{[x_{S_r} = \bar x_{S_r}]}) \Big)

    per image (Pearson over ``n_runs`` random subsets :math:`S_r` of ``subset_size`` spatial
    positions, replaced by the ``filler``), averaged over images; ``f_c`` the target's logit (default,
    as Quantus) or probability. Range [-1, 1]. Images whose correlation is undefined (a constant
    attribution sum or score drop) are counted in ``nan_count``, not in the mean.

    Defaults as Quantus ``FaithfulnessCorrelation`` (100 runs, subsets of 224 features, logits);
    where we differ (features are positions, not channel values; ``filler="zeros"`` rather than the
    image minimum; subsets from ``generator``, not the global NumPy RNG): see
    :mod:`pl_saliency.functional.faithfulness`. The same subsets are drawn at every ``update`` unless a
    ``generator`` is passed (its stream then moves on).

    As input to ``update``: ``model``, ``inputs`` (N, C, H, W), ``saliency`` (N, 1, H, W) or
    (N, C, H, W), ``target`` (N,), ``context`` (unused). ``compute`` returns the mean correlation.

    Speed options: ``chunk_size`` (an int, or ``"auto"`` with ``memory_budget_mb``; never changes the
    numbers) and ``amp_dtype`` (autocast scoring; changes them slightly).

    Example:
        >>> import torch
        >>> from pl_saliency.metrics import FaithfulnessCorrelation
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
        >>> x, y = torch.rand(2, 1, 4, 4), torch.tensor([0, 2])
        >>> metric = FaithfulnessCorrelation(n_runs=10, subset_size=4)
        >>> metric.update(model, x, model[1].weight[y].detach().view(2, 1, 4, 4) * x, y)  # exact for a linear model
        >>> metric.compute()
        tensor(1.)
    """

    higher_is_better: bool = True
    plot_lower_bound: float = -1.0
    plot_upper_bound: float = 1.0
    function = faithfulness_correlation

    filler: Filler

    @keyword_only
    @options_of(faithfulness_correlation, drop=("reduction", "subsets"), n_runs=DEFAULT_RUNS, subset_size=DEFAULT_SUBSET_SIZE)
    def __init__(self, options: dict[str, Any], **settings: Any) -> None:
        super().__init__(**settings)
        n_runs, subset_size = options["n_runs"], options["subset_size"]  # None: the default, as the function
        options["n_runs"] = DEFAULT_RUNS if n_runs is None else check_positive_int("n_runs", n_runs, minimum=2)
        options["subset_size"] = DEFAULT_SUBSET_SIZE if subset_size is None else check_positive_int("subset_size", subset_size)
        options["filler"] = get_filler(options["filler"])
        check_positive_int("patch_size", options["patch_size"])
        check_choice("score", options["score"], SCORES)
        options["chunk_size"], options["memory_budget_mb"], options["amp_dtype"] = check_speed_options(
            options["chunk_size"], options["memory_budget_mb"], options["amp_dtype"]
        )
        self._set_options(**options)

    def _definition_items(self) -> dict[str, Any]:
        items: dict[str, Any] = {
            "n_runs": self.n_runs,
            "subset_size": self.subset_size,
            "filler": self.filler.key,
            "patch_size": self.patch_size,
            "score": self.score,
        }
        if self.amp_dtype is not None:
            items["amp_dtype"] = str(self.amp_dtype).replace("torch.", "")
        return items
