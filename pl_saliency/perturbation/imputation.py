r"""Mask-dependent fillers: imputations that fill removed pixels from the kept ones.

* :class:`NoisyLinear` — ROAD's noisy linear imputation (Rong, Leemann, Borisov, Kasneci & Kasneci,
  "A Consistent and Efficient Evaluation Strategy for Attribution Methods", ICML 2022).
* :class:`Telea` — OpenCV's fast-marching inpainting (Telea, J. Graphics Tools 2004).
* :class:`InpainterFill` — any generative inpainter ``(inputs, mask) -> inputs`` (Agarwal & Nguyen,
  "Explaining image classifiers by removing input features using generative models", ACCV 2020).

All three have ``mask_dependent = True`` and implement ``fill``: called, they check the inputs and the
mask once (:class:`~pl_saliency.perturbation.filler_base.Filler`); the engine calls ``fill`` per chunk
with the chunk's images and its removal mask (N, 1, H, W) bool, ``True`` = removed, built from inputs
it checked itself. Kept pixels are returned unchanged.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from pl_saliency._keywords import keyword_only
from pl_saliency.perturbation.filler_base import Filler
from pl_saliency.perturbation.filler_base import _check_number
from pl_saliency.perturbation.filler_base import draw
from pl_saliency.utils import check_choice
from pl_saliency.utils import check_positive_int
from pl_saliency.utils import eval_mode

SOLVERS: tuple[str, ...] = ("auto", "banded", "direct", "cg")
MASK_CONVENTIONS: tuple[str, ...] = ("removed", "kept")

# ROAD's weights (tleemann/road_evaluation imputations.py, copied into pytorch_grad_cam.metrics.road):
# 1/6 for the 4 direct neighbours, 1/12 for the 4 diagonal ones. (dy, dx) -> weight.
_WEIGHTS: dict[int, tuple[tuple[tuple[int, int], float], ...]] = {
    8: tuple(
        ((dy, dx), 1 / 6 if dy == 0 or dx == 0 else 1 / 12)
        for dy in (-1, 0, 1)
        for dx in (-1, 0, 1)
        if (dy, dx) != (0, 0)
    ),
    4: (((-1, 0), 0.25), ((1, 0), 0.25), ((0, -1), 0.25), ((0, 1), 0.25)),
}


def _stencil(u: Tensor, kernel: Tensor) -> Tensor:
    """Weighted sum of each position's in-image neighbours (zero outside the image), per channel."""
    n, c, h, w = u.shape
    out = F.conv2d(F.pad(u.reshape(n * c, 1, h, w), (1, 1, 1, 1)), kernel.view(1, 1, 3, 3))
    return out.reshape(n, c, h, w)


def _solve_cg(inputs: Tensor, removed: Tensor, neighbors: int, tol: float, max_iter: int) -> tuple[Tensor, float]:
    """Conjugate gradients on the inputs' device, matrix-free: one SPD system per (image, channel),
    all of them advanced together (each with its own step sizes, so no system waits on another).

    Unknowns u on the removed positions R; for p in R:
    ``s_p u_p - sum_{q in R} w_pq u_q = sum_{q not in R} w_pq x_q``, with ``s_p`` the sum of the weights
    of p's in-image neighbours. Returns the filled images (float64/32) and the worst relative residual.
    """
    dtype = torch.float32 if inputs.device.type == "mps" else torch.float64
    v = inputs.to(dtype)
    m = removed.to(dtype)  # (N, 1, H, W)
    kernel = torch.zeros(3, 3, dtype=dtype, device=inputs.device)
    for (dy, dx), wt in _WEIGHTS[neighbors]:
        kernel[dy + 1, dx + 1] = wt
    s = _stencil(torch.ones_like(m[:1]), kernel)  # (1, 1, H, W)

    def apply(u: Tensor) -> Tensor:
        return m * (s * u - _stencil(m * u, kernel))

    b = m * _stencil((1 - m) * v, kernel)
    x = torch.zeros_like(v)
    r = b.clone()
    p = r.clone()
    rs = (r * r).sum(dim=(2, 3), keepdim=True)
    target = (tol * tol) * (b * b).sum(dim=(2, 3), keepdim=True)
    zero = torch.zeros((), dtype=dtype, device=inputs.device)
    converged = False
    for it in range(max_iter + 1):
        if it % 8 == 0 or it == max_iter:  # a device sync: not every iteration
            if bool((rs <= target).all()):
                converged = True
                break
            if it == max_iter:
                break
        ap = apply(p)
        pap = (p * ap).sum(dim=(2, 3), keepdim=True)
        alpha = torch.where(pap > 0, rs / torch.where(pap > 0, pap, 1), zero)
        x = x + alpha * p
        r = r - alpha * ap
        rs_new = (r * r).sum(dim=(2, 3), keepdim=True)
        beta = torch.where(rs > 0, rs_new / torch.where(rs > 0, rs, 1), zero)
        p = r + beta * p
        rs = rs_new
    worst = 0.0
    if not converged:
        rel = (rs / torch.where(target > 0, target, 1)).sqrt() * tol
        worst = float(rel.max())
    return torch.where(removed, x, v), worst


def _solve_direct(inputs: Tensor, removed: Tensor, neighbors: int) -> Tensor:
    """One sparse system for the whole chunk (block-diagonal over images, channels as right-hand
    sides), assembled with vectorized index arithmetic and solved by SuperLU (scipy) on the CPU."""
    try:
        import scipy.sparse as sp
        import scipy.sparse.linalg as spla
    except ImportError as err:  # pragma: no cover - scipy comes with the test extras
        raise ImportError("`NoisyLinear(solver='direct')` needs scipy: `pip install scipy`, or use solver='cg'.") from err
    x = inputs.detach().to("cpu", torch.float64).numpy()
    rm = removed[:, 0].detach().cpu().numpy()
    n, c, h, w = x.shape
    out = x.copy()
    rm = rm & ~rm.all(axis=(1, 2), keepdims=True)  # a fully removed image has no solution: set by the caller
    b_i, y_i, x_i = np.nonzero(rm)
    num = b_i.size
    if num == 0:
        return torch.from_numpy(out)
    vidx = np.full(rm.shape, -1, dtype=np.int64)
    vidx[b_i, y_i, x_i] = np.arange(num)
    diag = np.zeros(num)
    rhs = np.zeros((num, c))
    rows, cols, vals = [], [], []
    for (dy, dx), wt in _WEIGHTS[neighbors]:
        ny, nx = y_i + dy, x_i + dx
        ids = np.nonzero((ny >= 0) & (ny < h) & (nx >= 0) & (nx < w))[0]
        bb, yy, xx = b_i[ids], ny[ids], nx[ids]
        diag[ids] += wt
        gone = rm[bb, yy, xx]
        rows.append(ids[gone])
        cols.append(vidx[bb[gone], yy[gone], xx[gone]])
        vals.append(np.full(int(gone.sum()), -wt))
        kept = ~gone
        rhs[ids[kept]] += wt * x[bb[kept], :, yy[kept], xx[kept]]  # ids are unique within one offset
    matrix = sp.csc_matrix(
        (np.concatenate(vals + [diag]), (np.concatenate(rows + [np.arange(num)]), np.concatenate(cols + [np.arange(num)]))),
        shape=(num, num),
    )
    sol = np.asarray(spla.spsolve(matrix, rhs)).reshape(num, c)
    out[b_i, :, y_i, x_i] = sol
    return torch.from_numpy(out)


_BLAS_CONTROLLER: Any = None


def _single_thread_blas() -> Any:
    """Keep the BLAS under LAPACK's band Cholesky to one thread (threadpoolctl, when installed): for
    bands this narrow a second BLAS thread only adds synchronisation, and on a loaded machine it made
    a solve up to 10x slower (measured in benchmarks/results.md). Without threadpoolctl: a no-op."""
    global _BLAS_CONTROLLER
    if _BLAS_CONTROLLER is None:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
            _BLAS_CONTROLLER = False
        else:
            _BLAS_CONTROLLER = ThreadpoolController()
    if _BLAS_CONTROLLER is False:
        return nullcontext()
    return _BLAS_CONTROLLER.limit(limits=1, user_api="blas")


_KEPT = -(2**62)  # the index of a kept cell in `_solve_banded`'s index grid: far below any unknown's


@functools.lru_cache(maxsize=32)
def _grid(h: int, w: int, neighbors: int) -> tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-shape tables of the zero-padded ``(h + 2) × (w + 2)`` grid, computed once per shape (read-only):
    ``(area, padpos, diagonal, offsets, later, later_weights)``: ``padpos`` (h·w,) the padded flat
    position of each pixel (row-major); ``diagonal`` (h·w,) the sum of each pixel's in-image neighbours'
    weights; ``offsets`` (k, 2) the flat offset and weight of each neighbour; ``later`` (l,) and
    ``later_weights`` (l, 1) those of the neighbours after the pixel in row-major order."""
    row, area = w + 2, (h + 2) * (w + 2)
    offsets = np.array([(dy * row + dx, wt) for (dy, dx), wt in _WEIGHTS[neighbors]])
    is_later = offsets[:, 0] > 0
    later = offsets[is_later, 0].astype(np.int64)
    later_weights = offsets[is_later, 1:]
    inside = np.zeros((h + 2, row))
    inside[1:-1, 1:-1] = 1.0
    padpos = (np.arange(1, h + 1)[:, None] * row + np.arange(1, w + 1)[None, :]).ravel()
    diagonal = np.zeros(h * w)
    for off, wt in offsets.tolist():
        diagonal += wt * inside.ravel()[padpos + int(off)]
    tables = (padpos, diagonal, offsets, later, later_weights)
    for t in tables:
        t.setflags(write=False)
    return (area, *tables)


#: the most float64 values of one band buffer (256 MiB): a chunk's images are solved in groups of
#: consecutive images whose bands fit (at least one image per group). At 224×224 one image's band at
#: 80 % removed is ≈ 72 MiB, so a 64-image chunk in one buffer would take ≈ 4.6 GiB.
_BAND_BUFFER_FLOATS = 32 * 2**20


def _band_groups(block: list[int], limit: int) -> list[tuple[int, int]]:
    """Runs ``(g0, g1)`` of consecutive images whose bands ``block[g0] … block[g1]`` (cumulative offsets,
    one more than images) hold at most ``limit`` values, each run at least one image long."""
    groups, g0 = [], 0
    for b in range(1, len(block)):
        if b - 1 > g0 and block[b] - block[g0] > limit:
            groups.append((g0, b - 1))
            g0 = b - 1
    groups.append((g0, len(block) - 1))
    return groups


def _solve_banded(inputs: Tensor, removed: Tensor, neighbors: int) -> Tensor:
    """Exact: per image, the system's unknowns in row-major order form a symmetric positive-definite
    band matrix (bandwidth ``kd`` = the most unknowns between a pixel and its lower-right neighbour, at
    most W + 1), factored by LAPACK's band Cholesky (``dpbsv``, lower band storage, float64) with the
    image's own ``kd`` (channels as right-hand sides). Assembly is vectorized over the whole chunk with
    flat gathers on the zero-padded grid (one index array of the unknowns, a shifted read per
    neighbour; the per-shape tables are cached) and writes every image's band, a contiguous Fortran
    block of one buffer, in one scatter; only the LAPACK calls run per image. Returns the filled
    images in the inputs' dtype and device; a fully removed image (no solution) is filled with 0."""
    from scipy.linalg import lapack

    x = inputs.detach().cpu().numpy()
    n, c, h, w = x.shape
    hw = h * w
    rm = removed.detach().cpu().numpy().reshape(n, hw)
    out = x.astype(x.dtype if x.dtype in (np.float32, np.float64) else np.float64, order="C", copy=True)
    flat = np.flatnonzero(rm)  # the unknowns, image-major then row-major
    starts = np.searchsorted(flat, np.arange(n + 1) * hw)  # each image's first unknown
    counts = np.diff(starts)
    full = counts == hw
    if full.any():
        out[full] = 0.0
        rm = rm & ~full[:, None]
        flat = np.flatnonzero(rm)
        starts = np.searchsorted(flat, np.arange(n + 1) * hw)
        counts = np.diff(starts)
    num = flat.size
    if num == 0:
        return torch.from_numpy(out).to(device=inputs.device, dtype=inputs.dtype)
    area, padpos, diagonal, offsets, later, later_weights = _grid(h, w, neighbors)
    image = np.repeat(np.arange(n), counts)  # the image of each unknown
    pixel = flat - image * hw  # its flat position in its image
    pos = image * area + padpos[pixel]  # and on the padded grid
    kept = np.zeros((c, n, h + 2, w + 2))  # the kept values, zero-padded, zero at the unknowns
    np.multiply(x.transpose(1, 0, 2, 3), ~rm.reshape(1, n, h, w), out=kept[:, :, 1:-1, 1:-1])
    kept = kept.reshape(c, n * area)
    rhs = np.zeros((c, num))  # sum over kept neighbours of w_pq x_q
    for off, wt in offsets.tolist():
        rhs += wt * kept.take(pos + int(off), axis=1)
    own = np.arange(num)
    vidx = np.full(n * area, _KEPT, dtype=np.int64)  # the unknowns' indices on the padded grid
    vidx[pos] = own
    # LAPACK lower band storage, ab[i - j, j] = A[i, j]: row 0 of `index` the diagonal's flat position in
    # `buf`, row 1 + k that of A[g + d, g] for the k-th later neighbour at distance d in the ordering
    index = np.empty((1 + later.size, num), dtype=np.int64)
    dist = index[1:]
    for k, off in enumerate(later.tolist()):
        np.subtract(vidx.take(pos + off), own, out=dist[k])  # below -num for a kept neighbour
    rows = np.flatnonzero(counts)
    kd_img = np.zeros(n, dtype=np.int64)
    kd_img[rows] = np.maximum.reduceat(np.maximum.reduce(dist, axis=0), starts[rows]).clip(min=0)
    blocks = np.ones(n + 1, dtype=np.int64)  # image b's band: buf[blocks[b] : blocks[b + 1]]; buf[0]: a dump slot
    np.cumsum((kd_img + 1) * counts, out=blocks[1:])
    blocks[1:] += 1
    base = own * np.repeat(kd_img + 1, counts)
    base += np.repeat(blocks[:-1] - starts[:-1] * (kd_img + 1), counts)  # where each unknown's column starts
    index[0] = base
    dist += base
    np.maximum(dist, 0, out=dist)  # a kept neighbour's entry goes to the dump slot
    values = np.empty(index.shape)
    values[0] = diagonal[pixel]
    values[1:] = -later_weights
    first, block, bandwidth = starts.tolist(), blocks.tolist(), kd_img.tolist()
    with _single_thread_blas():
        for g0, g1 in _band_groups(block, _BAND_BUFFER_FLOATS):  # images g0 … g1 - 1, one band buffer
            # the group's bands, shifted so that its first band starts at 1 (0 stays the dump slot)
            u0, u1, shift = first[g0], first[g1], block[g0] - 1
            part = index[:, u0:u1] if shift == 0 else np.where(index[:, u0:u1] > 0, index[:, u0:u1] - shift, 0)
            buf = np.zeros(block[g1] - shift)
            buf[part] = values[:, u0:u1]
            for b in range(g0, g1):
                lo, hi = first[b], first[b + 1]
                if lo == hi:
                    continue
                ab = buf[block[b] - shift : block[b + 1] - shift].reshape(bandwidth[b] + 1, hi - lo, order="F")
                rb = rhs[:, lo:hi].T
                _, xb, info = lapack.dpbsv(ab, rb, lower=1, overwrite_ab=1, overwrite_b=1)
                if info != 0:  # pragma: no cover - the matrix is positive definite by construction
                    raise RuntimeError(f"`NoisyLinear(solver='banded')`: LAPACK dpbsv failed with info={info} on image {b}.")
                if xb is not rb:  # several channels: LAPACK solved a copy
                    rb[...] = xb
    at = flat if c == 1 else flat + image * ((c - 1) * hw)  # flat position in `out` of channel 0
    flat_out = out.reshape(-1)
    solved = rhs.astype(out.dtype, copy=False)  # rounded to the output's dtype
    for ch in range(c):
        flat_out[at + ch * hw] = solved[ch]
    return torch.from_numpy(out).to(device=inputs.device, dtype=inputs.dtype)


class NoisyLinear(Filler):
    r"""ROAD's noisy linear imputation (Rong et al., ICML 2022).

    Every removed pixel p becomes the weighted mean of its in-image neighbours q,

    .. math:: x_p = \frac{\sum_q w_{pq}\, x_q}{\sum_q w_{pq}} \quad (p \text{ removed}),

    with kept neighbours as boundary values and removed ones as unknowns, all removed pixels of an
    image solved jointly (a sparse, symmetric positive-definite linear system per image, the same for
    every channel); then i.i.d. Gaussian noise of std ``noise`` (absolute, in the inputs' value space) is
    added to every removed pixel and channel. Weights (``neighbors=8``, ROAD's): 1/6 for the 4 direct
    and 1/12 for the 4 diagonal neighbours; ``neighbors=4``: 1/4 for the direct ones (harmonic
    interpolation; our addition). Neighbours outside the image are left out of the mean.

    Solvers (no per-pixel Python loop on any path; "banded" calls LAPACK once per image):

    * ``"banded"``: exact, on the CPU: per image, the unknowns in row-major order give a symmetric
      positive-definite band matrix (bandwidth at most W + 1, in practice the number of removed pixels
      within one image row), factored by LAPACK's band Cholesky in float64 with that image's own
      bandwidth, channels as right-hand sides; the assembly is vectorized over the chunk. It equals
      ``"direct"`` to rounding (≈1e-14) and is 4–6× faster (benchmarks/results.md, "ROAD imputation").
    * ``"direct"``: the block-diagonal sparse matrix of all images, channels as right-hand sides,
      solved exactly by scipy's SuperLU on the CPU (inputs on another device go there and back); the
      previous default, kept as the reference.
    * ``"cg"``: matrix-free conjugate gradients on the inputs' device (the matrix-vector product is a
      3×3 stencil), float64 (float32 on MPS), per (image, channel) step sizes, until every relative
      residual is at most ``tol`` or ``max_iter`` iterations (default ``20·max(H, W) + 100``) have run;
      a warning says so if they did not suffice.
    * ``"auto"`` (default): ``"banded"`` for CPU inputs, ``"cg"`` elsewhere.

    Where we differ from ROAD's code (``NoisyLinearImputer``): the mask convention is ours (``True`` =
    removed; theirs is 1 = kept); noise is drawn from ``generator``, not the global RNG; their code
    solves one image per call; when *every* pixel of an image is removed their system is singular
    (no kept value to interpolate from) — we fill such an image with 0 (plus noise), the value that
    carries no information about it (the dataset mean for standardized inputs). With fewer removed
    pixels the system is always non-singular. Noise is drawn anew at every call, i.e. at every curve
    point (as ROAD imputes every removal fraction independently), so with ``noise > 0`` curves are
    reproducible for a given ``generator`` state and ``chunk_size``.

    Example:
        >>> import torch
        >>> x = torch.tensor([[[[0.0, 1.0, 2.0], [0.0, 9.0, 2.0], [0.0, 1.0, 2.0]]]])
        >>> mask = torch.zeros(1, 1, 3, 3, dtype=torch.bool)
        >>> mask[0, 0, 1, 1] = True
        >>> NoisyLinear(noise=0.0)(x, mask)[0, 0, 1, 1]  # (1 + 1 + 0 + 2) / 6 + (0 + 2 + 0 + 2) / 12
        tensor(1.)
        >>> NoisyLinear().key
        'noisy_linear(0.01,8,auto,1e-06,None)'
    """

    mask_dependent = True

    @keyword_only
    def __init__(
        self,
        *,
        noise: float = 0.01,
        neighbors: int = 8,
        solver: str = "auto",
        tol: float = 1e-6,
        max_iter: int | None = None,
    ) -> None:
        noise = _check_number("noise", noise)
        if noise < 0:
            raise ValueError(f"Argument `noise` must be a number >= 0, but got {noise:g}.")
        if isinstance(neighbors, bool) or neighbors not in _WEIGHTS:
            raise ValueError(f"Argument `neighbors` must be 4 or 8, but got {neighbors!r}.")
        check_choice("solver", solver, SOLVERS)
        tol = _check_number("tol", tol)
        if not 0 < tol < 1:
            raise ValueError(f"Argument `tol` must be a number in (0, 1), but got {tol:g}.")
        if max_iter is not None:
            check_positive_int("max_iter", max_iter)
        self.noise, self.neighbors, self.solver, self.tol, self.max_iter = noise, neighbors, solver, tol, max_iter

    @property
    def key(self) -> str:
        return f"noisy_linear({self.noise:g},{self.neighbors},{self.solver},{self.tol:g},{self.max_iter})"

    def fill(self, inputs: Tensor, mask: Tensor, generator: torch.Generator | None = None) -> Tensor:
        solver = self.solver
        if solver == "auto":
            solver = "banded" if inputs.device.type == "cpu" else "cg"
        with torch.no_grad():
            if solver == "banded":  # already in the inputs' dtype and device, fully removed images 0
                filled = _solve_banded(inputs, mask, self.neighbors)
            else:
                if solver == "direct":
                    filled = _solve_direct(inputs, mask, self.neighbors)
                else:
                    h, w = inputs.shape[-2:]
                    max_iter = self.max_iter if self.max_iter is not None else 20 * max(h, w) + 100
                    filled, worst = _solve_cg(inputs, mask, self.neighbors, self.tol, max_iter)
                    if worst > self.tol:
                        warnings.warn(
                            f"`NoisyLinear`: conjugate gradients stopped after {max_iter} iterations with a relative "
                            f"residual of {worst:.2e} > `tol` {self.tol:g}; raise `max_iter` or use solver='direct'.",
                            RuntimeWarning,
                            stacklevel=2,
                        )
                filled = filled.to(device=inputs.device, dtype=inputs.dtype)
                full = mask.flatten(1).all(dim=1).view(-1, 1, 1, 1)
                filled = torch.where(full, torch.zeros_like(filled), filled)
            if self.noise > 0:
                filled = filled + self.noise * draw("normal", tuple(inputs.shape), generator, inputs)
            elif not inputs.requires_grad:
                return filled  # every solver returns the kept pixels as they are in `inputs`
        return torch.where(mask, filled, inputs)


class Telea(Filler):
    """OpenCV's fast-marching inpainting (Telea 2004, ``cv2.inpaint(..., cv2.INPAINT_TELEA)``).

    Removed pixels are filled from the boundary inwards, each one a distance- and direction-weighted
    first-order extrapolation of the known pixels within ``radius``. Channels are inpainted
    independently (as OpenCV does for 3-channel images), one ``cv2.inpaint`` call per image and
    channel on the CPU (OpenCV has no batched call; the inputs go to the CPU and back).

    Value range: OpenCV's algorithm assumes 8-bit-range values (its float path adds a term of unit
    size in those units, so e.g. values in [0, 1] would be badly filled). We map each image's channel
    affinely from the min–max of its **kept** pixels to [0, 255], inpaint it as float32 (no 8-bit
    quantization, no clipping) and map it back; the removed pixels' values never enter. The fill then
    carries OpenCV's own error of about ±1.5/255 of the channel's kept range (plus float32 rounding);
    kept pixels are returned exactly. A channel whose kept pixels are constant is filled with that
    constant. An image with every pixel removed has nothing to extrapolate from and is filled with 0
    (as :class:`NoisyLinear`).

    Example:
        >>> import torch
        >>> x = torch.linspace(0, 1, 8).repeat(1, 1, 8, 1)  # a horizontal ramp
        >>> mask = torch.zeros(1, 1, 8, 8, dtype=torch.bool)
        >>> mask[..., 3:5, 3:5] = True
        >>> out = Telea(radius=3)(x, mask)
        >>> bool((out - x).abs().max() < 0.1), Telea().key
        (True, 'telea(3)')
    """

    mask_dependent = True

    @keyword_only
    def __init__(self, *, radius: int = 3) -> None:
        check_positive_int("radius", radius)
        self.radius = radius

    @property
    def key(self) -> str:
        return f"telea({self.radius})"

    def fill(self, inputs: Tensor, mask: Tensor, generator: torch.Generator | None = None) -> Tensor:
        try:
            import cv2
        except ImportError as err:  # pragma: no cover - opencv comes with the test extras
            raise ImportError("`Telea` needs OpenCV: `pip install opencv-python-headless`.") from err
        x = inputs.detach().to("cpu", torch.float64).numpy()
        rm = mask[:, 0].cpu().numpy()
        n, c, _, _ = x.shape
        kept = ~rm[:, None]  # (N, 1, H, W)
        lo = np.where(kept, x, np.inf).min(axis=(2, 3), keepdims=True)  # (N, C, 1, 1), inf if all removed
        hi = np.where(kept, x, -np.inf).max(axis=(2, 3), keepdims=True)
        span = hi - lo
        scale = np.where(np.isfinite(span) & (span > 0), 255.0 / np.where(np.isfinite(span) & (span > 0), span, 1), 1.0)
        lo = np.where(np.isfinite(lo), lo, 0.0)
        z = np.where(kept, (x - lo) * scale, 0.0).astype(np.float32)
        out = np.zeros_like(z)
        holes = rm.astype(np.uint8)
        partial = rm.any(axis=(1, 2)) & ~rm.all(axis=(1, 2))
        for i in np.nonzero(partial)[0]:  # OpenCV inpaints one image (channel) per call
            for ch in range(c):
                out[i, ch] = cv2.inpaint(z[i, ch], holes[i], float(self.radius), cv2.INPAINT_TELEA)
        filled = out.astype(np.float64) / scale + lo
        filled[rm.all(axis=(1, 2))] = 0.0
        filled_t = torch.from_numpy(filled).to(device=inputs.device, dtype=inputs.dtype)
        return torch.where(mask, filled_t, inputs)


class InpainterFill(Filler):
    """Fill removed pixels with a generative inpainter (Agarwal & Nguyen, ACCV 2020).

    ``module`` is any callable ``(inputs (B, C, H, W), mask (B, 1, H, W)) -> (B, C, H, W)``, usually an
    ``nn.Module`` wrapping a pretrained inpainting network in the classifier's input space (bring your
    own weights; nothing is downloaded). It is called under ``torch.no_grad()``, an ``nn.Module`` in
    eval mode (its previous mode restored afterwards), once per engine chunk.

    What it receives:

    * ``inputs`` with the removed pixels set to 0, so that an inpainter cannot copy what was removed;
    * ``mask`` as a float tensor of the inputs' dtype: with ``mask_convention="removed"`` (default)
      1 = removed (a hole, DeepFill's convention), 0 = kept; with ``"kept"`` the reverse.

    The result is ``where(removed, module(...), inputs)``: kept pixels are never altered. The output
    must be a tensor of the inputs' shape (it is moved to their device and dtype).

    ``key`` holds ``name`` (default: the module's class or function name) and the module's identity,
    so two different inpainters never share a curve.

    Example:
        >>> import torch
        >>> def local_mean(x, m):  # fill every hole with the mean of the kept pixels
        ...     kept = 1 - m
        ...     return ((x * kept).sum((2, 3), keepdim=True) / kept.sum((2, 3), keepdim=True)).expand_as(x)
        >>> x = torch.tensor([[[[1.0, 3.0], [5.0, 100.0]]]])
        >>> mask = torch.tensor([[[[False, False], [False, True]]]])
        >>> InpainterFill(local_mean)(x, mask)
        tensor([[[[1., 3.],
                  [5., 3.]]]])
    """

    mask_dependent = True

    @keyword_only
    def __init__(
        self,
        module: Callable[[Tensor, Tensor], Tensor],
        *,
        mask_convention: str = "removed",
        name: str | None = None,
    ) -> None:
        if not callable(module):
            raise TypeError(
                f"Argument `module` must be callable (inputs, mask) -> inputs, but got {type(module).__name__}."
            )
        check_choice("mask_convention", mask_convention, MASK_CONVENTIONS)
        if name is not None and not isinstance(name, str):
            raise TypeError(f"Argument `name` must be a str or None, but got {type(name).__name__}.")
        self.module = module
        self.mask_convention = mask_convention
        default = type(module).__name__ if isinstance(module, torch.nn.Module) else getattr(module, "__name__", None)
        self.name: str = name or (default if isinstance(default, str) else type(module).__name__)

    @property
    def key(self) -> str:
        return f"inpainter({self.name}@{id(self.module):x},{self.mask_convention})"

    def fill(self, inputs: Tensor, mask: Tensor, generator: torch.Generator | None = None) -> Tensor:
        hole = mask.to(inputs.dtype)
        given = hole if self.mask_convention == "removed" else 1 - hole
        with torch.no_grad(), eval_mode(self.module):
            out = self.module(inputs * (1 - hole), given)
        if not isinstance(out, Tensor) or out.shape != inputs.shape:
            got = f"shape {tuple(out.shape)}" if isinstance(out, Tensor) else type(out).__name__
            raise ValueError(
                f"Argument `module` must return a tensor of the inputs' shape {tuple(inputs.shape)}, but returned {got}."
            )
        return torch.where(mask, out.to(device=inputs.device, dtype=inputs.dtype), inputs)
