"""JSON Lines are split at line feeds only, wherever they come from."""

from __future__ import annotations

from orchestrator.intake.line_input import split_lines, strip_line_end


def test_only_a_line_feed_ends_a_line() -> None:
    """U+2028, U+2029, NEL, form feed and the other `str.splitlines()` breaks stay inside a line."""
    text = '{"a": "x\u2028y"}\n{"b": "\u2029\x85\x0b\x0c\x1c\x1d\x1e"}\n'
    assert split_lines(text) == ['{"a": "x\u2028y"}', '{"b": "\u2029\x85\x0b\x0c\x1c\x1d\x1e"}']


def test_one_carriage_return_before_the_line_feed_is_dropped() -> None:
    """Windows line ends are line ends; a lone carriage return is part of the line."""
    assert split_lines("a\r\nb\r\r\nc\rd") == ["a", "b\r", "c\rd"]
    assert strip_line_end(b"a\r\n") == b"a" and strip_line_end(b"b\r\r\n") == b"b\r"


def test_a_final_line_feed_starts_no_line_but_blank_lines_are_kept() -> None:
    """Blank lines keep their numbers, so problems name the right line."""
    assert split_lines("a\n\nb\n") == ["a", "", "b"]
    assert split_lines("") == []
