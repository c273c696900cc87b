"""Result records as plain values: a frozen dataclass's fields as a dict, in field order.

A workflow's record (``@dataclass(frozen=True) class X(Record)``) gets ``to_dict()``: nested
records become dicts, tuples and lists become lists, dicts keep their keys, numbers are left
untouched (the strict JSON encoder in ``forecast.runs.store`` deals with non-finite ones). Fields
named in ``_optional`` are left out of the dict while they are None.
"""

from __future__ import annotations

from dataclasses import fields, is_dataclass


def plain(value: object) -> object:
    """Records as plain dicts and tuples as lists, in field order (numbers untouched)."""
    if is_dataclass(value) and not isinstance(value, type):
        return value.to_dict()
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


class Record:
    """Base of a dataclass record: ``to_dict()`` from its fields (see the module docstring)."""

    _optional: tuple[str, ...] = ()  # fields left out of the dict while they are None

    def to_dict(self) -> dict:
        return {
            f.name: plain(getattr(self, f.name))
            for f in fields(self)
            if not (f.name in self._optional and getattr(self, f.name) is None)
        }
