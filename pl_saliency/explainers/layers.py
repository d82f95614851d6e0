"""Layers inside a model, for the layer-based explainers (:class:`~pl_saliency.GradCAM`, Captum layer
methods through :class:`~pl_saliency.CaptumExplainer`, :class:`~pl_saliency.DecoyEnhanced`).

* :func:`resolve_layer` finds a layer given as a module, a dotted name or a function of the model,
  also through ``torch.compile`` wrappers (``OptimizedModule._orig_mod`` is looked through, so
  ``"features.3"`` names the same layer in a compiled and in an uncompiled model).
* :func:`eager` runs ``torch.compile``'d code eagerly while an explainer that uses module hooks
  works: hooks registered after compilation are not seen by an already compiled graph (Captum's
  "Forward hook did not obtain any outputs for given layer", or Guided Backprop silently falling
  back to the plain gradient). Inside, the compiled model computes exactly what the uncompiled
  one does.
* :class:`LayerCapture` records a layer's output during a forward pass.
* :class:`TokenLayout` and :func:`spatial_map` read a layer's output as a spatial map
  (N, C, h, w): convolution outputs as they are, vision-transformer tokens (N, T, D) with the
  class/register tokens dropped and the patch tokens folded to their grid, Swin's channels-last
  (N, h, w, C) stages permuted. ``reshape_transform="auto"`` picks the layout from the model
  (torchvision's ``VisionTransformer`` and ``SwinTransformer``, timm's ViT family through its
  ``num_prefix_tokens``, timm's ``SwinTransformer*``); anything it cannot read as a spatial map is
  a ``ValueError`` naming ``layer``.
"""

from __future__ import annotations

import contextlib
import math
import sys
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor
from torch import nn

AUTO = "auto"


# --------------------------------------------------------------------------------------------------
# Resolving layers, compiled models
# --------------------------------------------------------------------------------------------------


def _is_compiled_wrapper(module: Any) -> bool:
    return type(module).__name__ == "OptimizedModule" and isinstance(getattr(module, "_orig_mod", None), nn.Module)


def unwrap_compiled(model: Any) -> Any:
    """The module inside ``torch.compile(module)`` (repeatedly); anything else is returned as it is."""
    while _is_compiled_wrapper(model):
        model = model._orig_mod
    return model


def _clean_name(name: str) -> str:
    return ".".join(part for part in name.split(".") if part != "_orig_mod")


def named_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` for every sub-module, named as without ``torch.compile`` wrappers."""
    seen: set[int] = set()
    out = []
    for name, module in unwrap_compiled(model).named_modules():
        if _is_compiled_wrapper(module) or id(module) in seen:
            continue
        seen.add(id(module))
        out.append((_clean_name(name), module))
    return out


def conv_layer_names(model: nn.Module) -> list[str]:
    """Names of the 2-D convolutions of ``model`` (the usual Grad-CAM layers), in definition order."""
    return [n for n, m in named_layers(model) if isinstance(m, nn.modules.conv._ConvNd) and len(m.kernel_size) == 2 and n]


def layer_name(model: Any, layer: Any, spec: Any) -> str:
    """A readable name for a resolved layer: the dotted name given, else its name inside the model."""
    if isinstance(spec, str):
        return spec
    if isinstance(model, nn.Module):
        for name, module in named_layers(model):
            if module is layer:
                return name or "<the model itself>"
    return type(layer).__name__


def check_layer_spec(layer: Any, name: str = "layer", allow_none: bool = False) -> None:
    """Constructor check: a module, a non-empty dotted name, or a function of the model."""
    if layer is None and allow_none:
        return
    if isinstance(layer, str):
        if not layer.strip() or any(not part for part in layer.split(".")):
            raise ValueError(
                f"Argument `{name}` must name a sub-module with a non-empty dotted name such as 'features.3', but got {layer!r}."
            )
        return
    if not isinstance(layer, nn.Module) and not callable(layer):
        raise TypeError(
            f"Argument `{name}` must be an nn.Module, a dotted module name or a function of the model, but got {type(layer).__name__}."
        )


def resolve_layer(model: Any, layer: Any, name: str = "layer") -> nn.Module:
    """A layer given as a module, as a dotted name (``"features.3"``) or as a function ``model -> module``.

    Names are resolved on the module inside ``torch.compile`` wrappers: ``"_orig_mod"`` parts (as
    ``named_modules()`` of a compiled model shows them) may be given or left out.
    """
    if isinstance(layer, nn.Module):
        return layer
    if isinstance(layer, str):
        check_layer_spec(layer, name)
        if not isinstance(model, nn.Module):
            raise TypeError(f"Argument `{name}` is the name {layer!r}, which needs an nn.Module model, but got {type(model).__name__}.")
        try:
            return unwrap_compiled(model).get_submodule(_clean_name(layer))
        except AttributeError as err:
            convs = conv_layer_names(model)
            names = convs[-10:] if convs else [n for n, _ in named_layers(model) if n][:20]
            kind = "its convolutional layers are" if convs else "e.g."
            raise ValueError(f"Argument `{name}` must name a sub-module of the model ({kind} {names}), but got {layer!r}.") from err
    if callable(layer):
        return resolve_layer(model, layer(unwrap_compiled(model)), name)
    raise TypeError(f"Argument `{name}` must be an nn.Module, a dotted module name or a function of the model, but got {type(layer).__name__}.")


@contextlib.contextmanager
def eager(model: Any) -> Iterator[None]:
    """Run ``torch.compile``'d code inside as plain eager PyTorch (``torch.compiler.set_stance("force_eager")``).

    Module hooks fire and the results equal the uncompiled model's. Nothing is done when dynamo was
    never imported (then nothing is compiled).
    """
    if "torch._dynamo" not in sys.modules:
        yield
        return
    set_stance = getattr(torch.compiler, "set_stance", None)
    if set_stance is None:  # pragma: no cover - torch < 2.6
        compiled = isinstance(model, nn.Module) and any(_is_compiled_wrapper(m) for m in unwrap_compiled(model).modules())
        if compiled:
            raise RuntimeError(
                "Argument `model` holds torch.compile'd sub-modules; hook-based explainers (Grad-CAM, Captum layer "
                "methods) need torch >= 2.6 to run them eagerly (torch.compiler.set_stance). Explain the uncompiled "
                "module instead (compiled and uncompiled share their parameters)."
            )
        yield
        return
    with set_stance("force_eager"):
        yield


# --------------------------------------------------------------------------------------------------
# Capturing a layer's output
# --------------------------------------------------------------------------------------------------


class LayerCapture:
    """A forward hook on ``layer`` that keeps its output of the last call and counts the calls.

    With ``clone=True`` the layer hands a clone of its output downstream (as Captum does), so that
    in-place operations after the layer (``ReLU(inplace=True)``) leave the recorded tensor as the
    layer produced it; gradients flow through the clone to the recorded tensor.
    """

    def __init__(self, layer: nn.Module, clone: bool = True) -> None:
        self.layer, self.clone = layer, clone
        self.calls = 0
        self.output: Any = None
        self._handle: Any = None

    def _hook(self, module: nn.Module, args: Any, output: Any) -> Any:
        self.calls += 1
        self.output = output
        if self.clone and isinstance(output, Tensor):
            return output.clone()
        return None

    def __enter__(self) -> LayerCapture:
        self._handle = self.layer.register_forward_hook(self._hook)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def check_ran(self, name: str) -> None:
        """Raise the ``layer`` error when the forward pass never called the layer."""
        if self.calls == 0:
            raise ValueError(
                f"Argument `layer`: {name!r} never ran in the model's forward pass, so it has no output to explain "
                "(is it part of this model, and used by its forward?)."
            )


# --------------------------------------------------------------------------------------------------
# Reading an output as a spatial map
# --------------------------------------------------------------------------------------------------


def _grid(tokens: int, input_size: tuple[int, int] | None) -> tuple[int, int] | None:
    """(h, w) with h·w = tokens and h / w = H / W of the input (a square grid without an input size)."""
    if tokens <= 0:
        return None
    if input_size is None:
        side = math.isqrt(tokens)
        return (side, side) if side * side == tokens else None
    big_h, big_w = int(input_size[0]), int(input_size[1])
    h = round(math.sqrt(tokens * big_h / big_w))
    for cand in (h, h - 1, h + 1):
        if cand > 0 and tokens % cand == 0 and cand * big_w == (tokens // cand) * big_h:
            return cand, tokens // cand
    return None


class TokenLayout:
    """How a layer's output is read as a spatial map (N, C, h, w).

    * ``(N, T, D)`` tokens: the first ``prefix_tokens`` (class, distillation and register tokens)
      are dropped and the remaining ``T - prefix_tokens`` patch tokens, row-major, are folded to
      ``grid`` = (h, w) (default: the grid with the input's aspect ratio; square when called
      without an input size), giving (N, D, h, w);
    * ``(N, h, w, C)`` with ``channels_last=True`` (Swin stages) is permuted to (N, C, h, w);
    * ``(N, C, h, w)`` (convolutions) is kept.

    Presets: torchvision's ViT ``TokenLayout(prefix_tokens=1)``; timm's ViT
    ``TokenLayout(prefix_tokens=model.num_prefix_tokens)`` (1 class token + register tokens); Swin
    (torchvision, timm >= 0.9) ``TokenLayout(channels_last=True)``. An instance is a valid
    ``reshape_transform``; ``layout(output)`` applies it.
    """

    def __init__(self, *, prefix_tokens: int = 0, grid: tuple[int, int] | None = None, channels_last: bool = False) -> None:
        if isinstance(prefix_tokens, bool) or not isinstance(prefix_tokens, int) or prefix_tokens < 0:
            raise ValueError(f"Argument `prefix_tokens` must be an int >= 0, but got {prefix_tokens!r}.")
        if grid is not None and (
            not isinstance(grid, (tuple, list)) or len(grid) != 2
            or any(isinstance(g, bool) or not isinstance(g, int) or g < 1 for g in grid)
        ):  # fmt: skip
            raise ValueError(f"Argument `grid` must be None or two ints (h, w) >= 1, but got {grid!r}.")
        if not isinstance(channels_last, bool):
            raise TypeError(f"Argument `channels_last` must be a bool, but got {type(channels_last).__name__}.")
        self.prefix_tokens, self.channels_last = prefix_tokens, channels_last
        self.grid = None if grid is None else (int(grid[0]), int(grid[1]))

    def __call__(self, output: Tensor, input_size: tuple[int, int] | None = None) -> Tensor:
        if output.ndim == 4:
            return output.permute(0, 3, 1, 2) if self.channels_last else output
        if output.ndim != 3:
            raise ValueError(f"expected tokens (N, T, D) or a map (N, C, h, w), got shape {tuple(output.shape)}")
        n, t, d = output.shape
        patches = t - self.prefix_tokens
        grid = self.grid or _grid(patches, input_size)
        if grid is None or grid[0] * grid[1] != patches:
            aspect = "" if input_size is None else f" with the input's aspect ratio {tuple(input_size)}"
            raise ValueError(
                f"{t} tokens less {self.prefix_tokens} prefix token(s) = {patches} patch tokens do not fill a grid{aspect}"
                + (f" {self.grid}" if self.grid else "")
            )
        return output[:, self.prefix_tokens :].reshape(n, grid[0], grid[1], d).permute(0, 3, 1, 2)

    def __repr__(self) -> str:
        return f"TokenLayout(prefix_tokens={self.prefix_tokens}, grid={self.grid}, channels_last={self.channels_last})"


def _owner(model: Any, layer: nn.Module) -> nn.Module | None:
    """The innermost recognised transformer (ViT / Swin, torchvision or timm) that contains ``layer``."""
    if not isinstance(model, nn.Module):
        return None
    found = None
    for _, module in named_layers(model):
        if _transformer_kind(module) is not None and any(m is layer for m in module.modules()):
            found = module  # named_modules goes outside-in: the last hit is the innermost
    return found


def _transformer_kind(module: nn.Module) -> str | None:
    cls = type(module).__name__
    if cls.startswith("SwinTransformer") and not cls.startswith("SwinTransformerBlock") and not cls.startswith("SwinTransformerStage"):
        return "swin"
    if isinstance(getattr(module, "num_prefix_tokens", None), int) and not isinstance(module.num_prefix_tokens, bool):
        return "timm_vit"
    if cls == "VisionTransformer" and isinstance(getattr(module, "class_token", None), nn.Parameter):
        return "torchvision_vit"
    return None


def auto_layout(model: Any, layer: nn.Module, output: Tensor, input_size: tuple[int, int]) -> TokenLayout:
    """The layout ``reshape_transform="auto"`` uses for ``layer``'s ``output``.

    * inside torchvision's ``VisionTransformer``: 1 prefix (class) token; inside timm's ViT family
      (any module with an int ``num_prefix_tokens``): that many prefix tokens;
    * inside a ``SwinTransformer*`` (torchvision, timm): 4-D outputs are channels-last (N, h, w, C),
      except convolutions and outputs whose last two dimensions are the grid (after the final
      permute); 3-D outputs (older timm) are tokens without prefix;
    * elsewhere: 4-D outputs are (N, C, h, w); 3-D tokens have no prefix when their count fills a
      grid with the input's aspect ratio, else one class token when that fits.
    """
    owner = _owner(model, layer)
    kind = None if owner is None else _transformer_kind(owner)
    if output.ndim == 4:
        if kind != "swin" or isinstance(layer, nn.modules.conv._ConvNd):
            return TokenLayout()
        big_h, big_w = input_size
        _, a, b, c = output.shape
        nhwc = big_h % a == 0 and big_w % b == 0 and big_h // a == big_w // b
        nchw = big_h % b == 0 and big_w % c == 0 and big_h // b == big_w // c
        return TokenLayout(channels_last=nhwc or not nchw)
    if kind == "torchvision_vit":
        return TokenLayout(prefix_tokens=1)
    if kind == "timm_vit":
        return TokenLayout(prefix_tokens=int(owner.num_prefix_tokens))  # type: ignore[union-attr]
    if output.ndim == 3 and kind is None and _grid(output.shape[1], input_size) is None:
        return TokenLayout(prefix_tokens=1)
    return TokenLayout()


def check_reshape_transform(value: Any, name: str = "reshape_transform") -> Any:
    """Constructor check: ``"auto"``, ``None`` (outputs must be (N, C, h, w)), or a callable."""
    if value is None or value == AUTO or callable(value):
        return value
    raise TypeError(
        f"Argument `{name}` must be 'auto', None or a callable output -> (N, C, h, w) (e.g. a TokenLayout), "
        f"but got {type(value).__name__} {value!r}."
    )


def spatial_map(
    output: Any,
    *,
    transform: Any,
    model: Any,
    layer: nn.Module,
    name: str,
    input_size: tuple[int, int],
) -> Tensor:
    """``output`` of ``layer`` read as (N, C, h, w) by ``transform`` (``"auto"``, None or a callable).

    Raises a ``ValueError`` naming ``layer`` when the output cannot be read as a spatial map.
    """

    def fail(why: str) -> ValueError:
        convs = conv_layer_names(model) if isinstance(model, nn.Module) else []
        hint = f"its convolutional layers are {convs[-10:]}" if convs else "this model has no 2-D convolutional layer"
        return ValueError(
            f"Argument `layer`: the output of {name!r} cannot be read as a spatial map (N, C, h, w): {why}. Choose a "
            f"layer with a spatial output ({hint}), or pass `reshape_transform` (e.g. pl_saliency.explainers.TokenLayout"
            "(prefix_tokens=1) for a ViT's class token) to read token outputs."
        )

    if not isinstance(output, Tensor):
        raise fail(f"it returned {type(output).__name__}, not a tensor")
    try:
        if transform == AUTO:
            if output.ndim not in (3, 4):
                raise fail(f"its shape is {tuple(output.shape)}")
            out = auto_layout(model, layer, output, input_size)(output, input_size)
        elif transform is None:
            out = output
        elif isinstance(transform, TokenLayout):
            out = transform(output, input_size)
        else:
            out = transform(output)
    except ValueError as err:
        if str(err).startswith("Argument `layer`"):
            raise
        raise fail(f"its shape is {tuple(output.shape)} ({err})") from err
    if not isinstance(out, Tensor) or out.ndim != 4 or out.shape[0] != output.shape[0]:
        got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise fail(f"its shape is {tuple(output.shape)}, read as {got}")
    return out
