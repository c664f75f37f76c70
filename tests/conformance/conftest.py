"""Conformance suite plumbing: record each check's outcome and print a versions x checks table at the end."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import _conformance as C
import pytest

CHECK_ORDER = ("protocols", "lookups", "overrides", "double", "gpu_allocator", "output_allocator", "logger",
               "progress", "create_runtime", "create_builder")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    callspec = getattr(item, "callspec", None)
    if callspec is None or "target" not in callspec.params or Path(str(item.fspath)).parent != C.HERE:
        return
    check = getattr(item, "originalname", item.name).removeprefix("test_")
    key = (callspec.params["target"].id, check)
    if report.when == "call" or report.outcome != "passed":
        status = "skipped" if report.skipped else report.outcome
        if status == "skipped" and isinstance(report.longrepr, tuple):
            C.EXTRA.setdefault("skips", {})[key] = str(report.longrepr[2])
        C.OUTCOMES[key] = status


def _cell(key: tuple[str, str]) -> str:
    status = C.OUTCOMES.get(key)
    if status is None:
        return "-"
    res = C.RESULTS.get(key)
    word = {"passed": "ok", "failed": "FAIL", "skipped": "skip"}[status]
    if res is None:
        return word
    if res["mismatches"]:
        return f"{word} {res['mismatches']}/{res['checked']}"
    return f"{word} {res['checked']}"


def report_lines() -> list[str]:
    checks = [c for c in CHECK_ORDER if any((t, c) in C.OUTCOMES for t in C.TARGET_IDS)]
    targets = [t for t in C.TARGET_IDS if any((t, c) in C.OUTCOMES for c in checks)]
    if not checks:
        return []
    width = max(len(c) for c in checks) + 2
    cols = [max(12, len(t) + 2) for t in targets]
    lines = ["cells: ok|FAIL|skip, then mismatches/members checked (or members checked when all conform)",
             "".ljust(width) + "".join(t.ljust(w) for t, w in zip(targets, cols, strict=True))]
    for c in checks:
        lines.append(c.ljust(width) + "".join(_cell((t, c)).ljust(w) for t, w in zip(targets, cols, strict=True)))
    orders = C.EXTRA.get("allocator_order", {})
    if orders:
        lines += ["", "IGpuAsyncAllocator.allocate_async(size=1000, alignment=256, flags=0, stream=0x1234) as the "
                  "Python override receives it:"]
        for t in targets:
            if t in orders:
                lines.append(f"  {t:<16} {orders[t]}")
    table = C.EXTRA.get("lookup_table")
    if table:
        missing_rows = [row for row in table if not all(row[2].values())]
        lines += ["", f"trtkit lookups of TensorRT names: {len(table)} checked; rows missing somewhere "
                  "(R = required, O = optional):"]
        for label, why, present in missing_rows:
            cells = " ".join(f"{t}={'yes' if present.get(t) else 'NO'}" for t in targets if t in present)
            lines.append(f"  {'O' if why else 'R'} {label:<58} {cells}")
    dynamic = C.EXTRA.get("dynamic_lookups")
    if dynamic:
        lines += ["", f"lookups with non-literal names (not checked): {len(dynamic)}"]
        lines += [f"  {d}" for d in dynamic]
    skips = C.EXTRA.get("skips", {})
    if skips:
        lines += ["", "skipped:"] + [f"  {t} {c}: {why}" for (t, c), why in sorted(skips.items())]
    return lines


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    lines = report_lines()
    if not lines:
        return
    terminalreporter.section("TensorRT conformance (versions x checks)")
    for line in lines:
        terminalreporter.write_line(line)
    try:
        out = config._tmp_path_factory.getbasetemp() / "conformance-report.txt"  # type: ignore[attr-defined]
        out.write_text("\n".join(lines) + "\n")
        terminalreporter.write_line(f"(written to {out})")
    except Exception:  # the table was printed; the file is a convenience
        pass
