"""Shared pieces of the command line: errors, option parsing helpers, the early checks of ``--out``
and ``--device``, and CSV text escaping. Imports nothing heavier than torch."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

PROG = "pl-saliency"

#: first characters that make a spreadsheet read a cell as a formula (OWASP "CSV injection")
FORMULA_START: tuple[str, ...] = ("=", "+", "-", "@", "\t", "\r")


class CLIError(Exception):
    """A problem with a command-line option: reported as ``<option>: <message>``, exit status 2."""

    def __init__(self, option: str, message: str) -> None:
        super().__init__(f"{option}: {message}")
        self.option = option


class ScoringError(Exception):
    """An explainer, metric or model failed while scoring: reported in one line, exit status 1."""


class ReportError(Exception):
    """Writing the report failed after scoring: the table was printed and what was computed kept;
    reported in one line, exit status 1."""


def one_line(err: BaseException) -> str:
    """``"TypeError: first line of the message"``."""
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}".rstrip(": ")


def split_names(text: str, option: str) -> list[str]:
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise CLIError(option, f"expected a comma-separated list of names, but got {text!r}.")
    return names


def json_object(text: str | None, option: str) -> dict[str, Any]:
    if text is None:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise CLIError(option, f"expected a JSON object, but got {text!r} ({err}).") from None
    if not isinstance(value, dict):
        raise CLIError(option, f"expected a JSON object, but got {type(value).__name__} {text!r}.")
    return value


def per_name_kwargs(text: str | None, option: str, names: Sequence[str], rename: Any = None) -> dict[str, dict[str, Any]]:
    """``{"<name>": {keyword arguments}}`` for names among ``names`` (``rename`` maps a key first, e.g.
    a metric alias to the registry's name)."""
    value = json_object(text, option)
    out: dict[str, dict[str, Any]] = {}
    for key, kw in value.items():
        name = rename(key) if rename is not None and key not in names else key
        if name not in names:
            raise CLIError(option, f"key {key!r} is not one of the selected names {list(names)}.")
        if not isinstance(kw, dict):
            raise CLIError(option, f"the value for {key!r} must be a JSON object of keyword arguments, but got {kw!r}.")
        out[name] = kw
    return out


def check_device(text: str, option: str = "--device") -> Any:
    """The ``torch.device`` named by ``text``, checked to exist on this machine (before any work)."""
    import torch

    try:
        dev = torch.device(text)
    except (RuntimeError, ValueError, TypeError) as err:
        raise CLIError(option, f"not a torch device: {text!r} ({one_line(err)}).") from err
    if dev.type == "meta":
        raise CLIError(option, f"{text!r} holds no data; use cpu or an accelerator such as cuda.")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise CLIError(option, f"{text!r} needs a CUDA GPU, but torch.cuda.is_available() is False on this machine; use --device cpu.")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise CLIError(option, f"{text!r} does not exist: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}.")
    try:
        torch.empty(1, device=dev)
    except Exception as err:  # noqa: BLE001 - any backend's refusal is the option's fault
        raise CLIError(option, f"cannot use {text!r} on this machine ({one_line(err)}).") from err
    return dev


def check_out(text: str | Path, option: str = "--out") -> Path:
    """``--out`` as a folder that can be written: an existing folder, or a new one whose nearest
    existing ancestor is a writable folder. Checked by creating (and removing) a temporary file, so
    the check holds for permissions, read-only file systems and quotas alike. Creates nothing."""
    out = Path(text)
    if out.exists():
        if not out.is_dir():
            raise CLIError(option, f"{out} exists and is not a folder; pass a new or an existing folder.")
        where = out
    else:
        where = out.parent
        while not where.exists() and where != where.parent:
            where = where.parent
        if not where.is_dir():
            raise CLIError(option, f"{out} is below {where}, which is a file, not a folder.")
    try:
        with tempfile.TemporaryFile(dir=where):
            pass
    except OSError as err:
        raise CLIError(option, f"cannot write in {where} ({one_line(err)}).") from err
    return out


def csv_text(value: Any) -> str:
    """Text for a CSV cell that a spreadsheet will not run: a leading ``= + - @``, tab or carriage
    return gets a ``'`` in front (OWASP's advice against CSV/formula injection)."""
    text = str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


def print_warnings(records: list[Any], seen: set[str], prefix: str) -> None:
    """Print each recorded warning's message once (``seen`` holds those already printed) to stderr, one
    line each; failures are reported on their own, so "its scores are absent" warnings are skipped."""
    import sys

    for record in records:
        text = str(record.message).strip().splitlines()[0] if str(record.message).strip() else ""
        if text and text not in seen and "its scores are absent" not in text:
            seen.add(text)
            print(f"{PROG} {prefix}: warning: {text}", file=sys.stderr)
