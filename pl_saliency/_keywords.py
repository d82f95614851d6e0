"""Keyword-only constructors with a deprecation path for positional calls.

Every public class's options are keyword-only (``DeletionAUC(steps=20)``, not ``DeletionAUC(None, "morf",
20)``): a call reads the same whatever order the signature lists, and adding an option never shifts
another. A class keeps at most its one required subject positional (the layer of ``GradCAM``, the
metric of ``ControlledScore``, the explainer of ``MPRT``, the explainers and metrics of the monitor).

Code written against 0.1, where options could be passed by position, keeps working for one release:
:func:`keyword_only` maps surplus positional values onto the keyword-only parameters in their declared
order and emits one ``FutureWarning`` naming them, the way scikit-learn's ``_deprecate_positional_args``
did. The wrapper keeps the signature (``inspect.signature`` follows ``__wrapped__``), so Lightning's CLI
and ``jsonargparse`` see the real parameters.
"""

from __future__ import annotations

import functools
import inspect
import typing
import warnings
from collections.abc import Callable
from collections.abc import Mapping
from typing import Any
from typing import TypeVar

F = TypeVar("F", bound=Callable[..., Any])

#: the release in which a positional option becomes an error
REMOVAL = "0.3"


def keyword_only(init: F) -> F:
    """Decorate an ``__init__`` whose options follow ``*``: positional options still work, with a warning.

    Example:
        >>> class Opts:
        ...     @keyword_only
        ...     def __init__(self, subject, *, steps=10, order="morf"):
        ...         self.subject, self.steps, self.order = subject, steps, order
        >>> import warnings
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     o = Opts("a", 5)
        >>> o.steps, caught[0].category.__name__
        (5, 'FutureWarning')
    """
    params = list(inspect.signature(init).parameters.values())[1:]  # without `self`
    if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params):
        raise TypeError(f"keyword_only: {init.__qualname__} takes *args, so surplus positionals cannot be mapped")
    n_positional = sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params)
    keywords = [p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY]

    @functools.wraps(init)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> None:
        if len(args) > n_positional:
            extra = args[n_positional:]
            cls = type(self).__name__
            if len(extra) > len(keywords):
                raise TypeError(
                    f"{cls}() takes at most {n_positional + len(keywords)} arguments by position; "
                    f"got {len(args)}"
                )
            names = keywords[: len(extra)]
            for name, value in zip(names, extra):
                if name in kwargs:
                    raise TypeError(f"{cls}() got multiple values for argument `{name}`")
                kwargs[name] = value
            listed = ", ".join(f"`{n}`" for n in names)
            warnings.warn(
                f"Passing {listed} to {cls}() by position is deprecated and will be an error in pl_saliency "
                f"{REMOVAL}: pass {', '.join(f'{n}=...' for n in names)} by keyword.",
                FutureWarning,
                stacklevel=2,
            )
            args = args[:n_positional]
        init(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


def declared_options(
    keywords: Any,
    defaults: Mapping[str, Any],
    /,
    *,
    leading: tuple[str, ...] = (),
    forwarded: Any = None,
    **overrides: Any,
) -> Callable[[F], F]:
    """Give ``fn(…, **settings: Unpack[keywords])`` the explicit signature of its options, declared once.

    ``keywords`` is a ``TypedDict`` (the option names and types, which type checkers read through
    ``Unpack``); ``defaults`` is the one table of defaults those names share (e.g.
    :data:`pl_saliency.spec.OPTION_DEFAULTS`), ``overrides`` the defaults where this function differs.
    ``**settings`` is replaced by the options as keyword-only parameters; the keyword-only parameters
    (the function's own, such as ``return_curves``, and the options) are listed in the table's order,
    the names of ``leading`` first, names not in the table before the others. A call is bound against
    that signature: an unknown keyword raises ``TypeError`` as for any function, and a missing option
    gets its default, so ``fn`` always receives every option. ``help()``, ``inspect.signature``, Sphinx and Lightning's
    CLI (``jsonargparse``) read the explicit signature; type checkers read ``Unpack[keywords]``.
    ``forwarded`` (a ``TypedDict`` whose keys ``keywords`` includes) names the keywords that ``fn``
    only passes on, such as torchmetrics' ``Metric`` options: they are not listed, the signature ends
    with ``**kwargs`` for them, and they reach ``fn`` in ``**settings`` with the options.

    Example:
        >>> from typing import TypedDict
        >>> class Opts(TypedDict, total=False):
        ...     steps: int
        ...     order: str
        >>> @declared_options(Opts, {"order": "morf", "steps": 50}, steps=10)
        ... def run(x, **settings):
        ...     return x, settings
        >>> import inspect
        >>> str(inspect.signature(run))
        "(x, *, order: str = 'morf', steps: int = 10)"
        >>> run(1, order="lerf")
        (1, {'order': 'lerf', 'steps': 10})
    """
    var_keyword = None if forwarded is None else "kwargs"
    passed_on = set(getattr(forwarded, "__annotations__", {}))
    names = [n for n in getattr(keywords, "__annotations__", {}) if n not in passed_on]
    try:
        hints = typing.get_type_hints(keywords)
    except (NameError, TypeError):  # a name only imported for type checking: keep its string
        hints = dict(getattr(keywords, "__annotations__", {}))
    unknown = sorted(set(overrides) - set(names))
    missing = sorted(n for n in names if n not in defaults and n not in overrides)
    if unknown or missing:
        raise TypeError(
            f"declared_options({getattr(keywords, '__name__', keywords)}): defaults for undeclared names {unknown} "
            f"or no default for {missing}"
        )
    options = [
        inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=overrides.get(n, defaults.get(n)), annotation=hints[n])
        for n in names
    ]
    table = list(defaults)

    def place(p: inspect.Parameter) -> tuple[int, int]:
        if p.name in leading:
            return (0, leading.index(p.name))
        return (1, table.index(p.name)) if p.name in table else (1, -1)

    def decorate(fn: F) -> F:
        own, returns = _open_signature(fn, names, "declared_options", "**settings")
        keyword = sorted([p for p in own if p.kind is inspect.Parameter.KEYWORD_ONLY] + options, key=place)
        params = [p for p in own if p.kind is not inspect.Parameter.KEYWORD_ONLY] + keyword
        if var_keyword is not None:
            params.append(inspect.Parameter(var_keyword, inspect.Parameter.VAR_KEYWORD))
        signature = inspect.Signature(params, return_annotation=returns)
        return _bound_to(fn, signature)

    return decorate


def options_of(
    function: Callable[..., Any],
    /,
    *,
    drop: tuple[str, ...] = ("reduction", "return_curves", "context"),
    added: Mapping[str, Any] | None = None,
    **overrides: Any,
) -> Callable[[F], F]:
    """Give a Metric's ``__init__(self, options, **settings)`` the options of its functional twin,
    declared once there.

    The constructor's keyword-only parameters are ``function``'s (names, types, defaults, order), less
    ``drop`` (what only a call returns or reduces), with the defaults of ``overrides``, followed by
    ``added`` (default ``keep_per_sample=False``) and ``**kwargs`` for torchmetrics' options. A call is
    bound against that signature as with :func:`declared_options`; ``__init__`` receives the twin's
    options as the dict ``options`` and the rest (``added`` and torchmetrics' options) in
    ``**settings``. A keyword of ``drop`` is refused as torchmetrics refuses unknown ones. ``help()``,
    ``inspect.signature`` and Lightning's CLI read the explicit signature.

    Example:
        >>> def score(model, inputs, *, runs: int = 4, reduction: str = "mean"):
        ...     pass
        >>> class Score:
        ...     @options_of(score, runs=8)
        ...     def __init__(self, options, **settings):
        ...         self.options, self.settings = options, settings
        >>> import inspect
        >>> str(inspect.signature(Score))
        '(*, runs: int = 8, keep_per_sample: bool = False, **kwargs)'
        >>> s = Score(sync_on_compute=False)
        >>> s.options, s.settings
        ({'runs': 8}, {'keep_per_sample': False, 'sync_on_compute': False})
    """
    added = {"keep_per_sample": False} if added is None else dict(added)
    twin, _ = _resolved(function)
    options = [p for p in twin if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name not in drop]
    unknown = sorted(set(overrides) - {p.name for p in options})
    if unknown:
        raise TypeError(f"options_of({function.__name__}): defaults for names it does not take: {unknown}")
    options = [p.replace(default=overrides.get(p.name, p.default)) for p in options]
    names = [p.name for p in options]
    dropped = {p.name for p in twin if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name in drop}
    options += [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=value, annotation=type(value))
        for name, value in added.items()
    ]

    def decorate(init: F) -> F:
        own, returns = _resolved(init)
        positional = [inspect.Parameter.POSITIONAL_OR_KEYWORD] * 2
        if [p.kind for p in own] != [*positional, inspect.Parameter.VAR_KEYWORD]:
            raise TypeError(f"options_of: {init.__qualname__} must be `(self, options, **settings)`")
        params = [own[0], *options, inspect.Parameter("kwargs", inspect.Parameter.VAR_KEYWORD)]

        @functools.wraps(init)
        def split(self: Any, **settings: Any) -> Any:
            passed = sorted(set(settings) & dropped)
            if passed:  # the twin's per-call keywords are no constructor options: refuse them as torchmetrics does
                raise ValueError(f"Unexpected keyword arguments: {', '.join(f'`{n}`' for n in passed)}")
            return init(self, {n: settings.pop(n) for n in names}, **settings)

        return _bound_to(split, inspect.Signature(params, return_annotation=returns))  # type: ignore[return-value]

    return decorate


def keywords_of(function: Callable[..., Any], /, *, drop: tuple[str, ...] = ()) -> Callable[[F], F]:
    """Give ``fn(…, **options)``, a function that passes its options on to ``function``, the keyword-only
    parameters of ``function`` (names, types, defaults, order), less ``drop``: declared once, there.

    ``fn``'s own parameters come first; ``**options`` is replaced by the borrowed ones. A call is
    bound against that signature as with :func:`declared_options` (an unknown keyword raises
    ``TypeError``; a missing one gets ``function``'s default), so ``fn`` receives every borrowed option.
    Type checkers read ``**options: Any``; ``help()``, ``inspect.signature`` and Sphinx read the
    explicit signature.

    Example:
        >>> def compare(x, values, *, fixed=None, keep=False):
        ...     return x, values, fixed, keep
        >>> @keywords_of(compare)
        ... def compare_two(x, a, b, **options):
        ...     return compare(x, (a, b), **options)
        >>> import inspect
        >>> str(inspect.signature(compare_two))
        '(x, a, b, *, fixed=None, keep=False)'
        >>> compare_two(1, "p", "q", keep=True)
        (1, ('p', 'q'), None, True)
    """
    borrowed, _ = _resolved(function)
    options = [p for p in borrowed if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name not in drop]
    unknown = sorted(set(drop) - {p.name for p in borrowed})
    if unknown:
        raise TypeError(f"keywords_of({function.__name__}): drops names it does not take: {unknown}")

    def decorate(fn: F) -> F:
        own, returns = _open_signature(fn, [p.name for p in options], "keywords_of", "**options")
        return _bound_to(fn, inspect.Signature([*own, *options], return_annotation=returns))

    return decorate


def _open_signature(fn: Callable[..., Any], names: list[str], owner: str, var: str) -> tuple[list[inspect.Parameter], Any]:
    """``fn``'s parameters before its final ``**`` parameter, where the options ``names`` will go, and its
    return annotation; ``TypeError`` (naming ``owner``) if ``fn`` has no final ``var`` or declares one of
    ``names`` itself."""
    own, returns = _resolved(fn)
    if not own or own[-1].kind is not inspect.Parameter.VAR_KEYWORD:
        raise TypeError(f"{owner}: {fn.__qualname__} must end with {var}")
    clash = {p.name for p in own} & set(names)
    if clash:
        raise TypeError(f"{owner}: {fn.__qualname__} declares {sorted(clash)} itself")
    return own[:-1], returns


def _resolved(fn: Callable[..., Any]) -> tuple[list[inspect.Parameter], Any]:
    """``fn``'s parameters and return annotation, with the annotations evaluated where they can be."""
    try:
        hints = typing.get_type_hints(fn)
    except (NameError, TypeError):  # a name only imported for type checking: keep the strings
        hints = {}
    signature = inspect.signature(fn)
    params = [p.replace(annotation=hints.get(p.name, p.annotation)) for p in signature.parameters.values()]
    returns = hints.get("return", signature.return_annotation)
    return params, None if returns is type(None) else returns


def _bound_to(fn: F, signature: inspect.Signature) -> F:
    """``fn`` behind ``signature``: a call is bound and completed with the defaults; positional-or-keyword
    values are passed by position, the rest (``**`` values unpacked) by keyword."""
    positional = [p.name for p in signature.parameters.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    var_keyword = next((p.name for p in signature.parameters.values() if p.kind is p.VAR_KEYWORD), None)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        arguments = bound.arguments
        extra = arguments.pop(var_keyword, {}) if var_keyword is not None else {}
        values = [arguments.pop(n) for n in positional if n in arguments]
        return fn(*values, **arguments, **extra)

    wrapper.__signature__ = signature  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in signature.parameters.values() if p.annotation is not p.empty}
    if signature.return_annotation is not signature.empty:
        wrapper.__annotations__["return"] = signature.return_annotation
    return wrapper  # type: ignore[return-value]
