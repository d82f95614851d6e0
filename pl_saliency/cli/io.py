"""Reading what the command line is given: models (checkpoints, factories), image folders, probe files.

Every ``torch.load`` of a user file passes ``weights_only=True`` explicitly, and so does every
``load_from_checkpoint``: a pickled payload in a checkpoint is refused, not run, even with
``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` set (that variable only changes calls that leave
``weights_only`` unset). ``--model-class`` / ``--model-factory`` import and run the named code: name
only code you trust.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch import nn

from pl_saliency.cli.common import CLIError
from pl_saliency.cli.common import json_object
from pl_saliency.cli.common import one_line

IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
"""File extensions read as images (torchvision's ``ImageFolder`` list), case-insensitive."""


# ---------------------------------------------------------------------------------------- model
def import_object(spec: str, option: str) -> Any:
    """``"package.module:Name"`` (``Name`` may be dotted) or ``"path/to/file.py:Name"`` → the object.
    This imports (runs) the named module or file."""
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
        raise CLIError(option, f"cannot import {module_name!r} ({one_line(err)}).") from err
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise CLIError(option, f"{module_name!r} has no attribute {attr!r}.")
        obj = getattr(obj, part)
    return obj


def read_checkpoint(path: Path, option: str = "--checkpoint") -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True)``: tensors and plain containers only."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001
        raise CLIError(option, f"could not read {path} ({one_line(err)}).") from err


def _read_state_dict(path: Path, option: str = "--checkpoint") -> dict[str, Tensor]:
    state = read_checkpoint(path, option)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise CLIError(option, f"expected a state dict (or a checkpoint with 'state_dict') in {path}, but got {type(state).__name__}.")
    return state


def model_loader(
    model_class: str | None = None,
    model_factory: str | None = None,
    factory_kwargs: str | None = None,
    *,
    option: str = "--checkpoint",
) -> Callable[[Path | None], nn.Module]:
    """Resolve ``--model-class`` / ``--model-factory`` once; returns ``load(path) -> model`` (eval mode, CPU).

    * ``model_class``: ``Class.load_from_checkpoint(path, map_location="cpu", weights_only=True)``.
    * ``model_factory`` (+ ``factory_kwargs`` JSON): ``factory(**kwargs)``; with a path, its state dict
      (or the checkpoint's ``"state_dict"``, read with ``weights_only=True``) is loaded into the result.
    """
    if (model_class is None) == (model_factory is None):
        raise CLIError(
            "--model-class/--model-factory",
            "pass exactly one: --checkpoint PATH --model-class module:Class, or --model-factory module:function.",
        )
    if model_class is not None:
        if factory_kwargs is not None:
            raise CLIError("--factory-kwargs", "only applies to --model-factory.")
        cls = import_object(model_class, "--model-class")
        if not isinstance(cls, type) or not hasattr(cls, "load_from_checkpoint"):
            raise CLIError("--model-class", f"{model_class} is not a LightningModule class (it has no load_from_checkpoint).")

        def load_class(path: Path | None) -> nn.Module:
            if path is None:
                raise CLIError(option, f"--model-class needs {option} PATH (a LightningModule checkpoint).")
            try:
                model = cls.load_from_checkpoint(str(path), map_location="cpu", weights_only=True)
            except Exception as err:  # noqa: BLE001
                raise CLIError(option, f"could not load {path} with {cls.__name__}.load_from_checkpoint ({one_line(err)}).") from err
            return model.eval()

        return load_class
    factory = import_object(model_factory, "--model-factory")  # type: ignore[arg-type]
    if not callable(factory):
        raise CLIError("--model-factory", f"{model_factory} is not callable (got {type(factory).__name__}).")
    kwargs = json_object(factory_kwargs, "--factory-kwargs")

    def load_factory(path: Path | None) -> nn.Module:
        try:
            model = factory(**kwargs)
        except Exception as err:  # noqa: BLE001
            raise CLIError("--model-factory", f"{model_factory}(**{kwargs}) failed ({one_line(err)}).") from err
        if not isinstance(model, nn.Module):
            raise CLIError("--model-factory", f"{model_factory} must return an nn.Module, but returned {type(model).__name__}.")
        if path is not None:
            state = _read_state_dict(path, option)
            try:
                model.load_state_dict(state)
            except Exception as err:  # noqa: BLE001
                raise CLIError(option, f"the weights in {path} do not fit {model_factory} ({one_line(err)}).") from err
        return model.eval()

    return load_factory


def load_model(
    checkpoint: str | None = None,
    model_class: str | None = None,
    model_factory: str | None = None,
    factory_kwargs: str | None = None,
) -> nn.Module:
    """The model to score, in eval mode on the CPU (see :func:`model_loader`)."""
    path = None
    if checkpoint is not None:
        path = Path(checkpoint)
        if not path.is_file():
            raise CLIError("--checkpoint", f"no such file: {checkpoint}.")
    if model_class is not None and model_factory is None and path is None:
        raise CLIError("--checkpoint", "--model-class needs --checkpoint PATH (a LightningModule checkpoint).")
    return model_loader(model_class, model_factory, factory_kwargs)(path)


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

    def names(self) -> list[str]:
        """The files relative to the root, POSIX style."""
        return [f.relative_to(self.root).as_posix() for f in self.files]


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
            with Image.open(path) as opened:
                opened.load()
                img = opened.convert("L" if grayscale else "RGB")
                if size is not None:
                    img = img.resize((size[1], size[0]), Image.Resampling.BILINEAR)
                arr = np.asarray(img, dtype=np.float32) / 255.0
        except Exception as err:  # noqa: BLE001 - PIL raises several kinds for corrupt files
            raise CLIError("--images", f"cannot read image {path} ({one_line(err)}).") from err
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


# ---------------------------------------------------------------------------------------- probe files
@dataclass
class ProbeData:
    """A fixed probe: inputs (N, C, H, W), labels (N,) (None: explain the predictions), stable ids,
    extras (per-sample tensors for ``context.extras``) and display names."""

    inputs: Tensor
    labels: Tensor | None
    ids: Tensor | None
    extras: dict[str, Tensor]
    names: list[str]
    source: str


def _monitor_state(ckpt: dict[str, Any]) -> dict[str, Any] | None:
    callbacks = ckpt.get("callbacks")
    if not isinstance(callbacks, dict):
        return None
    for key, state in callbacks.items():
        if str(key).startswith("SaliencyMonitor") and isinstance(state, dict) and state.get("probe_inputs") is not None:
            return state
    return None


def load_probe(path: str | Path, option: str = "--probe") -> ProbeData:
    """A probe saved with ``torch.save({"inputs": x, "targets": y[, "ids": ids, "extras": {...}]}, path)``
    (``"labels"`` also read; without targets the predictions are explained), or the probe a
    ``SaliencyMonitor`` kept in a Lightning checkpoint. Read with ``weights_only=True``."""
    p = Path(path)
    if not p.is_file():
        raise CLIError(option, f"no such file: {path}.")
    data = read_checkpoint(p, option)
    if not isinstance(data, dict):
        raise CLIError(option, f"expected a dict with 'inputs' and 'targets' in {path}, but got {type(data).__name__}.")
    state = _monitor_state(data)
    if state is not None:
        x, y, ids, extras = state["probe_inputs"], state.get("probe_targets"), state.get("probe_ids"), state.get("probe_extras") or {}
        source = f"SaliencyMonitor probe in {p.name}"
    elif "inputs" in data:
        x = data["inputs"]
        y = data.get("targets", data.get("labels"))
        ids, extras = data.get("ids", data.get("sample_ids")), data.get("extras") or {}
        source = p.name
    else:
        raise CLIError(option, f"{path} holds neither 'inputs' nor a SaliencyMonitor probe (keys: {sorted(map(str, data))[:10]}).")
    if not isinstance(x, Tensor) or x.ndim != 4 or not x.is_floating_point():
        raise CLIError(option, f"'inputs' must be a float tensor (N, C, H, W), but got {_describe(x)}.")
    n = x.shape[0]
    if y is not None and (not isinstance(y, Tensor) or y.shape != (n,)):
        raise CLIError(option, f"'targets' must be a tensor of shape ({n},), but got {_describe(y)}.")
    if ids is not None and (not isinstance(ids, Tensor) or ids.numel() != n):
        raise CLIError(option, f"'ids' must be a tensor of {n} ids, but got {_describe(ids)}.")
    if not isinstance(extras, dict) or any(not isinstance(v, Tensor) or v.shape[:1] != (n,) for v in extras.values()):
        raise CLIError(option, f"'extras' must be a dict of tensors with {n} rows.")
    names = [f"probe[{i}]" for i in range(n)]
    return ProbeData(x.float(), None if y is None else y.long(), None if ids is None else ids.reshape(-1).long(), dict(extras), names, source)


def _describe(x: Any) -> str:
    return f"tensor of shape {tuple(x.shape)} ({x.dtype})" if isinstance(x, Tensor) else type(x).__name__
