"""Reading an offline W&B run back from its ``run-<id>.wandb`` file (W&B's own protobufs).

The file is W&B's 7-byte header then LevelDB log records (32 KiB blocks, each record a
7-byte header: CRC, little-endian length, type FULL/FIRST/MIDDLE/LAST).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from wandb.proto import wandb_internal_pb2 as pb

_BLOCK = 32 * 1024
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def records(path: Path) -> list[Any]:
    data = path.read_bytes()
    assert data[:4] == b":W&B"
    out, pos, pending = [], 7, b""
    while pos + 7 <= len(data):
        if _BLOCK - pos % _BLOCK < 7:  # a block's tail too short for a header is padding
            pos += _BLOCK - pos % _BLOCK
            continue
        length = int.from_bytes(data[pos + 4 : pos + 6], "little")
        kind = data[pos + 6]
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (_FULL, _LAST):
            record = pb.Record()
            record.ParseFromString(pending + chunk)
            out.append(record)
            pending = b""
        elif kind in (_FIRST, _MIDDLE):
            pending += chunk
    return out


def finished_records(path: Path, timeout: float = 30.0) -> list[Any]:
    """The records once the run's ``exit`` record is on disk: ``run.finish()`` returns before
    W&B's writer process has flushed an offline run."""
    deadline = time.monotonic() + timeout
    while True:
        found = records(path)
        if any(r.WhichOneof("record_type") == "exit" for r in found):
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} has no exit record after {timeout} s")
        time.sleep(0.1)


def history_and_summary(path: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Every logged row, and the final summary, as plain dicts."""
    rows, summary = [], {}
    for r in finished_records(path):
        kind = r.WhichOneof("record_type")
        if kind == "history":
            items = r.history.item
            rows.append({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in items})
        elif kind == "summary":
            for i in r.summary.update:
                summary[i.key or "/".join(i.nested_key)] = json.loads(i.value_json)
    return rows, summary
