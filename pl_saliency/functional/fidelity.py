r"""DANCE's evaluation measures (Lu, Guo, Xing & Noble, ICML 2021, Section 4; SEEDS.md §3.7).

**Fidelity** (:func:`dance_fidelity`, after Dabkowski & Gal 2017), **lower is better**:

.. math::  SF(E, x) = -\log \frac{F_c((E - \bar E) \circ x)}{F_c(x)}

``F_c`` is the softmax probability of class ``c`` (``target``: the predicted class in the paper),
``E`` the map after the paper's post-processing (``|.|``, channel maximum, winsorizing at the 95th
percentile, rescaling to [0, 1]; ``postprocess=False`` takes ``E`` as given), ``Ē`` its mean over the
pixels of the sample, and ``∘`` the element-wise product broadcast over the colour channels. The
mean is subtracted so that the trivial map ``E ≡ 1`` gives a zero input. Where we differ: the text we
read had the formula partly garbled; the reading above (mean-centred numerator, ``F_c(x)`` in the
denominator) is the reconstruction of SEEDS.md §3.7, and the multiplication happens in the model's
input space (the paper's inputs were images; for normalised inputs 0 is the dataset mean).

**Sensitivity** (:func:`sensitivity_ratio`, Alvarez-Melis & Jaakkola 2018), **lower is better**:
``||E(x) - E(x^)||_2 / ||x - x^||_2`` per sample, with ``x^`` an attacked input
(:mod:`pl_saliency.analysis.interpretation_attacks`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from pl_saliency.functional.decoy import dance_postprocess
from pl_saliency.utils import check_inputs
from pl_saliency.utils import check_model
from pl_saliency.utils import check_positive_int
from pl_saliency.utils import check_saliency
from pl_saliency.utils import check_target
from pl_saliency.utils import class_scores
from pl_saliency.utils import eval_mode
from pl_saliency.utils import model_logits


def dance_map(saliency: Tensor, inputs: Tensor) -> Tensor:
    """The paper's post-processing of any map: ``|.|``, maximum over channels, winsorize at 95 %,
    rescale to [0, 1]; (N, 1, H, W)."""
    sal = check_saliency(saliency.abs() if isinstance(saliency, Tensor) else saliency, inputs, reduce="max")
    return dance_postprocess(sal)


def dance_fidelity(
    model: Callable[[Tensor], Any],
    inputs: Tensor,
    saliency: Tensor,
    target: Tensor,
    *,
    postprocess: bool = True,
    chunk_size: int = 64,
    output_transform: Callable[[Any], Tensor] | None = None,
) -> Tensor:
    """Per-sample (N,) DANCE fidelity ``-log(F_c((E - mean E) * x) / F_c(x))``; **lower is better**
    (see the module docstring).

    Example:
        >>> import torch
        >>> from pl_saliency.functional.fidelity import dance_fidelity
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
        >>> x = torch.ones(1, 1, 2, 2)
        >>> dance_fidelity(model, x, torch.ones(1, 1, 2, 2), torch.tensor([0]), postprocess=False).shape
        torch.Size([1])
    """
    check_model(model)
    inputs = check_inputs(inputs)
    target = check_target(target, inputs.shape[0]).to(inputs.device)
    chunk_size = check_positive_int("chunk_size", chunk_size)
    if not isinstance(postprocess, bool):
        raise TypeError(f"Argument `postprocess` must be a bool, but got {type(postprocess).__name__} {postprocess!r}.")
    e = dance_map(saliency, inputs) if postprocess else check_saliency(saliency, inputs)
    e = e.to(inputs.dtype)
    centred = e - e.mean(dim=(1, 2, 3), keepdim=True)
    masked = centred * inputs
    out = []
    with eval_mode(model), torch.no_grad():
        for start in range(0, inputs.shape[0], chunk_size):
            sl = slice(start, start + chunk_size)
            p = class_scores(model_logits(model, inputs[sl], output_transform), target[sl], "probability")
            q = class_scores(model_logits(model, masked[sl], output_transform), target[sl], "probability")
            out.append(-(torch.log(q.double()) - torch.log(p.double())))
    return torch.cat(out)


def sensitivity_ratio(saliency: Tensor, saliency_adv: Tensor, inputs: Tensor, inputs_adv: Tensor) -> Tensor:
    """Per-sample (N,) ``||E(x) - E(x^)||_2 / ||x - x^||_2``; **lower is better**. Post-process both
    maps alike first (:func:`dance_map`); samples with ``x^ = x`` give NaN.

    Example:
        >>> import torch
        >>> from pl_saliency.functional.fidelity import sensitivity_ratio
        >>> e, x = torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2)
        >>> sensitivity_ratio(e, e + 0.5, x, x + 0.25).tolist()
        [2.0]
    """
    for name, t in (("saliency", saliency), ("saliency_adv", saliency_adv), ("inputs", inputs), ("inputs_adv", inputs_adv)):
        if not isinstance(t, Tensor) or t.ndim != 4:
            got = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
            raise ValueError(f"Argument `{name}` must be a (N, C, H, W) tensor, but got {got}.")
    if saliency.shape != saliency_adv.shape or inputs.shape != inputs_adv.shape or saliency.shape[0] != inputs.shape[0]:
        raise ValueError(
            "Arguments `saliency`/`saliency_adv` and `inputs`/`inputs_adv` must match pairwise and in batch size, but got "
            f"{tuple(saliency.shape)}, {tuple(saliency_adv.shape)}, {tuple(inputs.shape)}, {tuple(inputs_adv.shape)}."
        )
    num = (saliency - saliency_adv).flatten(1).double().norm(dim=1)
    den = (inputs - inputs_adv).flatten(1).double().norm(dim=1)
    return torch.where(den > 0, num / torch.where(den > 0, den, torch.ones_like(den)), torch.nan)
