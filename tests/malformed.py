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
