"""``pl-saliency score``: score a model's saliency maps on a folder of images, offline.

Loads a model (a LightningModule checkpoint, or any importable factory returning an ``nn.Module``),
reads a folder of images (flat: targets are the model's predictions; ``ImageFolder``-style class
sub-folders: targets are the folder labels), explains every image with every explainer, scores every
map with every metric, prints a table and writes a report::

    pl-saliency score --checkpoint model.ckpt --model-class pl_saliency.demo:DigitsCNN \\
        --images digits/ --grayscale --size 32 --explainers gradient,gradcam:features.conv3 \\
        --metrics deletion,insertion --out report/

The report folder holds ``scores.csv`` (one row per explainer × metric), ``per_sample.csv`` (one row
per image), ``scores.json`` (means, per-sample values, mean curves, every metric's definition and the
settings), ``curves.png`` (mean curve per explainer for every curve metric) and ``overlays.png``
(images × explainers).

Errors in the options (missing file, unimportable class, empty folder, unreadable image, unknown
explainer or metric) exit with status 2 and a one-line message naming the option; ``--debug`` shows
the traceback instead. Names and their classes live in :data:`EXPLAINERS` and :data:`METRICS`:
adding one is one line.
"""

from __future__ import annotations

import argparse
import csv
import importlib
import importlib.util
import inspect
import json
import math
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from pl_saliency.loggers.text import format_scores_table

__all__ = [
    "EXPLAINERS",
    "IMAGE_EXTENSIONS",
    "METRICS",
    "NOT_SCORABLE",
    "CLIError",
    "ImageSet",
    "MetricSpec",
    "available_metrics",
    "build_explainers",
    "build_metrics",
    "find_images",
    "format_scores_table",
    "import_object",
    "load_images",
    "load_model",
    "main",
]

PROG = "pl-saliency"

IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
"""File extensions read as images (torchvision's ``ImageFolder`` list), case-insensitive."""


class CLIError(Exception):
    """A problem with a command-line option: reported as ``<option>: <message>``, exit status 2."""

    def __init__(self, option: str, message: str) -> None:
        super().__init__(f"{option}: {message}")
        self.option = option


class ScoringError(Exception):
    """An explainer or metric failed while scoring: reported in one line, exit status 1."""


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}".rstrip(": ")


# ---------------------------------------------------------------------------------------- registries
def _last_conv(model: nn.Module) -> str:
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise CLIError("--explainers", "'gradcam' needs a layer and the model has no nn.Conv2d; pass gradcam:<layer>.")
    return convs[-1]


def _gradcam(arg: str | None, model: nn.Module, **kwargs: Any) -> Any:
    from pl_saliency.explainers import GradCAM

    layer = arg or _last_conv(model)
    try:
        model.get_submodule(layer)
    except AttributeError:
        convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)][-10:]
        raise CLIError(
            "--explainers", f"gradcam layer {layer!r} is not a sub-module of the model; its convolutions are {convs}."
        ) from None
    return GradCAM(layer=layer, **kwargs)


def _captum(arg: str | None, model: nn.Module, **kwargs: Any) -> Any:
    from captum import attr as captum_attr

    from pl_saliency.explainers import CaptumExplainer

    method = getattr(captum_attr, arg or "", None)
    if not arg or not isinstance(method, type) or not hasattr(method, "attribute"):
        raise CLIError("--explainers", f"'captum:<Method>' needs a captum.attr class name such as GuidedBackprop, but got {arg!r}.")
    return CaptumExplainer(method, **kwargs)


def _plain(class_name: str) -> Callable[..., Any]:
    def build(arg: str | None, model: nn.Module, **kwargs: Any) -> Any:
        from pl_saliency import explainers

        if arg is not None:
            raise CLIError("--explainers", f"{class_name} takes no ':<argument>', but got {arg!r}.")
        return getattr(explainers, class_name)(**kwargs)

    return build


EXPLAINERS: dict[str, Callable[..., Any]] = {
    "gradient": _plain("Gradient"),
    "gradient_x_input": _plain("GradientXInput"),
    "integrated_gradients": _plain("IntegratedGradients"),
    "smoothgrad": _plain("SmoothGrad"),
    "occlusion": _plain("SlidingPatchOcclusion"),
    "lime": _plain("Lime"),
    "meaningful_perturbation": _plain("MeaningfulPerturbation"),
    "rise": _plain("RISE"),
    "gradcam": _gradcam,  # gradcam:<layer>; plain 'gradcam' takes the model's last nn.Conv2d
    "captum": _captum,  # captum:<captum.attr class>, e.g. captum:GuidedBackprop
}
"""Explainer names: ``name`` or ``name:<argument>`` → ``builder(argument, model, **kwargs)``."""


@dataclass(frozen=True)
class MetricSpec:
    """A CLI metric: the class exported by :mod:`pl_saliency.metrics` and its CLI defaults.

    ``--steps`` (curve points) is passed to every metric whose constructor takes ``steps``, unless
    ``curve_steps=False``; ``kwargs`` are the CLI's constructor defaults (``--metric-kwargs``
    overrides them).
    """

    cls: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    curve_steps: bool = True  # False where the constructor's `steps` means something else (attack steps)


METRICS: dict[str, MetricSpec] = {
    "deletion": MetricSpec("DeletionAUC"),
    "insertion": MetricSpec("InsertionAUC"),
    "aopc_morf": MetricSpec("AOPCMorf"),
    "aopc_lerf": MetricSpec("AOPCLerf"),
    "abpc": MetricSpec("ABPC"),
    "pixel_flipping": MetricSpec("PixelFlipping"),
    "region_perturbation": MetricSpec("RegionPerturbation"),
    "selectivity": MetricSpec("Selectivity"),
    "road_morf": MetricSpec("ROADMorf"),
    "road_lerf": MetricSpec("ROADLerf"),
    "mprt": MetricSpec("ModelParameterRandomization"),
    "random_logit": MetricSpec("RandomLogit"),
    "gini": MetricSpec("GiniSparseness"),
    "entropy": MetricSpec("EntropyComplexity"),
    "infidelity": MetricSpec("Infidelity"),
    "max_sensitivity": MetricSpec("MaxSensitivity"),
    "avg_sensitivity": MetricSpec("AvgSensitivity"),
    "adversarial_reliability": MetricSpec("AdversarialReliability", curve_steps=False),
    "adversarial_flip_budget": MetricSpec("AdversarialFlipBudget"),
    "saliency_metric": MetricSpec("SaliencyMetric"),
    "faithfulness_correlation": MetricSpec("FaithfulnessCorrelation"),
    "removal_realism": MetricSpec("RemovalRealism"),
    "normalized_abpc": MetricSpec("NormalizedABPC"),
    "average_drop": MetricSpec("AverageDrop"),
    "increase_in_confidence": MetricSpec("IncreaseInConfidence"),
    "neighbourhood_deletion_auc": MetricSpec("NeighbourhoodDeletionAUC"),
    "neighbourhood_insertion_auc": MetricSpec("NeighbourhoodInsertionAUC"),  # LPIPS backbone weights must be cached (or pnet_rand)
}
"""Metric names → classes of :mod:`pl_saliency.metrics`, looked up when used (an entry whose class is
not exported is not offered). Adding a metric that follows the monitor protocol
(``update(model, inputs, saliency, target, context=None)``, nothing but the batch and
``context.explainer``) is one line here."""

NOT_SCORABLE: dict[str, str] = {
    "SampleScoreMetric": "base class",
    "ControlledScore": "a wrapper of a curve metric (random-order controls), not a metric of its own",
    "CurveAUCMetric": "base class",
    "CurveMetric": "base class",
    "LocalizationMetric": "base class",
    "PointingGame": "needs ground-truth masks or boxes (context.extras)",
    "EnergyPointingGame": "needs ground-truth masks or boxes (context.extras)",
    "RelevanceMassAccuracy": "needs ground-truth masks or boxes (context.extras)",
    "RelevanceRankAccuracy": "needs ground-truth masks or boxes (context.extras)",
    "ObjectLocalizationError": "needs ground-truth boxes (context.extras)",
    "DecoyRealism": "needs a DecoyEnhanced explainer, which the CLI does not offer",
}
"""Metric classes exported by :mod:`pl_saliency.metrics` that the CLI does not offer, with the reason
(e.g. a metric needing ground-truth masks in ``context.extras``)."""


def available_metrics() -> dict[str, type]:
    """``{name: class}`` for every :data:`METRICS` entry whose class :mod:`pl_saliency.metrics` exports."""
    from pl_saliency import metrics as metrics_module

    out = {}
    for name, spec in METRICS.items():
        cls = getattr(metrics_module, spec.cls, None)
        if isinstance(cls, type):
            out[name] = cls
    return out


def _split_names(text: str, option: str) -> list[str]:
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise CLIError(option, f"expected a comma-separated list of names, but got {text!r}.")
    return names


def _json_object(text: str | None, option: str) -> dict[str, Any]:
    if text is None:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise CLIError(option, f"expected a JSON object, but got {text!r} ({err}).") from None
    if not isinstance(value, dict):
        raise CLIError(option, f"expected a JSON object, but got {type(value).__name__} {text!r}.")
    return value


def _per_name_kwargs(text: str | None, option: str, names: Sequence[str]) -> dict[str, dict[str, Any]]:
    value = _json_object(text, option)
    for key, kw in value.items():
        if key not in names:
            raise CLIError(option, f"key {key!r} is not one of the selected names {list(names)}.")
        if not isinstance(kw, dict):
            raise CLIError(option, f"the value for {key!r} must be a JSON object of keyword arguments, but got {kw!r}.")
    return value


def build_explainers(spec: str, model: nn.Module, kwargs_json: str | None = None) -> dict[str, Any]:
    """``"gradient,gradcam:features.conv3"`` → ``{"gradient": Gradient(), "gradcam:features.conv3": GradCAM(...)}``.

    ``kwargs_json`` is a JSON object ``{"<name as given>": {constructor keyword arguments}}``.
    """
    tokens = _split_names(spec, "--explainers")
    per_name = _per_name_kwargs(kwargs_json, "--explainer-kwargs", tokens)
    out: dict[str, Any] = {}
    for token in tokens:
        base, _, arg = token.partition(":")
        if base not in EXPLAINERS:
            raise CLIError(
                "--explainers", f"unknown explainer {base!r}; valid: {', '.join(EXPLAINERS)} (gradcam:<layer>, captum:<Method>)."
            )
        if token in out:
            raise CLIError("--explainers", f"{token!r} is given twice.")
        try:
            explainer = EXPLAINERS[base](arg or None, model, **per_name.get(token, {}))
        except CLIError:
            raise
        except (TypeError, ValueError) as err:
            raise CLIError("--explainer-kwargs" if token in per_name else "--explainers", f"{token}: {_one_line(err)}") from err
        explainer.name = token.replace("/", "_")
        out[token] = explainer
    return out


def build_metrics(spec: str, steps: int | None = None, kwargs_json: str | None = None) -> dict[str, Any]:
    """``"deletion,insertion"`` → ``{"deletion": DeletionAUC(steps=...), ...}`` (templates, not yet updated)."""
    names = _split_names(spec, "--metrics")
    per_name = _per_name_kwargs(kwargs_json, "--metric-kwargs", names)
    available = available_metrics()
    out: dict[str, Any] = {}
    for name in names:
        if name not in available:
            raise CLIError("--metrics", f"unknown metric {name!r}; valid: {', '.join(available)}.")
        if name in out:
            raise CLIError("--metrics", f"{name!r} is given twice.")
        cls = available[name]
        kwargs = dict(METRICS[name].kwargs)
        params = inspect.signature(cls).parameters
        if steps is not None and "steps" in params and METRICS[name].curve_steps:
            kwargs["steps"] = steps
        kwargs.update(per_name.get(name, {}))
        if "keep_per_sample" in params:
            kwargs["keep_per_sample"] = True
        try:
            out[name] = cls(**kwargs)
        except (TypeError, ValueError) as err:
            raise CLIError("--metric-kwargs" if name in per_name else "--metrics", f"{name}: {_one_line(err)}") from err
    return out


# ---------------------------------------------------------------------------------------- table
# ---------------------------------------------------------------------------------------- model
def import_object(spec: str, option: str) -> Any:
    """``"package.module:Name"`` (``Name`` may be dotted) or ``"path/to/file.py:Name"`` → the object."""
    if not isinstance(spec, str) or ":" not in spec:
        raise CLIError(option, f"expected 'package.module:Name' or 'path/to/file.py:Name', but got {spec!r}.")
    module_name, attr = spec.rsplit(":", 1)
    if not module_name or not attr:
        raise CLIError(option, f"expected 'package.module:Name' or 'path/to/file.py:Name', but got {spec!r}.")
    try:
        if module_name.endswith(".py"):
            path = Path(module_name)
            if not path.is_file():
                raise CLIError(option, f"no such Python file: {module_name}.")
            mod_name = f"_pl_saliency_user_{path.stem}"
            module_spec = importlib.util.spec_from_file_location(mod_name, path)
            if module_spec is None or module_spec.loader is None:
                raise CLIError(option, f"cannot import the Python file {module_name}.")
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[mod_name] = module
            module_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
    except CLIError:
        raise
    except Exception as err:  # noqa: BLE001 - any import failure is the option's fault
        raise CLIError(option, f"cannot import {module_name!r} ({_one_line(err)}).") from err
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise CLIError(option, f"{module_name!r} has no attribute {attr!r}.")
        obj = getattr(obj, part)
    return obj


def _read_state_dict(path: Path) -> dict[str, Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001
        raise CLIError("--checkpoint", f"could not read {path} ({_one_line(err)}).") from err
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise CLIError("--checkpoint", f"expected a state dict (or a checkpoint with 'state_dict') in {path}, but got {type(state).__name__}.")
    return state


def load_model(
    checkpoint: str | None = None,
    model_class: str | None = None,
    model_factory: str | None = None,
    factory_kwargs: str | None = None,
) -> nn.Module:
    """The model to score, in eval mode on the CPU.

    * ``model_class`` + ``checkpoint``: ``Class.load_from_checkpoint(checkpoint, map_location="cpu")``.
    * ``model_factory`` (+ ``factory_kwargs`` JSON): ``factory(**kwargs)``; with ``checkpoint``, its
      ``state_dict`` (or the checkpoint's ``"state_dict"``) is loaded into the result.
    """
    if (model_class is None) == (model_factory is None):
        raise CLIError(
            "--model-class/--model-factory",
            "pass exactly one: --checkpoint PATH --model-class module:Class, or --model-factory module:function.",
        )
    path = None
    if checkpoint is not None:
        path = Path(checkpoint)
        if not path.is_file():
            raise CLIError("--checkpoint", f"no such file: {checkpoint}.")
    if model_class is not None:
        if path is None:
            raise CLIError("--checkpoint", "--model-class needs --checkpoint PATH (a LightningModule checkpoint).")
        if factory_kwargs is not None:
            raise CLIError("--factory-kwargs", "only applies to --model-factory.")
        cls = import_object(model_class, "--model-class")
        if not isinstance(cls, type) or not hasattr(cls, "load_from_checkpoint"):
            raise CLIError("--model-class", f"{model_class} is not a LightningModule class (it has no load_from_checkpoint).")
        try:
            model = cls.load_from_checkpoint(str(path), map_location="cpu")
        except Exception as err:  # noqa: BLE001
            raise CLIError("--checkpoint", f"could not load {path} with {cls.__name__}.load_from_checkpoint ({_one_line(err)}).") from err
    else:
        factory = import_object(model_factory, "--model-factory")  # type: ignore[arg-type]
        if not callable(factory):
            raise CLIError("--model-factory", f"{model_factory} is not callable (got {type(factory).__name__}).")
        kwargs = _json_object(factory_kwargs, "--factory-kwargs")
        try:
            model = factory(**kwargs)
        except Exception as err:  # noqa: BLE001
            raise CLIError("--model-factory", f"{model_factory}(**{kwargs}) failed ({_one_line(err)}).") from err
        if not isinstance(model, nn.Module):
            raise CLIError("--model-factory", f"{model_factory} must return an nn.Module, but returned {type(model).__name__}.")
        if path is not None:
            try:
                model.load_state_dict(_read_state_dict(path))
            except CLIError:
                raise
            except Exception as err:  # noqa: BLE001
                raise CLIError("--checkpoint", f"the weights in {path} do not fit {model_factory} ({_one_line(err)}).") from err
    return model.eval()


# ---------------------------------------------------------------------------------------- images
@dataclass
class ImageSet:
    """The images to score: ``files`` in order; ``labels`` and ``classes`` for a class-folder tree."""

    root: Path
    files: list[Path]
    labels: list[int] | None = None
    classes: list[str] | None = None

    @property
    def layout(self) -> str:
        return "flat" if self.labels is None else "class-folders"


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def find_images(folder: str | Path, limit: int | None = None) -> ImageSet:
    """List the images of a flat folder, or of an ``ImageFolder`` tree (``root/<class>/**/<image>``,
    classes sorted by name → label indices 0, 1, … as torchvision's ``ImageFolder``). Files are
    sorted; ``limit`` keeps the first ones."""
    root = Path(folder)
    if not root.is_dir():
        raise CLIError("--images", f"no such folder: {folder}.")
    top = sorted(p for p in root.iterdir() if _is_image(p))
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    per_class = {d.name: sorted(p for p in d.rglob("*") if _is_image(p)) for d in class_dirs}
    per_class = {k: v for k, v in per_class.items() if v}
    if top and per_class:
        raise CLIError(
            "--images",
            f"{folder} holds both images and class sub-folders with images ({', '.join(list(per_class)[:5])}); "
            "use a flat folder of images or one sub-folder per class.",
        )
    if top:
        images = ImageSet(root, top)
    elif per_class:
        classes = sorted(per_class)
        files, labels = [], []
        for label, name in enumerate(classes):
            files += per_class[name]
            labels += [label] * len(per_class[name])
        images = ImageSet(root, files, labels, classes)
    else:
        raise CLIError("--images", f"no images with a known extension ({' '.join(IMAGE_EXTENSIONS)}) in {folder} or its class sub-folders.")
    if limit is not None:
        images.files = images.files[:limit]
        if images.labels is not None:
            images.labels = images.labels[:limit]
    return images


def load_images(
    paths: Sequence[Path],
    size: tuple[int, int] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    grayscale: bool = False,
) -> Tensor:
    """Read images as a float (N, C, H, W) batch: RGB (or gray, C = 1) in [0, 1], resized to ``size``
    (H, W) with PIL's bilinear filter when given, then ``(x - mean) / std`` per channel."""
    import numpy as np
    from PIL import Image

    tensors = []
    for path in paths:
        try:
            with Image.open(path) as img:
                img.load()
                img = img.convert("L" if grayscale else "RGB")
                if size is not None:
                    img = img.resize((size[1], size[0]), Image.Resampling.BILINEAR)
                arr = np.asarray(img, dtype=np.float32) / 255.0
        except Exception as err:  # noqa: BLE001 - PIL raises several kinds for corrupt files
            raise CLIError("--images", f"cannot read image {path} ({_one_line(err)}).") from err
        t = torch.from_numpy(arr.copy())
        tensors.append(t.unsqueeze(0) if t.ndim == 2 else t.permute(2, 0, 1))
    first = tensors[0].shape
    for path, t in zip(paths, tensors):
        if t.shape != first:
            raise CLIError(
                "--size",
                f"images differ in size ({paths[0].name}: {first[1]}x{first[2]}, {path.name}: {t.shape[1]}x{t.shape[2]}); "
                "pass --size H [W] to resize them.",
            )
    x = torch.stack(tensors)
    channels = x.shape[1]
    for name, values in (("--mean", mean), ("--std", std)):
        if values is not None and len(values) not in (1, channels):
            expected = "1 value" if channels == 1 else f"1 or {channels} values (one per channel)"
            raise CLIError(name, f"expected {expected} for {channels}-channel images, but got {len(values)}.")
    if std is not None and any(v <= 0 for v in std):
        raise CLIError("--std", f"expected positive values, but got {list(std)}.")
    if mean is not None:
        x = x - torch.tensor(mean, dtype=x.dtype).view(1, -1, 1, 1)
    if std is not None:
        x = x / torch.tensor(std, dtype=x.dtype).view(1, -1, 1, 1)
    return x


# ---------------------------------------------------------------------------------------- scoring
@dataclass
class ScoreResult:
    """Everything the report holds."""

    images: ImageSet
    explainers: dict[str, Any]
    metrics: dict[str, dict[str, Any]]  # explainer → metric → updated Metric
    targets: list[int]
    predictions: list[int]
    target_mode: str
    scores: dict[str, dict[str, float | None]]
    per_sample: dict[str, dict[str, list[float | None]]]
    curves: dict[str, dict[str, Any]]
    overlay_inputs: Tensor | None
    overlay_maps: dict[str, Tensor]


def _float(v: Any) -> float | None:
    v = float(v)
    return None if math.isnan(v) or math.isinf(v) else v


def score_images(
    model: nn.Module,
    images: ImageSet,
    explainers: Mapping[str, Any],
    metric_templates: Mapping[str, Any],
    *,
    target: str | None = None,
    batch_size: int = 32,
    size: tuple[int, int] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    grayscale: bool = False,
    device: str = "cpu",
    num_overlays: int = 8,
    progress: bool = True,
) -> ScoreResult:
    """Explain and score ``images`` batch by batch: images are loaded per batch and fed to the one
    scoring loop (:class:`~pl_saliency.evaluation.Evaluator`); the first failure stops with its file."""
    from tqdm.auto import tqdm

    from pl_saliency.evaluation import Evaluator
    from pl_saliency.utils import model_logits

    if target is None:
        target = "prediction" if images.labels is None else "label"
    if target == "label" and images.labels is None:
        raise CLIError("--target", f"'label' needs class sub-folders, but {images.root} is a flat folder; use --target prediction.")
    dev = torch.device(device)
    model = model.to(dev).eval()
    evaluator = Evaluator(model, explainers, metric_templates, target=target, on_error="warn", controls=False, context_series=False, label="pl-saliency", keep_maps=num_overlays)
    overlay_x: list[Tensor] = []
    n = len(images.files)
    bar = tqdm(total=n, unit="img", desc="scoring", disable=not progress, file=sys.stderr, dynamic_ncols=True)
    try:
        for start in range(0, n, batch_size):
            paths = images.files[start : start + batch_size]
            x = load_images(paths, size=size, mean=mean, std=std, grayscale=grayscale).to(dev)
            if start == 0:
                first_size = tuple(x.shape[1:])
            elif tuple(x.shape[1:]) != first_size:
                raise CLIError("--size", f"images differ in size ({first_size} in the first batch, {tuple(x.shape[1:])} later); pass --size H [W].")
            try:
                with torch.no_grad():
                    logits = model_logits(model, x)
            except Exception as err:  # noqa: BLE001
                hint = " (check --grayscale, --size, --mean/--std)" if start == 0 else ""
                raise ScoringError(f"the model failed on images of shape {tuple(x.shape)}{hint}: {_one_line(err)}") from err
            labels = logits.argmax(dim=1)
            if images.labels is not None:
                labels = torch.tensor(images.labels[start : start + len(paths)], device=dev)
                n_classes = len(images.classes or ())
                if target == "label" and n_classes > logits.shape[1]:
                    raise CLIError(
                        "--images",
                        f"{images.root} has {n_classes} class folders (labels 0 to {n_classes - 1}), but the model has "
                        f"{logits.shape[1]} outputs; use --target prediction or a folder with at most that many classes.",
                    )
            keep = max(0, min(num_overlays - sum(len(o) for o in overlay_x), len(x)))
            if keep:
                overlay_x.append(x[:keep].cpu())
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # failures are reported below, one line, with the file
                evaluator.add(x, labels)
            if evaluator.errors:
                err = next(iter(evaluator.errors.values()))
                raise ScoringError(f"{err.what} failed on {paths[0].name}…: {_one_line(err.error)}") from err.error
            bar.update(len(paths))
    finally:
        bar.close()
    grid = evaluator.finish()

    metrics = {e: {m: grid.metric_objects[(e, m)] for m in metric_templates} for e in explainers}
    scores: dict[str, dict[str, float | None]] = {e: {m: grid.value(e, m) for m in metric_templates} for e in explainers}
    per_sample: dict[str, dict[str, list[float | None]]] = {
        e: {m: [_float(v) for v in grid.per_sample[(e, m)]] for m in metric_templates if (e, m) in grid.per_sample}
        for e in explainers
    }
    curves: dict[str, dict[str, Any]] = {}
    for m, by_e in grid.curves.items():
        curves[m] = {
            "x": [float(v) for v in grid.curve_x[m]],
            "xlabel": _curve_label(metric_templates[m]),
            "by_explainer": {e: [_float(v) for v in c] for e, c in by_e.items()},
        }
    targets = grid.targets.tolist()
    predictions = grid.predictions.tolist()
    overlay_maps = {e: grid.maps[e][: sum(len(o) for o in overlay_x)] for e in explainers if e in grid.maps}
    return ScoreResult(
        images=images,
        explainers=dict(explainers),
        metrics=metrics,
        targets=targets,
        predictions=predictions,
        target_mode=target,
        scores=scores,
        per_sample=per_sample,
        curves=curves,
        overlay_inputs=torch.cat(overlay_x) if overlay_x else None,
        overlay_maps=overlay_maps,
    )


def _curve_label(metric: Any) -> str:
    label = getattr(metric, "curve_label", None)
    if isinstance(label, str):
        return label
    return "fraction " + ("inserted" if getattr(metric, "mode", "") == "insertion" else "removed")


def _definition(metric: Any) -> dict[str, Any]:
    d = getattr(metric, "definition", None)
    if not isinstance(d, dict):
        d = {"metric": type(metric).__name__, "higher_is_better": getattr(metric, "higher_is_better", None)}
    return json.loads(json.dumps(d, default=str))


# ---------------------------------------------------------------------------------------- report
def write_report(result: ScoreResult, out: Path, settings: Mapping[str, Any]) -> list[Path]:
    """Write ``scores.csv``, ``per_sample.csv``, ``scores.json``, ``curves.png`` and ``overlays.png``."""
    out.mkdir(parents=True, exist_ok=True)
    templates = next(iter(result.metrics.values()))
    written = []

    path = out / "scores.csv"
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["explainer", "metric", "mean", "higher_is_better", "samples", "undefined"])
        for e, by_m in result.metrics.items():
            for m, metric in by_m.items():
                total = int(getattr(metric, "total", len(result.targets)))
                undefined = int(getattr(metric, "nan_count", 0))
                v = result.scores[e][m]
                w.writerow([e, m, "" if v is None else repr(v), getattr(metric, "higher_is_better", None), total, undefined])
    written.append(path)

    path = out / "per_sample.csv"
    cols = [(e, m) for e in result.per_sample for m in result.per_sample[e]]
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "target", "prediction", *(f"{e}/{m}" for e, m in cols)])
        for i, f in enumerate(result.images.files):
            vals = [result.per_sample[e][m][i] if i < len(result.per_sample[e][m]) else None for e, m in cols]
            w.writerow([f.relative_to(result.images.root).as_posix(), result.targets[i], result.predictions[i], *("" if v is None else repr(v) for v in vals)])
    written.append(path)

    report = {
        "settings": dict(settings),
        "images": {
            "root": str(result.images.root),
            "layout": result.images.layout,
            "classes": result.images.classes,
            "files": [f.relative_to(result.images.root).as_posix() for f in result.images.files],
            "target": result.target_mode,
            "targets": result.targets,
            "predictions": result.predictions,
        },
        "explainers": {e: repr(fn) for e, fn in result.explainers.items()},
        "metrics": {m: _definition(t) for m, t in templates.items()},
        "scores": result.scores,
        "per_sample": result.per_sample,
        "curves": result.curves,
    }
    path = out / "scores.json"
    path.write_text(json.dumps(report, indent=2, allow_nan=False))
    written.append(path)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if result.curves:
        k = len(result.curves)
        ncols = min(k, 3)
        nrows = math.ceil(k / ncols)
        fig, axes = plt.subplots(nrows, ncols, figsize=(4.5 * ncols, 3.6 * nrows), squeeze=False)
        for ax in axes.flat[k:]:
            ax.set_visible(False)
        for ax, (m, entry) in zip(axes.flat, result.curves.items()):
            for e, ys in entry["by_explainer"].items():
                ax.plot(entry["x"], [float("nan") if v is None else v for v in ys], label=e, marker="." if len(ys) < 20 else None)
            arrow = {True: " (higher is better)", False: " (lower is better)"}.get(getattr(templates[m], "higher_is_better", None), "")
            ax.set_title(f"{m}{arrow}", fontsize=9)
            ax.set_xlabel(entry["xlabel"])
            ax.set_ylabel("mean score")
            ax.legend(fontsize=7)
        fig.tight_layout()
        path = out / "curves.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)

    if result.overlay_inputs is not None and result.overlay_maps:
        from pl_saliency.loggers import display_uint8, overlay

        x = result.overlay_inputs
        names = list(result.overlay_maps)
        k = len(x)
        fig, axes = plt.subplots(k, len(names) + 1, figsize=(1.7 * (len(names) + 1), 1.7 * k), squeeze=False)
        classes = result.images.classes
        for i in range(k):
            axes[i, 0].imshow(display_uint8(x[i]).numpy())
            t, p = result.targets[i], result.predictions[i]
            shown = classes[t] if classes and result.target_mode == "label" else t
            axes[i, 0].set_ylabel(f"target {shown}, pred {p}", fontsize=7)
            for j, e in enumerate(names):
                axes[i, j + 1].imshow(overlay(x[i], result.overlay_maps[e][i]).numpy())
        axes[0, 0].set_title("image", fontsize=7)
        for j, e in enumerate(names):
            axes[0, j + 1].set_title(e, fontsize=7)
        for ax in axes.flat:
            ax.set_xticks([])
            ax.set_yticks([])
        fig.tight_layout()
        path = out / "overlays.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written


# ---------------------------------------------------------------------------------------- argparse
def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, but got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, but got {v}")
    return v


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Score the saliency maps of an image classifier, offline.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    p = sub.add_parser(
        "score",
        help="score explainers × metrics on a folder of images and write a report",
        description=(
            "Explain every image with every explainer, score every map with every metric, print a table and "
            "write scores.csv, per_sample.csv, scores.json, curves.png and overlays.png to --out."
        ),
    )
    g = p.add_argument_group("model (--checkpoint + --model-class, or --model-factory)")
    g.add_argument("--checkpoint", metavar="PATH", help="LightningModule checkpoint (with --model-class) or state dict (with --model-factory)")
    g.add_argument("--model-class", metavar="MODULE:CLASS", help="LightningModule class, e.g. pl_saliency.demo:DigitsCNN or path/to/file.py:Net")
    g.add_argument("--model-factory", metavar="MODULE:FUNCTION", help="callable returning an nn.Module, e.g. torchvision.models:resnet18")
    g.add_argument("--factory-kwargs", metavar="JSON", help='keyword arguments of the factory, e.g. \'{"num_classes": 10}\'')
    g.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    g = p.add_argument_group("images")
    g.add_argument("--images", required=True, metavar="FOLDER", help="flat folder of images (targets: predictions) or ImageFolder tree (targets: labels)")
    g.add_argument("--size", type=_positive_int, nargs="+", metavar="N", help="H or H W: resize every image to H×W (default: keep the size)")
    g.add_argument("--mean", type=float, nargs="+", metavar="M", help="per-channel mean subtracted after scaling to [0, 1]")
    g.add_argument("--std", type=float, nargs="+", metavar="S", help="per-channel std dividing after the mean")
    g.add_argument("--grayscale", action="store_true", help="read images as one gray channel (default: RGB)")
    g.add_argument("--limit", type=_positive_int, metavar="N", help="score only the first N images (sorted by class folder, then name)")
    g.add_argument("--batch-size", type=_positive_int, default=32, metavar="N", help="images explained and scored at once (default: 32)")
    g = p.add_argument_group("scoring")
    g.add_argument("--explainers", default="gradient,integrated_gradients,gradcam", metavar="NAMES",
                   help=f"comma-separated: {', '.join(EXPLAINERS)} (gradcam:<layer>, plain gradcam: the last Conv2d; "
                        "captum:<Method>) (default: %(default)s)")  # fmt: skip
    g.add_argument("--explainer-kwargs", metavar="JSON", help='per explainer constructor arguments, e.g. \'{"smoothgrad": {"nt_samples": 8}}\'')
    g.add_argument("--metrics", default="deletion,insertion", metavar="NAMES",
                   help=f"comma-separated: {', '.join(available_metrics())} (default: %(default)s)")  # fmt: skip
    g.add_argument("--metric-kwargs", metavar="JSON", help='per metric constructor arguments, e.g. \'{"road_morf": {"percentages": [10, 50, 90]}}\'')
    g.add_argument("--steps", type=_positive_int, default=None, metavar="N", help="curve points of the metrics that take `steps` (default: each metric's own)")
    g.add_argument("--target", choices=("label", "prediction"), default=None,
                   help="explain the folder label or the model's prediction (default: label for class folders, else prediction)")  # fmt: skip
    g = p.add_argument_group("output")
    g.add_argument("--out", default="saliency-report", metavar="DIR", help="report folder (default: %(default)s)")
    g.add_argument("--overlays", type=int, default=8, metavar="N", help="images in overlays.png, 0 for none (default: 8)")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    g.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    return parser


def run_score(args: argparse.Namespace) -> ScoreResult:
    """The ``score`` subcommand on parsed arguments; returns the result after writing the report."""
    size = None
    if args.size is not None:
        if len(args.size) > 2:
            raise CLIError("--size", f"expected H or H W, but got {len(args.size)} values {args.size}.")
        size = (args.size[0], args.size[-1])
    if args.overlays < 0:
        raise CLIError("--overlays", f"expected a non-negative integer, but got {args.overlays}.")
    try:
        torch.device(args.device)
    except RuntimeError as err:
        raise CLIError("--device", _one_line(err)) from err
    images = find_images(args.images, args.limit)
    metric_templates = build_metrics(args.metrics, args.steps, args.metric_kwargs)
    model = load_model(args.checkpoint, args.model_class, args.model_factory, args.factory_kwargs)
    explainers = build_explainers(args.explainers, model, args.explainer_kwargs)
    result = score_images(
        model, images, explainers, metric_templates, target=args.target, batch_size=args.batch_size, size=size,
        mean=args.mean, std=args.std, grayscale=args.grayscale, device=args.device, num_overlays=args.overlays,
        progress=not args.no_progress,
    )  # fmt: skip
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k not in ("debug", "no_progress")}
    out = Path(args.out)
    written = write_report(result, out, settings)
    flat = {f"{e}/{m}": v for e, by_m in result.scores.items() for m, v in by_m.items()}
    directions = {m: getattr(t, "higher_is_better", None) for m, t in metric_templates.items()}
    title = f"saliency scores — {len(result.targets)} images, target: {result.target_mode}"
    print(format_scores_table(flat, list(explainers), directions, title))
    print(f"\nReport in {out}: " + ", ".join(p.name for p in written))
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``pl-saliency`` console script; returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2), message already printed
        return int(exc.code or 0)
    try:
        run_score(args)
    except CLIError as err:
        if args.debug:
            raise
        print(f"{PROG} {args.command}: error: {err}", file=sys.stderr)
        return 2
    except ScoringError as err:
        if args.debug:
            raise
        print(f"{PROG} {args.command}: error: {err} (run with --debug for the traceback)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
