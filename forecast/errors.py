"""One exception family for the toolkit; the CLI turns these into exit codes."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class ForecastError(Exception):
    """Base class for every error the toolkit reports to a person."""

    exit_code = 1


class InputError(ForecastError):
    """Bad input: a study file, an observation file or a command-line value.

    Carries every problem found, so a user fixes them all in one pass.
    """

    exit_code = 2

    def __init__(self, problems: Iterable[str] | str, *, heading: str | None = None):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        self.heading = heading
        super().__init__(self.render())

    def render(self) -> str:
        if len(self.problems) == 1 and not self.heading:
            return self.problems[0]
        head = self.heading or f"{len(self.problems)} problems found"
        return head + ":\n" + "\n".join(f"  - {p}" for p in self.problems)


class StudyError(InputError):
    """The study file is malformed or inconsistent."""


class ObservationError(InputError):
    """The observation file has rows or columns that cannot be used."""


class RunStoreError(InputError):
    """A stored run is missing, unreadable or does not match its inputs, or a run cannot be
    written where asked (a full disk, a read-only file system, no permission, a study name
    that would leave the runs directory): exit 2, with the file or directory named."""


class SamplingError(ForecastError):
    """The sampler returned fewer chains or draws than asked (never treated as a result)."""


class ConvergenceError(ForecastError):
    """At least one hypothesis's fit failed the convergence gate."""

    exit_code = 3


def did_you_mean(name: str, allowed: Iterable[str]) -> str:
    """A ' (did you mean 'x'?)' suffix for a misspelt name, or ''."""
    close = difflib.get_close_matches(str(name), [str(a) for a in allowed], n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def allowed_list(allowed: Iterable[str]) -> str:
    return ", ".join(f"'{a}'" for a in allowed)
