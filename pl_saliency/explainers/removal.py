r"""Removal-based explainers: what happens to the class score when parts of the image are removed?

Agarwal & Nguyen ("Explaining image classifiers by removing input features using generative models",
ACCV 2020) plug a removal operator — gray, blur, or a generative inpainter — into three perturbation
methods; we add RISE, which removes by random masks. Every explainer takes that operator as ``filler``
(any spec of :func:`pl_saliency.perturbation.get_filler`: ``"zeros"``, ``"blur"``, a number,
``"telea"``, ``InpainterFill(module)``, ...). One module per method; this module re-exports them all
(every name importable from here before the split still is):

* :class:`SlidingPatchOcclusion` (:mod:`pl_saliency.explainers.occlusion`) — SP / SP-G: slide a
  ``patch_size`` square with ``stride``; ``rule="mean"`` (Captum's overlap average) or ``"window"``
  (the seed code's one value per window).
* :class:`Lime` (:mod:`pl_saliency.explainers.lime`) — LIME / LIME-G over SLIC superpixels or a grid.
* :class:`MeaningfulPerturbation` (:mod:`pl_saliency.explainers.meaningful_perturbation`) — MP / MP-G.
* :class:`RISE` (:mod:`pl_saliency.explainers.rise`) — Petsiuk, Das & Saenko (BMVC 2018).

``X.generative(inpainter, **kwargs)`` builds the "-G" variant with a real inpainter
(:class:`~pl_saliency.perturbation.imputation.InpainterFill`; bring your own weights, e.g. through
:class:`pl_saliency.inpainting.InpainterAdapter`), named ``"<name>_g"``. ``X.telea(**kwargs)`` builds
the OpenCV-Telea variant, named ``"<name>_telea"`` (``generative()`` without an inpainter still
returns it, with a ``DeprecationWarning``). Shared conventions: :mod:`pl_saliency.explainers.removal_base`.

Example (each explainer's settings shrunk to an 8 × 8 image):
    >>> import torch
    >>> from pl_saliency.explainers.removal import RISE, Lime, MeaningfulPerturbation, SlidingPatchOcclusion
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3))
    >>> x, y = torch.rand(2, 1, 8, 8), torch.tensor([0, 2])
    >>> explainers = [SlidingPatchOcclusion(patch_size=4, stride=2), Lime(segmentation="grid", grid_size=4, num_samples=50),
    ...               MeaningfulPerturbation(mask_size=4, iterations=5), RISE(num_masks=100, cells=4)]
    >>> [tuple(explainer(model, x, y).shape) for explainer in explainers]
    [(2, 1, 8, 8), (2, 1, 8, 8), (2, 1, 8, 8), (2, 1, 8, 8)]
    >>> SlidingPatchOcclusion(patch_size=4, stride=2, rule="window").window_scores(model, x, y).shape  # one value per window
    torch.Size([2, 1, 3, 3])
"""

from __future__ import annotations

from pl_saliency.explainers.lime import SEGMENTATIONS
from pl_saliency.explainers.lime import Lime
from pl_saliency.explainers.lime import LimeFit
from pl_saliency.explainers.lime import grid_segments
from pl_saliency.explainers.lime import lime_kernel_weights
from pl_saliency.explainers.lime import lime_samples
from pl_saliency.explainers.lime import slic_segments
from pl_saliency.explainers.lime import weighted_ridge
from pl_saliency.explainers.meaningful_perturbation import INITS
from pl_saliency.explainers.meaningful_perturbation import UPSAMPLINGS
from pl_saliency.explainers.meaningful_perturbation import MeaningfulPerturbation
from pl_saliency.explainers.meaningful_perturbation import binarize_threshold
from pl_saliency.explainers.meaningful_perturbation import tv_norm
from pl_saliency.explainers.occlusion import OCCLUSION_RULES
from pl_saliency.explainers.occlusion import SlidingPatchOcclusion
from pl_saliency.explainers.occlusion import seed_window_starts
from pl_saliency.explainers.occlusion import window_starts
from pl_saliency.explainers.removal_base import RemovalExplainer
from pl_saliency.explainers.removal_base import mirror_interpolation
from pl_saliency.explainers.rise import RISE
from pl_saliency.explainers.rise import RiseMasks
from pl_saliency.explainers.rise import rise_masks

__all__ = [
    "INITS",
    "MeaningfulPerturbation",
    "OCCLUSION_RULES",
    "RISE",
    "Lime",
    "LimeFit",
    "RemovalExplainer",
    "RiseMasks",
    "SEGMENTATIONS",
    "SlidingPatchOcclusion",
    "UPSAMPLINGS",
    "binarize_threshold",
    "grid_segments",
    "lime_kernel_weights",
    "lime_samples",
    "mirror_interpolation",
    "rise_masks",
    "seed_window_starts",
    "slic_segments",
    "tv_norm",
    "weighted_ridge",
    "window_starts",
]
