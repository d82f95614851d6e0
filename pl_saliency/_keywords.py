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
import warnings
from collections.abc import Callable
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
