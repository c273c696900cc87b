"""Shared helpers for tests: write small studies and observation files into a tmp_path.

A study is built as a plain dict (``base_study()``), changed by the test, and written as TOML
by ``write_study``; observations are dicts (``event()``) written as CSV by ``write_events``.
Nothing here fits a model.
"""

from __future__ import annotations

import copy
import csv
import json
import math
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_STUDY = REPO / "priors" / "turkey_nato.toml"
DEFAULT_DATA = REPO / "data" / "turkey_nato_events.csv"
GOLDEN = REPO / "tests" / "golden"

# Header of an observation file written before the `initiator` column existed (every row then
# counts as a 'joint' act, i.e. as before): the default of ``write_events``, so that files written
# by tests keep meaning what they meant.
COLUMNS = (
    "id",
    "event_date",
    "report_date",
    "counterpart",
    "domain",
    "outcome",
    "intensity",
    "reliability",
    "description",
    "source",
    "origin_id",
)

# Header of an observation file in the order `forecast init` writes it (with `initiator`).
DIRECTED_COLUMNS = (*COLUMNS[:6], "initiator", *COLUMNS[6:])


def prior(dist: str, **kwargs: float) -> dict:
    return {"dist": dist, "kwargs": kwargs}


def default_priors() -> dict:
    return {
        "tilt": {"all": prior("Normal", mu=0.0, sigma=1.0)},
        "spread": {"all": prior("HalfNormal", sigma=1.0)},
        "trend": {"all": prior("Normal", mu=0.0, sigma=0.1)},
        "volatility": {"all": prior("HalfNormal", sigma=0.15)},
    }


def hypothesis(hid: str, probability: float, priors: dict | None = None) -> dict:
    return {
        "id": hid,
        "label": hid.replace("_", " ").title(),
        "claim": f"The {hid} claim.",
        "prior_probability": probability,
        "priors": default_priors() if priors is None else priors,
    }


def base_study(observations: str = "events.csv") -> dict:
    """A small valid study: groups west (us, eu) and east (russia), two domains, 2020Q1..2021Q4."""
    return copy.deepcopy(
        {
            "study": {
                "name": "mini",
                "question": "Does Testland tilt east?",
                "actor": "Testland",
                "observations": observations,
            },
            "time": {
                "step": "quarter",
                "start": "2020Q1",
                "end": "2021Q4",
                "reference": "2020Q3",
                "components": ["trend", "random_walk"],
            },
            "groups": [
                {"id": "west", "label": "West", "counterparts": ["us", "eu"]},
                {"id": "east", "label": "East", "counterparts": ["russia"]},
            ],
            "domains": [
                {"id": "defence", "label": "Defence"},
                {"id": "energy", "label": "Energy"},
            ],
            "hypotheses": [hypothesis("steady", 0.5), hypothesis("shift", 0.5)],
        }
    )


def to_toml(data: dict) -> str:
    """Serialise a dict as TOML (one ``key = value`` line per top-level key, inline tables)."""
    return "".join(f"{_key(k)} = {_value(v)}\n" for k, v in data.items())


def _key(k: object) -> str:
    return json.dumps(str(k))


def _value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, dict):
        if not v:
            return "{}"
        return "{ " + ", ".join(f"{_key(k)} = {_value(x)}" for k, x in v.items()) + " }"
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} as TOML")


def write_study(directory: Path, data: dict | None = None, name: str = "mini.toml") -> Path:
    """Write ``data`` (default: ``base_study()``) as ``directory/name``; return its path."""
    path = Path(directory) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(to_toml(base_study() if data is None else data), encoding="utf-8")
    return path


def event(n: int = 1, **overrides: object) -> dict:
    """A valid observation row of the mini study; ``n`` makes the id unique."""
    row = {
        "id": f"E{n}",
        "event_date": "2020-02-01",
        "report_date": "",
        "counterpart": "us",
        "domain": "defence",
        "outcome": "cooperative",
        "intensity": "3",
        "reliability": "B2",
        "description": f"Event number {n}",
        "source": "Wire service",
        "origin_id": "",
    }
    row.update({k: str(v) for k, v in overrides.items()})
    return row


def events(n: int, **overrides: object) -> list[dict]:
    return [event(i, **overrides) for i in range(1, n + 1)]


def write_events(path: Path, rows: Iterable[dict], columns: Sequence[str] = COLUMNS) -> Path:
    """Write rows (dicts; missing keys are empty) as a UTF-8 CSV with ``\\n`` line ends."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow([row.get(c, "") for c in columns])
    return path


def write_mini(directory: Path, rows: Iterable[dict] = (), study: dict | None = None) -> tuple[Path, Path]:
    """The mini study and its observation file (``events.csv`` next to it)."""
    study_path = write_study(directory, study)
    csv_path = write_events(Path(directory) / "events.csv", rows)
    return study_path, csv_path


def problem_with(err: BaseException, *fragments: str) -> str:
    """The first single problem of an InputError that contains every fragment (else fail)."""
    problems = getattr(err, "problems", [str(err)])
    matches = [p for p in problems if all(f in p for f in fragments)]
    assert matches, f"no single problem mentions all of {fragments!r}; problems were:\n" + "\n".join(problems)
    return matches[0]


def static_study(
    name: str,
    tilts: dict[str, float | tuple[float, float]],
    *,
    tilt_sigma: float = 0.5,
    spread: dict | None = None,
    probabilities: dict[str, float] | None = None,
    group: str = "g",
    counterparts: Sequence[str] = ("c",),
    domains: Sequence[str] = ("d",),
    start: str = "2020Q1",
    end: str = "2020Q4",
    observations: str = "events.csv",
    extra: dict | None = None,
) -> dict:
    """The small static study that many tests fit: one group, no time components, hypotheses that
    differ only in their tilt prior (``tilts``: id -> mean, or (mean, sd)); ``extra`` adds top-level
    tables (e.g. ``{"robustness": {...}}``). Write it with ``write_study``."""
    spread = spread or prior("HalfNormal", sigma=0.3)
    probabilities = probabilities or {h: 1 / len(tilts) for h in tilts}
    return {
        "study": {"name": name, "question": "Does T cooperate?", "actor": "T", "observations": observations},
        "time": {"start": start, "end": end, "components": []},
        "groups": [{"id": group, "label": group.upper(), "counterparts": list(counterparts)}],
        "domains": [{"id": d, "label": d.upper()} for d in domains],
        "hypotheses": [
            hypothesis(
                h,
                probabilities[h],
                {"tilt": {"all": _tilt_prior(tilt, tilt_sigma)}, "spread": {"all": spread}},
            )
            for h, tilt in tilts.items()
        ],
        **(extra or {}),
    }


def _tilt_prior(tilt: float | tuple[float, float], sigma: float) -> dict:
    mu, sd = tilt if isinstance(tilt, tuple) else (tilt, sigma)
    return prior("Normal", mu=mu, sigma=sd)


def copy_golden(directory: Path) -> tuple[Path, Path, Path]:
    """The golden study's inputs and a runs root whose latest run is a copy of the golden run.

    Returns (study file, runs root, run directory); the run matches the copied inputs.
    """
    directory = Path(directory)
    shutil.copytree(GOLDEN / "inputs", directory / "inputs")
    run = directory / "runs" / "golden" / "run-v1"
    shutil.copytree(GOLDEN / "run-v1", run)
    (run.parent / "LATEST").write_text("run-v1\n", encoding="utf-8")
    return directory / "inputs" / "golden.toml", directory / "runs", run
