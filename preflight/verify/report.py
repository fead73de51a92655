"""The report: a table for people, one JSON object for machines."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, TextIO

from preflight.verify.checks import CATEGORIES, Check, Result

_MARK = {"pass": "PASS", "fail": "FAIL", "skip": "SKIP"}


def by_category(items: Sequence[Any]) -> list[Any]:
    """Grouped in the order of CATEGORIES, in run order within a category."""
    return sorted(items, key=lambda item: CATEGORIES.index(item.category))


def all_passed(results: Sequence[Result]) -> bool:
    """Every check ran and passed (a skipped check did not prove anything)."""
    return bool(results) and all(result.status == "pass" for result in results)


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], out: TextIO) -> None:
    """Aligned columns; the last one (free text) is not padded."""
    widths = [max(len(str(row[i])) for row in [headers, *rows]) for i in range(len(headers) - 1)]
    for row in [headers, *rows]:
        cells = [str(cell).ljust(width) for cell, width in zip(row, widths, strict=False)]
        out.write("  ".join([*cells, str(row[-1])]).rstrip() + "\n")


def results_json(stack: str, results: Sequence[Result]) -> dict[str, Any]:
    return {"stack": stack, "passed": all_passed(results), "checks": [r.to_json() for r in results]}


def render_results(stack: str, results: Sequence[Result], out: TextIO, as_json: bool) -> None:
    if as_json:
        json.dump(results_json(stack, results), out, indent=2)
        out.write("\n")
        return
    rows = [(r.category, r.name, _MARK[r.status], r.detail) for r in by_category(results)]
    _table(("CATEGORY", "CHECK", "RESULT", "DETAIL"), rows, out)
    counts = {status: sum(r.status == status for r in results) for status in _MARK}
    verdict = "ok" if all_passed(results) else "FAILED"
    out.write(
        f"\nverify {stack}: {verdict} ({counts['pass']} passed, {counts['fail']} failed, {counts['skip']} skipped)\n"
    )


def render_list(checks: Sequence[Check], out: TextIO, as_json: bool) -> None:
    checks = by_category(checks)
    if as_json:
        document = {"checks": [{"category": c.category, "name": c.name, "description": c.description} for c in checks]}
        json.dump(document, out, indent=2)
        out.write("\n")
        return
    _table(("CATEGORY", "CHECK", "WHAT IT PROVES"), [(c.category, c.name, c.description) for c in checks], out)
