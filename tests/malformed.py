"""A generator of malformed inputs for any JSONL loader, so each new loader gets the same treatment.

    for case in jsonl_cases(good_rows, fields={"_id": "id", "text": "str"}): ...

From a few valid rows and the loader's field kinds it derives one broken file per mutation: bad JSON,
non-UTF-8 bytes, a non-object line, each field missing / of the wrong type / empty, ids with a lone
surrogate, a tab or surrounding spaces, booleans where integers belong, a BOM, an empty file. Each case
says what a careful loader must do: "error" (DataError naming the file, the line and, where set, the
field) or "ok" (load without an exception; the case is tolerated by design, e.g. stripped spaces).
"""

from __future__ import annotations

import json
from dataclasses import dataclass


@dataclass(frozen=True)
class Case:
    name: str
    content: bytes
    expect: str  # "error" or "ok"
    line: int | None = None  # the line an error must name
    field: str | None = None  # the field an error must name (None: any or none)


def _dump(rows: list[dict]) -> bytes:
    return "".join(json.dumps(row) + "\n" for row in rows).encode()


def jsonl_cases(good: list[dict], fields: dict[str, str]) -> list[Case]:
    """Mutations of `good` (≥ 2 rows). `fields` maps each field to its kind: "id", "str", "int" or
    "str_list", with a trailing "?" when the field is optional (missing is then fine)."""
    bad_line = len(good) + 1
    cases = [
        Case("bad JSON", _dump(good) + b'{"oops": \n', "error", bad_line),
        Case("non-UTF-8 bytes", _dump(good) + b'{"x": "\xff"}\n', "error", bad_line),
        Case("not an object", _dump(good) + b"[1, 2]\n", "error", bad_line),
        Case("BOM before the first line", b"\xef\xbb\xbf" + _dump(good), "ok"),
    ]
    wrong = {"id": [1.5, ["x"]], "str": [5, ["x"]], "int": [True, "1", 1.5], "str_list": ["x", [1]]}
    for field, kind in fields.items():
        optional, kind = kind.endswith("?"), kind.rstrip("?")
        row = dict(good[0])
        missing = {k: v for k, v in row.items() if k != field}
        expect = "ok" if optional else "error"
        cases.append(Case(f"{field} missing", _dump([*good, missing]), expect, bad_line, field))
        for value in wrong[kind]:
            cases.append(Case(f"{field} = {value!r}", _dump([*good, {**row, field: value}]), "error", bad_line, field))
        if kind == "id":
            for value, expect in (("", "error"), ("a\tb", "error"), ("\ud800", "error"), (" spaced ", "ok")):
                content = (json.dumps({**row, field: value}, ensure_ascii=True) + "\n").encode()
                cases.append(Case(f"{field} = {value!r}", _dump(good[1:]) + content, expect, len(good), field))
    return cases


# ---------------------------------------------------------------------------------------------------------------
# Beyond JSONL (reliability round 2): config files, qrels numbers, a failing disk, concurrent writers, signals.


def yaml_cases(good: dict) -> list[Case]:
    """A config with each top-level key given twice (YAML would silently keep the second), plus the good one."""
    import yaml

    text = yaml.safe_dump(good, sort_keys=False)
    cases = [Case("good config", text.encode(), "ok")]
    lines = text.splitlines()
    for key in good:
        again = f"{text}{key}: {json.dumps(good[key])}\n"  # the same key once more, at the end
        cases.append(Case(f"{key} given twice", again.encode(), "error", len(lines) + 1, key))
    return cases


QRELS_SCORES = {  # a qrels score as written → what a strict reader must do
    "1": "ok",
    "0": "ok",
    "-1": "ok",
    "1_0": "error",  # int() would read 10
    "1e3": "error",
    "+1": "error",
    "1.0": "error",
    " 1 ": "ok",  # surrounding spaces only
    "100000000000000000000000": "error",  # past 32 bits: trec_eval crashes
    "": "error",
    "one": "error",
}


def qrels_cases() -> list[Case]:
    header = "query-id\tcorpus-id\tscore\n"
    return [
        Case(f"score {score!r}", f"{header}q1\td1\t1\nq2\td2\t{score}\n".encode(), expect, 3, "score")
        for score, expect in QRELS_SCORES.items()
    ]


@dataclass(frozen=True)
class DiskFault:
    """A disk that fails a write: the error an OS gives at the flush to disk (os.fsync), injected."""

    name: str
    errno_name: str

    @property
    def reason(self) -> str:
        import errno
        import os

        return os.strerror(getattr(errno, self.errno_name))

    def install(self, monkeypatch) -> None:
        import errno
        import os

        number = getattr(errno, self.errno_name)

        def fsync(fd):
            raise OSError(number, os.strerror(number))

        monkeypatch.setattr(os, "fsync", fsync)


DISK_FAULTS = [DiskFault("full disk", "ENOSPC"), DiskFault("read-only target", "EROFS"), DiskFault("quota", "EDQUOT")]
SIGNALS = ["SIGKILL", "SIGTERM", "SIGINT"]  # tests/test_kill_suite.py sends each at random moments
CONCURRENT_WRITERS = ["train", "export", "index", "eval"]  # a second writer of one folder must fail at once
