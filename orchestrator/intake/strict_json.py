"""JSON as the product reads it from people and other systems: strict, and every failure one sentence.

Python's `json` accepts NaN and Infinity (JSON has neither), raises RecursionError on deep
nesting and ValueError on integers of thousands of digits. Reached from an import line, a posted
body or a `--file`, each of those was a traceback or an HTTP 500. Here they are all `BadJson`,
whose text says what is wrong without quoting the input.
"""

from __future__ import annotations

import json
from typing import Any

from orchestrator.errors import UsageError


class BadJson(UsageError, ValueError):
    """Not JSON the product takes; the message is one sentence, ready to show."""


def _refuse_constant(name: str) -> Any:
    raise BadJson(f"{name} is not a JSON number (write the value, or null)")


def load_json(text: str) -> Any:
    """`json.loads`, strict (no NaN or Infinity), every failure a `BadJson`."""
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except BadJson:
        raise
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno} column {exc.colno}" if exc.lineno > 1 else f"column {exc.colno}"
        raise BadJson(f"{exc.msg} at {where}") from None
    except RecursionError:
        raise BadJson("JSON nested too deeply") from None
    except ValueError as exc:  # int() refusing thousands of digits
        raise BadJson("a number with too many digits" if "digits" in str(exc) else str(exc)) from None
