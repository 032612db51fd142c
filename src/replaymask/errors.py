"""The error a user's mistake raises, and how a value is shown in its one-line message."""

from __future__ import annotations

_LINE_BREAKS = frozenset("\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029")


class ConfigError(ValueError):
    """A user-supplied setting is invalid; the message names it.

    The message is always one line: line breaks in it (from a value the user typed, a
    file name, an argparse message quoting the command line) are written as escapes.
    """

    def __init__(self, message: str = ""):
        super().__init__(one_line(str(message)))


def one_line(text: str) -> str:
    """``text`` with every character that ``str.splitlines`` breaks at escaped (``\\n``)."""
    return "".join(repr(c)[1:-1] if c in _LINE_BREAKS else c for c in text)


def describe(value, limit: int = 60) -> str:
    """A short, printable, one-line ``repr`` of a user-supplied value for an error message."""
    try:
        text = repr(value)
    except ValueError:  # an integer with more digits than Python will print
        text = f"<an integer of {value.bit_length()} bits>"
    text = one_line(text)
    return text if len(text) <= limit else text[:limit - 3] + "..."
