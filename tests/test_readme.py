"""The README's first screen stays true: CI runs exactly its test command."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```bash\n(python3 -m venv .+)\n```", text)


def test_readme_opens_with_demo_and_test_commands() -> None:
    demo, tests = _commands()[:2]
    assert demo.endswith("trtkit demo")
    assert 'pip install -e ".[dev]"' in tests and "pytest" in tests


def test_ci_runs_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert _commands()[1] in ci


# ---- install lines --------------------------------------------------------------------------------------------

DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
_PIP = re.compile(r"pip3? install ([^\n`#]*)")


def _pip_targets() -> list[tuple[str, str]]:
    """Every package argument of every ``pip install`` in README and docs, with where it is."""
    found = []
    for page in DOC_FILES:
        for lineno, line in enumerate(page.read_text().splitlines(), 1):
            for match in _PIP.finditer(line):
                lexer = shlex.shlex(match.group(1), posix=True, punctuation_chars=True)
                lexer.whitespace_split = True
                for arg in lexer:
                    if arg in {"&&", "||", ";", "|", "&"}:
                        break  # the next command
                    if not arg.startswith("-"):
                        found.append((f"{page.relative_to(ROOT)}:{lineno}", arg))
    return found


def _extras() -> set[str]:
    return set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])


def test_docs_show_install_lines() -> None:
    targets = [arg for _, arg in _pip_targets()]
    assert any(arg.startswith(".[") for arg in targets)


def test_no_install_line_asks_pypi_for_trtkit() -> None:
    """trtkit is not on PyPI: ``pip install trtkit`` / ``'trtkit[rtx]'`` fail; a clone or a URL works."""
    bad = [f"{where}: pip install {arg}" for where, arg in _pip_targets()
           if re.fullmatch(r"trtkit(\[[^\]]*\])?([=<>~!].*)?", arg.strip())]
    assert bad == [], "install trtkit from a clone (pip install \".[rtx]\"), not from PyPI:\n" + "\n".join(bad)


def test_install_lines_name_extras_that_exist() -> None:
    extras = _extras()
    wrong = []
    for where, arg in _pip_targets():
        m = re.fullmatch(r"(?:\.|trtkit\s*@\s*\S+?)\[([^\]]*)\]", arg)
        if m:
            wrong += [f"{where}: {arg} ({name!r} is not an extra)" for name in m.group(1).split(",")
                      if name.strip() not in extras]
    assert wrong == [], f"pyproject.toml has the extras {sorted(extras)}:\n" + "\n".join(wrong)
