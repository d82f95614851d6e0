"""Read what an offline W&B run wrote to disk: history rows from the ``.wandb`` record log, and media.

The ``.wandb`` file is a LevelDB-style log (a 7-byte file header ``:W&B`` + magic + version, then
32 KiB blocks of records, each with a 7-byte header: CRC32, length, type FULL/FIRST/MIDDLE/LAST)
holding protobuf ``Record`` messages. Only the standard library and wandb's own protobuf classes
are used, so the check does not depend on a wandb reader API.
"""

from __future__ import annotations

import json
import struct
import time
import zlib
from pathlib import Path
from typing import Any

_BLOCK = 32768
_HEADER = 7
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def _records(path: Path) -> list[bytes]:
    data = path.read_bytes()
    ident, magic, version = struct.unpack("<4sHB", data[:_HEADER])
    if ident != b":W&B" or magic != 0xBEE1:
        raise ValueError(f"{path} is not a W&B record log (header {ident!r}, magic {magic:#x}).")
    out: list[bytes] = []
    pos, pending = _HEADER, b""
    while pos + _HEADER <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < _HEADER:  # block trailer padding
            pos += left
            continue
        crc, length, kind = struct.unpack("<IHB", data[pos : pos + _HEADER])
        pos += _HEADER
        chunk = data[pos : pos + length]
        pos += length
        if kind == 0 and length == 0 and crc == 0:  # zero padding at the end of a block
            continue
        if zlib.crc32(chunk, zlib.crc32(bytes([kind]))) & 0xFFFFFFFF != crc:
            raise ValueError(f"Checksum mismatch in {path} at byte {pos - length - _HEADER}: the record log is corrupt or misread.")
        if kind == _FULL:
            out.append(chunk)
        elif kind == _FIRST:
            pending = chunk
        elif kind == _MIDDLE:
            pending += chunk
        elif kind == _LAST:
            out.append(pending + chunk)
            pending = b""
        else:
            raise ValueError(f"Unknown record type {kind} at byte {pos} of {path}.")
    return out


def _parsed(run_dir: Path, timeout: float = 60.0) -> list[Any]:
    """All records of a finished run. ``run.finish()`` can return before wandb's writer has flushed
    the log's tail, so wait until the file parses cleanly and ends with the run's exit record."""
    from wandb.proto import wandb_internal_pb2

    (log,) = Path(run_dir).glob("run-*.wandb")
    deadline = time.monotonic() + timeout
    while True:
        try:
            recs = []
            for raw in _records(log):
                rec = wandb_internal_pb2.Record()
                rec.ParseFromString(raw)
                recs.append(rec)
            if any(r.WhichOneof("record_type") == "exit" for r in recs):
                return recs
            problem = "no exit record yet"
        except ValueError as err:
            problem = str(err)
        if time.monotonic() > deadline:
            raise TimeoutError(f"{log} did not become complete within {timeout} s: {problem}")
        time.sleep(0.2)


def history(run_dir: Path) -> list[dict[str, Any]]:
    """Every history row logged in an offline run, as {key: decoded JSON value}."""
    rows = []
    for rec in _parsed(run_dir):
        if rec.WhichOneof("record_type") == "history":
            row = {}
            for item in rec.history.item:
                key = item.key or "/".join(item.nested_key)
                row[key] = json.loads(item.value_json)
            rows.append(row)
    return rows


def run_dirs(save_dir: Path) -> list[Path]:
    """Offline run folders under a WandbLogger's ``save_dir``."""
    return sorted(Path(save_dir).glob("wandb/offline-run-*"))


def records(run_dir: Path, kind: str) -> list[Any]:
    """Every protobuf record of one kind ("metric", "config", "summary", "history", …) in a run."""
    return [getattr(rec, kind) for rec in _parsed(run_dir) if rec.WhichOneof("record_type") == kind]


def summary(run_dir: Path) -> dict[str, Any]:
    """The run summary as last written: {key: decoded value} (nested keys joined by '/')."""
    out: dict[str, Any] = {}
    for rec in records(run_dir, "summary"):
        for item in rec.update:
            out[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
    return out


def config(run_dir: Path) -> dict[str, Any]:
    """The run config as last written: {key: decoded value}."""
    out: dict[str, Any] = {}
    for rec in records(run_dir, "config"):
        for item in rec.update:
            out[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
    return out
