"""The suite's own habits, checked like the product's: every test says in a docstring what it
checks (46 had drifted without one), as structlog enforces with interrogate."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent


def test_every_test_says_what_it_checks() -> None:
    """Each `test_*` function of every tier opens with a docstring."""
    silent = [
        f"{path.relative_to(TESTS.parent)}:{node.lineno} {node.name}"
        for path in sorted(TESTS.rglob("test_*.py"))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.name.startswith("test_")
        and ast.get_docstring(node) is None
    ]
    assert silent == [], "tests without a docstring:\n" + "\n".join(silent)
