"""Line-numbered JSONL reading with errors that name the file, line and field."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dreamir.files import atomic_open


class DataError(ValueError):
    """Bad input data; the message names the file, the line and, where known, the field."""

    def __init__(self, path: str | os.PathLike, line: int | None, message: str, field: str | None = None):
        where = f"{path}" + (f", line {line}" if line is not None else "")
        what = f"field '{field}': " if field else ""
        super().__init__(f"{where}: {what}{message}")
        self.path, self.line, self.field = str(path), line, field


def iter_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, object) for every non-blank line; bad JSON or bytes raise DataError."""
    path = Path(path)
    if path.suffix == ".gz":
        raise DataError(path, None, "gzip-compressed; decompress it first (gunzip -k FILE) and pass the .jsonl")
    require_regular_file(path)
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8")  # a BOM is an editor's, not data
            except UnicodeDecodeError as err:
                raise DataError(path, number, f"not valid UTF-8 (byte offset {err.start} in the line)") from None
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(path, number, f"malformed JSON: {err.msg} at column {err.colno}") from None
            except RecursionError:
                raise DataError(path, number, "JSON nested too deeply to read") from None
            if not isinstance(obj, dict):
                raise DataError(path, number, f"expected a JSON object, got {type(obj).__name__}")
            yield number, obj


def require_regular_file(path: str | os.PathLike) -> None:
    """An input must be a regular file: a FIFO or a device (e.g. /dev/zero) would block or never end."""
    path = Path(path)
    if path.is_file():
        return
    if path.exists():
        kind = "a folder" if path.is_dir() else "not a regular file (a pipe, socket or device)"
        raise DataError(path, None, f"{kind}; give a JSONL file")
    if path.is_symlink():
        raise DataError(path, None, f"a symbolic link to {os.readlink(path)}, which does not exist")
    raise DataError(path, None, "file not found")


def require_str(path, line: int, obj: dict, field: str, allow_empty: bool = False) -> str:
    if field not in obj:
        raise DataError(path, line, "missing", field)
    value = obj[field]
    if not isinstance(value, str):
        raise DataError(path, line, f"expected a string, got {type(value).__name__}", field)
    if not allow_empty and not value.strip():
        raise DataError(path, line, "empty", field)
    return value


def write_jsonl_atomic(path: str | os.PathLike, rows) -> int:
    """Write rows to path via a temp file + rename; returns the number written."""
    count = 0
    with atomic_open(path) as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
    return count
