"""What the importer accepts from an event file, and how it shows file content in messages.

An event file comes from outside (a download, a colleague's export), so its size is bounded
before it is parsed: a header of a hundred thousand columns or a line of hundreds of megabytes
is refused as soon as it is read, never loaded first. Values from the file are shown in
messages cut to ``ECHO_CHARS`` characters, so a huge field cannot become a huge message.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# The observation file's bounds, for event files too (one set of limits for what forecast reads):
# at most 1,000 columns (GDELT 2.0 has 61), lines of 1 MiB (GDELT's are about 1 KB), fields of
# 100,000 characters (also across quoted line breaks).
from forecast.data.observations import MAX_COLUMNS, MAX_FIELD_CHARS, MAX_LINE_BYTES

__all__ = [
    "ECHO_CHARS",
    "MAX_COLUMNS",
    "MAX_FIELD_CHARS",
    "MAX_LINE_BYTES",
    "clip",
    "control_character",
    "echo",
    "names",
    "size",
]

ECHO_CHARS = 80
# How many column names a message lists.
MAX_LISTED = 30

# C0 controls but TAB, LF and CR (which a quoted CSV field may hold), DEL, and C1 controls.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_CONTROL_OR_SPACE = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def clip(text: object, limit: int = ECHO_CHARS) -> str:
    """``text`` cut to ``limit`` characters, with an ellipsis when something was cut."""
    s = str(text)
    return s if len(s) <= limit else s[: limit - 1] + "…"


def echo(value: object, limit: int = ECHO_CHARS) -> str:
    """A value from the file as a message shows it: quoted, escaped, cut to ``limit`` characters."""
    return repr(clip(value, limit))


def names(values: Iterable[object], limit: int = MAX_LISTED) -> str:
    """Column names for a message: each quoted and cut, at most ``limit`` of them."""
    values = list(values)
    shown = ", ".join(echo(v, 40) for v in values[:limit])
    return shown + (f", ... ({len(values) - limit} more)" if len(values) > limit else "")


def control_character(text: str, *, line_breaks: bool = True) -> str | None:
    """Where the first control character in ``text`` is (e.g. 'U+0000 at character 3'), or None.

    TAB, LF and CR count only with ``line_breaks=False`` (for a value that becomes an id).
    """
    m = (_CONTROL if line_breaks else _CONTROL_OR_SPACE).search(text)
    return None if m is None else f"U+{ord(m.group()):04X} at character {m.start() + 1}"


def size(n: int) -> str:
    """A byte or character count for a person: '1 MiB', '128 KiB', '61'."""
    for unit, scale in (("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale and n % scale == 0:
            return f"{n // scale} {unit}"
    return f"{n:,}"
