"""Read what an offline W&B run wrote to disk: history rows from the ``.wandb`` record log, and media.

The ``.wandb`` file is a LevelDB-style log (a 7-byte file header ``:W&B`` + magic + version, then
32 KiB blocks of records, each with a 7-byte header: CRC32, length, type FULL/FIRST/MIDDLE/LAST)
holding protobuf ``Record`` messages. Only the standard library and wandb's own protobuf classes
are used, so the check does not depend on a wandb reader API.
"""

from __future__ import annotations

import json
import struct
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
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + _HEADER])
        pos += _HEADER
        chunk = data[pos : pos + length]
        pos += length
        if kind == _FULL:
            out.append(chunk)
        elif kind == _FIRST:
            pending = chunk
        elif kind == _MIDDLE:
            pending += chunk
        elif kind == _LAST:
            out.append(pending + chunk)
            pending = b""
        elif kind == 0 and length == 0:
            continue
        else:
            raise ValueError(f"Unknown record type {kind} at byte {pos} of {path}.")
    return out


def history(run_dir: Path) -> list[dict[str, Any]]:
    """Every history row logged in an offline run, as {key: decoded JSON value}."""
    from wandb.proto import wandb_internal_pb2

    (log,) = Path(run_dir).glob("run-*.wandb")
    rows = []
    for raw in _records(log):
        rec = wandb_internal_pb2.Record()
        rec.ParseFromString(raw)
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
