"""Reading a JSON Lines input (a file or standard input) as raw lines, safely.

The input is read as bytes and decoded line by line, so that a wrongly encoded file is reported
with the line it goes wrong at (a Latin-1 accent on line 4,211), not as one exception for the
whole file; a UTF-8 byte order mark, which Excel and many Windows tools write, is dropped. Lines
are bounded: a binary file without a newline cannot make the reader hold a gigabyte. Every pass
reads through one open handle, so a file deleted or renamed between the import's two passes is
still read whole (and one changed in place is caught by the import's digest).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import IO, Any

from orchestrator.errors import UsageError

MAX_LINE_BYTES = 1 << 20  # a Place body is a few kilobytes; a megabyte is not an order
UTF8_BOM = b"\xef\xbb\xbf"
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


def split_lines(text: str) -> list[str]:
    """The lines of a JSON Lines text: split at `\n` only, one `\r` before it dropped.

    The one splitter for every JSON Lines input (files, posted bodies, the examples). Not
    `str.splitlines()`: it also breaks at U+2028, U+2029, U+0085, form feeds and a few more, which
    JSON allows unescaped inside a string, so a valid record with one in a customer's address
    was refused as two invalid halves by the API while `import` took the same line."""
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()  # the final line end ends the last line; it does not start another
    return [line.removesuffix("\r") for line in lines]


def strip_line_end(raw: bytes) -> bytes:
    """A line read by `readline` without its end: `\n` and one `\r` before it."""
    return raw.removesuffix(b"\n").removesuffix(b"\r")


class InputError(UsageError):
    """The input cannot be read at all (missing, a directory, standard input closed)."""


class LineInput(AbstractContextManager["LineInput"]):
    """The raw lines of one input, re-readable from the start any number of times."""

    def __init__(self, handle: IO[bytes], name: str) -> None:
        self._handle = handle
        self.name = name

    @classmethod
    def open(cls, source: str) -> LineInput:
        """`source` is a path, or `-` for standard input (spooled to a temporary file)."""
        if source == "-":
            stdin: Any = sys.stdin
            if stdin is None or getattr(stdin, "closed", False):
                raise InputError("standard input is closed: pipe the orders in, or give a file")
            spool = tempfile.TemporaryFile()  # noqa: SIM115  (closed by __exit__)
            try:
                shutil.copyfileobj(getattr(stdin, "buffer", stdin), spool)
            except (OSError, ValueError) as exc:
                spool.close()
                raise InputError(f"cannot read standard input: {exc}") from None
            return cls(spool, "standard input")
        path = Path(source)
        if path.is_dir():
            raise InputError(f"{source} is a directory, not a file of orders")
        try:
            handle = path.open("rb")
        except FileNotFoundError:
            raise InputError(f"no such file: {source}") from None
        except OSError as exc:
            raise InputError(f"cannot read {source}: {exc.strerror}") from None
        return cls(handle, source)

    def __exit__(self, *exc: object) -> None:
        self._handle.close()

    def __call__(self) -> Iterator[bytes]:
        """The lines from the start, without their line endings; an overlong line is cut just
        past the limit (so the import can say it is too long) and the rest of it skipped."""
        handle = self._handle
        handle.seek(0)
        while True:
            line = handle.readline(MAX_LINE_BYTES + 1)
            if not line:
                return
            if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
                while (rest := handle.readline(MAX_LINE_BYTES)) and not rest.endswith(b"\n"):
                    pass
            yield strip_line_end(line)

    def count(self) -> int:
        return sum(1 for _ in self())


WHOLE_FILE = "(file)"  # the field of a problem that concerns the whole input: checking stops there


def decode_line(number: int, raw: bytes) -> tuple[str | None, str | None, bool]:
    """(text, None, False), or (None, why it is not a line of UTF-8 text, whether that goes for
    the whole file). On line 1, a UTF-16 byte order mark or NUL bytes mean the file is not UTF-8
    text at all; the caller stops there rather than report every following line."""
    if number == 1 and raw.startswith(UTF8_BOM):
        raw = raw[len(UTF8_BOM) :]
    if len(raw) > MAX_LINE_BYTES:
        return None, f"longer than {MAX_LINE_BYTES // (1 << 20)} MB: not one order", False
    if number == 1 and raw.startswith(_UTF16_BOMS):
        return None, "the file is UTF-16 (Windows 'Unicode'); save it as UTF-8", True
    if b"\x00" in raw:
        return (
            None,
            "binary data (NUL bytes): not a line of JSON text (a UTF-16 or binary file?)",
            number == 1,
        )
    try:
        return raw.decode("utf-8"), None, False
    except UnicodeDecodeError as exc:
        byte = raw[exc.start]
        return (
            None,
            (
                f"not UTF-8 text (byte 0x{byte:02X} at column {exc.start + 1}; Latin-1 or Windows-1252?): "
                "save the file as UTF-8"
            ),
            False,
        )
