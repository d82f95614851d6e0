"""Adversarial reliability (Valle, Pimentel & Veloso, IJCNN 2020) as torchmetrics ``Metric`` classes
(state and sync only: ``update`` scores a batch with the public functional twin,
:mod:`pl_saliency.functional.adversarial`, with ``reduction="none"``)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from pl_saliency._keywords import keyword_only
from pl_saliency._keywords import options_of
from pl_saliency.functional.adversarial import adversarial_reliability
from pl_saliency.functional.adversarial_base import _check_confined
from pl_saliency.functional.adversarial_base import check_baselines
from pl_saliency.functional.adversarial_base import check_fractions
from pl_saliency.functional.flip_budget import adversarial_flip_budget
from pl_saliency.functional.flip_budget import check_flip_options
from pl_saliency.metrics.base import FunctionalMetric


class AdversarialReliability(FunctionalMetric):
    r"""Adversarial reliability of saliency maps (Valle, Pimentel & Veloso, IJCNN 2020); **higher is
    better**.

    Definition (our top-k formulation; the paper's full text was not available, see
    :mod:`pl_saliency.functional.adversarial` for the provenance and where we differ from the
    authors' code): for each fraction ``q`` of ``fractions`` (default 1, 5, 10, 20, 50 %), an
    untargeted PGD attack (default L∞, ``eps=8/255`` for inputs in [0, 1], 10 iterations of
    ``2.5 eps / iterations``, no random start) confined to the ``max(1, floor(qF + 1/2))`` most
    relevant of the F features (ranked by ``|R|``; ``rank="signed"`` for the signed map) changes the
    outcome by ``f_c(x) - f_c(x + delta_q)`` (``outcome="drop"``, softmax probability of the target
    class, or its logit with ``score="logit"``) or by ``1[prediction changed]`` (``outcome="flip"``).
    A sample's score is the mean change over the sweep; the metric is the mean over samples (NaN
    scores excluded). The same budget confined to the least relevant (``"least"``) and to random
    (``"random"``) features of the same count is computed alongside, so that the number can be read:
    a reliable map beats ``"random"``, which beats ``"least"``.

    As input to ``update`` the metric accepts:

    - ``model``: callable (N, C, H, W) -> logits (N, K); not registered as a sub-module
    - ``inputs``: (N, C, H, W) float images in the model's input space (``eps`` is in its units)
    - ``saliency``: (N, 1, H, W) or (N, C, H, W) maps (ranked by ``|R|`` unless ``rank="signed"``)
    - ``target``: (N,) int64 class indices (the attacked class)
    - ``context``: optional :class:`~pl_saliency.perturbation.BatchContext` (results are memoized)

    As output of ``compute`` the metric returns the mean score of the maps, a scalar tensor.
    ``curve()`` / ``curve_x()``: the maps' mean outcome-change curve (K + 1,) over the fraction of
    features attacked (starting at 0, change 0). ``curves()``: the mean curves of the maps and of
    every baseline (dict). ``compute_baselines()``: the baselines' mean scores (dict).

    Example:
        >>> import torch
        >>> from pl_saliency.metrics import AdversarialReliability
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
        >>> _ = torch.manual_seed(0)
        >>> metric = AdversarialReliability(fractions=(0.25, 0.5), eps=0.1, iterations=2, bounds=(0.0, 1.0))
        >>> x, y = torch.rand(2, 1, 4, 4), torch.tensor([0, 2])
        >>> metric.update(model, x, torch.rand(2, 1, 4, 4), y)
        >>> metric.compute().shape, metric.curve().shape, sorted(metric.compute_baselines())
        (torch.Size([]), torch.Size([3]), ['least', 'random'])
    """

    function = adversarial_reliability
    call_options = {"return_curves": True}
    passes_context = True
    higher_is_better: bool = True
    plot_lower_bound: float = 0.0
    plot_upper_bound: float = 1.0

    curve_sum: Tensor
    fractions: tuple[float, ...]
    baselines: tuple[str, ...]

    @keyword_only
    @options_of(adversarial_reliability)
    def __init__(self, options: dict[str, Any], **settings: Any) -> None:
        super().__init__(**settings)
        options["fractions"] = check_fractions(options["fractions"])
        options["eps"], options["iterations"], options["step_size"], options["chunk_size"] = _check_confined(
            options["eps"], options["iterations"], options["step_size"], options["norm"], options["random_start"],
            outcome=options["outcome"], score=options["score"], rank=options["rank"], patch_size=options["patch_size"],
            tie_break=options["tie_break"], chunk_size=options["chunk_size"], steps=options.pop("steps"),
            owner="AdversarialReliability",
        )  # fmt: skip
        options["baselines"] = check_baselines(options["baselines"])
        self._set_options(**options)
        if self.outcome == "drop" and self.score == "logit":  # logits are unbounded (torchmetrics guards these names)
            object.__setattr__(self, "plot_lower_bound", None)
            object.__setattr__(self, "plot_upper_bound", None)
        sets = 1 + len(self.baselines)
        zeros = torch.zeros(sets, len(self.fractions) + 1, dtype=torch.float64)
        self.add_state("curve_sum", zeros, dist_reduce_fx="sum")
        self._x: Tensor | None = None

    def _definition_items(self) -> dict[str, Any]:
        return {
            "fractions": list(self.fractions),
            "eps": self.eps,
            "iterations": self.iterations,
            "step_size": self.step_size,
            "norm": self.norm,
            "random_start": self.random_start,
            "bounds": None if self.bounds is None else repr(self.bounds),
            "outcome": self.outcome,
            "score": self.score,
            "baselines": list(self.baselines),
            "rank": self.rank,
            "patch_size": self.patch_size,
            "tie_break": self.tie_break,
        }

    def _scores(self, model: Any, inputs: Tensor, saliency: Tensor, target: Tensor, options: dict[str, Any]) -> Tensor:
        _, res = super()._scores(model, inputs, saliency, target, options)
        self._x = res.x
        finite = torch.isfinite(res.scores["relevant"])
        stacked = torch.stack([res.curves[s] for s in ("relevant", *self.baselines)])  # (S, N, K + 1)
        self.curve_sum += stacked[:, finite].sum(dim=1).to(self.curve_sum)
        return res.scores["relevant"]

    def _mean_curves(self) -> Tensor:
        self.compute()  # triggers the process sync of the states
        if self.total == 0:
            raise RuntimeError(f"`{type(self).__name__}` has no curve before any `update`.")
        return (self.curve_sum / self.total).float()

    def curve(self) -> Tensor:
        """The maps' mean outcome-change curve (K + 1,), synced across processes."""
        return self._mean_curves()[0]

    def curves(self) -> dict[str, Tensor]:
        """Mean curves (K + 1,) of the maps (``"relevant"``) and of every baseline."""
        mean = self._mean_curves()
        return {s: mean[i] for i, s in enumerate(("relevant", *self.baselines))}

    def compute_baselines(self) -> dict[str, Tensor]:
        """Mean scores of the baselines (``"least"``, ``"random"``), the numbers to read ``compute()`` by."""
        mean = self._mean_curves()
        return {s: mean[i + 1, 1:].mean() for i, s in enumerate(self.baselines)}

    def curve_x(self) -> Tensor:
        """Fraction of features attacked at each curve point (K + 1,), starting at 0."""
        if self._x is not None:
            return self._x.float()
        return torch.tensor((0.0, *self.fractions), dtype=torch.float32)


class AdversarialFlipBudget(FunctionalMetric):
    r"""Flip budget of Valle, Pimentel & Veloso's code (IJCNN 2020); **lower is better**.

    Definition (see :mod:`pl_saliency.functional.flip_budget`): the smallest L1 budget ``sigma`` of
    the one-step perturbation ``x + sigma * (w / ||w||_1) * sign(grad)`` (``w`` the preprocessed map:
    ``|R|`` min-max scaled under ``protocol="package"``, the authors' 8-bit ``final_map`` under
    ``protocol="authors"``; ``grad`` the gradient of the cross-entropy of ``target``) at which the
    prediction changes, searched on the grid ``j * max_budget / resolution`` (default the
    authors' integers up to 10000; samples that never flip score ``max_budget * (1 + 1/resolution)``).
    The metric is the mean over samples. The baselines (``"inverse"`` = ``1 - R``, ``"shuffled"``,
    ``"inverse_shuffled"``: smallest budget over ``shuffles`` random pixel permutations) are averaged
    alongside: ``compute_baselines()``; ``compute_linf()`` is the mean ``‖δ‖∞`` at the flip of the
    map (samples that flip; the L1 budget rewards sparse maps, whose flip needs larger pixel changes).
    Budgets depend on image size and input scale: compare them within one setting.

    Update protocol as :class:`AdversarialReliability`.

    Example:
        >>> import torch
        >>> from pl_saliency.metrics import AdversarialFlipBudget
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
        >>> _ = torch.manual_seed(0)
        >>> metric = AdversarialFlipBudget(max_budget=100.0, resolution=100, shuffles=2)
        >>> x = torch.rand(2, 1, 4, 4)
        >>> metric.update(model, x, torch.rand(2, 1, 4, 4), model(x).argmax(1))
        >>> metric.compute().shape, sorted(metric.compute_baselines())
        (torch.Size([]), ['inverse', 'inverse_shuffled', 'shuffled'])
    """

    function = adversarial_flip_budget
    call_options = {"return_baselines": True, "return_linf": True}
    higher_is_better: bool = False
    plot_lower_bound: float = 0.0

    baseline_sum: Tensor
    linf_sum: Tensor
    linf_count: Tensor
    baselines: tuple[str, ...]
    max_budget: float
    resolution: int

    @keyword_only
    @options_of(adversarial_flip_budget, drop=("reduction", "return_baselines", "return_linf"))
    def __init__(self, options: dict[str, Any], **settings: Any) -> None:
        super().__init__(**settings)
        names = ("max_budget", "resolution", "baselines", "shuffles", "chunk_size")
        checked = check_flip_options(
            *(options[name] for name in names), protocol=options["protocol"], preprocess=options["preprocess"],
            search=options["search"], shuffle=options["shuffle"],
        )  # fmt: skip
        options.update(zip(names, checked))
        self._set_options(**options)
        object.__setattr__(self, "plot_upper_bound", self.max_budget * (1 + 1 / self.resolution))
        self.add_state("baseline_sum", torch.zeros(len(self.baselines), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("linf_sum", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("linf_count", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def _definition_items(self) -> dict[str, Any]:
        return {
            "max_budget": self.max_budget,
            "resolution": self.resolution,
            "baselines": list(self.baselines),
            "shuffles": self.shuffles,
            "protocol": self.protocol,
            "preprocess": self.preprocess,
            "search": self.search,
            "shuffle": self.shuffle,
        }

    def _scores(self, model: Any, inputs: Tensor, saliency: Tensor, target: Tensor, options: dict[str, Any]) -> Tensor:
        _, budget, linf = super()._scores(model, inputs, saliency, target, options)
        finite = torch.isfinite(budget["relevant"])
        for i, s in enumerate(self.baselines):
            self.baseline_sum[i] += budget[s][finite].sum().to(self.baseline_sum)
        flipped = torch.isfinite(linf["relevant"])
        self.linf_sum += linf["relevant"][flipped].sum().to(self.linf_sum)
        self.linf_count += flipped.sum().to(self.linf_count)
        return budget["relevant"]

    def compute_linf(self) -> Tensor:
        """Mean ``‖δ‖∞`` at the flip of the maps, over the samples that flip (NaN if none did)."""
        self.compute()
        if self.linf_count == 0:
            return torch.tensor(float("nan"))
        return (self.linf_sum / self.linf_count).float()

    def compute_baselines(self) -> dict[str, Tensor]:
        """Mean budgets of the baselines over the samples whose map budget is finite."""
        self.compute()
        if self.total == 0:
            return {s: torch.tensor(float("nan")) for s in self.baselines}
        return {s: (self.baseline_sum[i] / self.total).float() for i, s in enumerate(self.baselines)}
