"""Read an offline W&B run (run-<id>.wandb) without W&B's servers.

The file is a log of protobuf `Record`s in LevelDB's log layout: a 7-byte file header
(":W&B", magic 0xBEE1 little-endian, version), then 32 KiB blocks of chunks, each with a 7-byte
header (CRC-32 (IEEE, as zlib.crc32) of type byte + payload, unmasked; payload length, uint16 LE; type:
1 full, 2 first, 3 middle, 4 last). A block tail shorter than a chunk header is zero padding.
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path
from typing import Any, Iterator

from ..errors import XRobustError

HEADER = b":W&B"
MAGIC = 0xBEE1
BLOCK = 32 * 1024
CHUNK_HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def find_run_file(path: str | Path) -> Path:
    p = Path(path)
    if p.is_dir():
        files = sorted(p.glob("run-*.wandb"))
        if not files:
            raise XRobustError(f"{p}: no run-*.wandb file in this folder (expected an offline-run-* directory)")
        return files[0]
    if not p.is_file():
        raise XRobustError(f"{p}: no such file or directory")
    return p


def iter_payloads(path: str | Path, check_crc: bool = True) -> Iterator[bytes]:
    path = find_run_file(path)
    data = path.read_bytes()
    if len(data) < 7 or data[:4] != HEADER or struct.unpack("<H", data[4:6])[0] != MAGIC:
        raise XRobustError(f"{path}: not a W&B run file (bad header {data[:7]!r})")
    pos = 7
    pending: bytearray | None = None
    while pos + CHUNK_HEADER <= len(data):
        left_in_block = BLOCK - pos % BLOCK
        if left_in_block < CHUNK_HEADER:
            pos += left_in_block
            continue
        crc, length, kind = struct.unpack("<IHB", data[pos:pos + CHUNK_HEADER])
        if crc == 0 and length == 0 and kind == 0:  # zero fill (preallocated or end)
            pos += left_in_block
            continue
        start = pos + CHUNK_HEADER
        payload = data[start:start + length]
        if len(payload) < length:
            break  # truncated tail: a run still being written or killed mid-record
        if check_crc and zlib.crc32(bytes([kind]) + payload) != crc:
            raise XRobustError(f"{path}: checksum mismatch in the record at byte {pos}")
        pos = start + length
        if kind == FULL:
            yield payload
        elif kind == FIRST:
            pending = bytearray(payload)
        elif kind in (MIDDLE, LAST) and pending is not None:
            pending += payload
            if kind == LAST:
                yield bytes(pending)
                pending = None
        else:
            raise XRobustError(f"{path}: unexpected chunk type {kind} at byte {pos}")


def iter_records(path: str | Path):
    from wandb.proto import wandb_internal_pb2 as pb

    for payload in iter_payloads(path):
        rec = pb.Record()
        rec.ParseFromString(payload)
        yield rec


def _value(item) -> Any:
    try:
        value = json.loads(item.value_json)
    except (ValueError, TypeError):
        value = item.value_json
    return value


def _key(item) -> str:
    return ".".join(item.nested_key) if len(item.nested_key) else item.key


def read_run(path: str | Path) -> dict[str, Any]:
    """{"file", "run_id", "project", "group", "config", "history": [rows with _step], "summary",
    "complete" (the run's exit record is there), "exit_code"}."""
    file = find_run_file(path)
    out: dict[str, Any] = {"file": str(file), "run_id": None, "project": None, "group": None, "config": {},
                           "history": [], "summary": {}, "complete": False, "exit_code": None}
    for rec in iter_records(file):
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            out["run_id"] = rec.run.run_id or out["run_id"]
            out["project"] = rec.run.project or out["project"]
            out["group"] = rec.run.run_group or out["group"]
            for item in rec.run.config.update:
                out["config"][_key(item)] = _value(item)
        elif kind == "config":
            for item in rec.config.update:
                out["config"][_key(item)] = _value(item)
            for item in rec.config.remove:
                out["config"].pop(_key(item), None)
        elif kind == "history":
            row = {_key(item): _value(item) for item in rec.history.item}
            if rec.history.HasField("step") and "_step" not in row:
                row["_step"] = rec.history.step.num
            out["history"].append(row)
        elif kind == "exit":
            out["complete"] = True
            out["exit_code"] = rec.exit.exit_code
        elif kind == "summary":
            for item in rec.summary.update:
                out["summary"][_key(item)] = _value(item)
            for item in rec.summary.remove:
                out["summary"].pop(_key(item), None)
    out["config"].pop("_wandb", None)
    return out
