r"""Sliding-patch occlusion, SP / SP-G (Zeiler & Fergus 2014; Agarwal & Nguyen, ACCV 2020).

Two rules turn the window scores into a map (``rule=``):

* ``"mean"`` (default, Captum's ``Occlusion``): windows at ``0, S, 2S, …`` with the last one cut at the
  border; every pixel gets the mean score drop of the windows covering it.
* ``"window"`` (the seed code, ``formal_SP_single_image.py``): windows as scikit-image's
  ``view_as_windows(…, step=S)`` places them, ``(H − P) // S + 1`` per side, none cut; one value per
  window (``window_scores``), the (n, n) grid resized to the image with scikit-image's linear
  ``resize`` as the seed code's ``formal_plot_figure.py`` does.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from pl_saliency._keywords import keyword_only
from pl_saliency.explainers.removal_base import RemovalExplainer
from pl_saliency.explainers.removal_base import _check_fits
from pl_saliency.explainers.removal_base import _check_pair
from pl_saliency.explainers.removal_base import mirror_interpolation
from pl_saliency.utils import check_choice

OCCLUSION_RULES: tuple[str, ...] = ("mean", "window")


def window_starts(size: int, patch: int, stride: int) -> Tensor:
    """Start offsets of the sliding windows along one side, as Captum's ``Occlusion``:
    ``ceil((size - patch) / stride) + 1`` windows at ``0, stride, 2 stride, ...``; the last one may
    run past the border and is cut there, so every position is covered."""
    count = math.ceil((size - patch) / stride) + 1
    return torch.arange(count) * stride


def seed_window_starts(size: int, patch: int, stride: int) -> Tensor:
    """Start offsets of the seed code's windows along one side (scikit-image's ``view_as_windows``,
    ``formal_SP_single_image.py`` l. 160): ``(size - patch) // stride + 1`` windows at ``0, stride, …``,
    none running past the border (the last ``(size - patch) % stride`` positions may be uncovered)."""
    return torch.arange((size - patch) // stride + 1) * stride


class SlidingPatchOcclusion(RemovalExplainer):
    r"""Sliding-patch occlusion, SP / SP-G (Zeiler & Fergus 2014; Agarwal & Nguyen 2020).

    For every window :math:`W_k` (``patch_size``, moved by ``stride``, all channels), the score drop
    :math:`d_k = s_c(x) - s_c(x_{W_k \leftarrow \text{filler}})`. Higher = removing it hurts the class
    more. Signed; ``abs=False``. How the drops become a map is ``rule``:

    * ``"mean"`` (default): the map at pixel p is the mean of :math:`d_k` over the windows covering p —
      Captum's ``Occlusion`` with ``sliding_window_shapes=(C, P, P)``, ``strides=S`` and a constant
      baseline gives the same map (windows at ``0, S, 2S, ...``, the last cut at the border);
      ``stride`` may not exceed ``patch_size``.
    * ``"window"``: the seed code's rule (``formal_SP_single_image.py``, ``occlusion_analysis.explain``
      l. 32-88): windows at ``0, S, …`` with ``(H − P) // S + 1`` per side, none cut
      (:func:`seed_window_starts`); one value per window, :meth:`window_scores` returns that
      (N, 1, n_rows, n_cols) grid (the seed code's ``np.reshape(…, (n, n))``, row-major). The map is
      the grid resized to H × W exactly as scikit-image's ``resize(grid, (H, W))`` (linear, mirrored
      borders; ``formal_plot_figure.py`` l. 50), so a window's value is not spread by averaging.

    Defaults: ``patch_size=29`` (the paper's figure; the seed code's default is 77, its demo 41, for
    224² inputs), ``stride=3``, ``filler="zeros"`` (0 in the model's normalized input space, i.e. the
    dataset-mean gray of the seed code's ``data * image``), ``score="probability"``.
    :meth:`generative` gives SP-G with your inpainter; :meth:`telea` the OpenCV-Telea variant.

    Cost: ``N · (1 + windows)`` model evaluations, ``chunk_size`` per call; every window of a chunk goes
    in one call.

    Example: one for all four removal explainers, in :mod:`pl_saliency.explainers.removal`.
    """

    default_name = "occlusion"

    @keyword_only
    def __init__(self, *, patch_size: int | tuple[int, int] = 29, stride: int | tuple[int, int] = 3, rule: str = "mean", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.patch_size = _check_pair("patch_size", patch_size)
        self.stride = _check_pair("stride", stride)
        check_choice("rule", rule, OCCLUSION_RULES)
        self.rule = rule
        if rule == "mean" and (self.stride[0] > self.patch_size[0] or self.stride[1] > self.patch_size[1]):
            raise ValueError(
                f"Argument `stride` {self.stride} must not exceed `patch_size` {self.patch_size} "
                "(larger strides leave pixels that no window covers), but it does; `rule='window'` allows it."
            )

    def _repr_items(self) -> str:
        rule = "" if self.rule == "mean" else f", rule={self.rule!r}"
        return f"patch_size={self.patch_size}, stride={self.stride}{rule}, {super()._repr_items()}"

    def _starts(self, h: int, w: int, device: torch.device) -> tuple[Tensor, Tensor]:
        (ph, pw), (sh, sw) = self.patch_size, self.stride
        _check_fits("patch_size", (ph, pw), (h, w))
        starts = window_starts if self.rule == "mean" else seed_window_starts
        return starts(h, ph, sh).to(device), starts(w, pw, sw).to(device)

    def _drops(self, forward: Callable[[Tensor], Tensor], x: Tensor, target: Tensor, rows0: Tensor, cols0: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Score drops (N, n_rows, n_cols) float64 of every window, and the (n_rows, H), (n_cols, W)
        coverage of the windows."""
        n, _, h, w = x.shape
        ph, pw = self.patch_size
        num = len(rows0) * len(cols0)
        r = torch.arange(h, device=x.device)
        c = torch.arange(w, device=x.device)
        covers_r = (r[None, :] >= rows0[:, None]) & (r[None, :] < rows0[:, None] + ph)  # (Wr, H)
        covers_c = (c[None, :] >= cols0[:, None]) & (c[None, :] < cols0[:, None] + pw)  # (Wc, W)
        g = self._generator(x)
        drops = torch.empty(n * num, dtype=torch.float64, device=x.device)
        with torch.no_grad():
            substrate = self._substrate(x, g)
            base = self._base_scores(forward, x, target)
            for start in range(0, n * num, self.chunk_size):
                idx = torch.arange(start, min(start + self.chunk_size, n * num), device=x.device)
                i, k = idx // num, idx % num
                removed = (covers_r[k // len(cols0)][:, :, None] & covers_c[k % len(cols0)][:, None, :]).unsqueeze(1)
                xk = self._remove(x[i], removed, None if substrate is None else substrate[i], g)
                drops[idx] = base[i] - self._scores(forward, xk, target[i])
        return drops.view(n, len(rows0), len(cols0)), covers_r, covers_c

    def window_scores(self, model: Callable[[Tensor], Any], inputs: Tensor, target: Tensor) -> Tensor:
        """The score drop of every window, (N, 1, n_rows, n_cols) float, row-major over window positions
        (with ``rule="window"``: the seed code's ``formal_SP`` heatmap before resizing). Runs under the
        explainer protocol (eval mode restored, checks as ``__call__``)."""
        from pl_saliency.explainers.base import FunctionExplainer

        holder: dict[str, Tensor] = {}

        def _keep(forward: Callable[[Tensor], Tensor], x: Tensor, t: Tensor) -> Tensor:
            rows0, cols0 = self._starts(x.shape[2], x.shape[3], x.device)
            holder["grid"] = self._drops(forward, x.detach(), t, rows0, cols0)[0]
            return torch.zeros(x.shape[0], 1, *x.shape[-2:], dtype=x.dtype, device=x.device)

        FunctionExplainer(_keep, output_transform=self.output_transform)(model, inputs, target)
        return holder["grid"].unsqueeze(1).to(inputs.dtype)

    def _attribute(self, model: Any, forward: Callable[[Tensor], Tensor], inputs: Tensor, target: Tensor) -> Tensor:
        x = inputs.detach()
        _, _, h, w = x.shape
        rows0, cols0 = self._starts(h, w, x.device)
        drops, covers_r, covers_c = self._drops(forward, x, target, rows0, cols0)
        if self.rule == "window":
            up_r = mirror_interpolation(len(rows0), h, x.device)  # (H, n_rows)
            up_c = mirror_interpolation(len(cols0), w, x.device)  # (W, n_cols)
            return (up_r @ drops @ up_c.T).unsqueeze(1).to(x.dtype)
        cr, cc = covers_r.double(), covers_c.double()
        total = cr.T @ drops @ cc  # (N, H, W): sum of the drops of the windows covering each pixel
        count = cr.sum(0)[:, None] * cc.sum(0)[None, :]  # windows per pixel
        return (total / count).unsqueeze(1).to(x.dtype)


__all__ = ["OCCLUSION_RULES", "SlidingPatchOcclusion", "seed_window_starts", "window_starts"]
