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


# --- a two-group study written as TOML text, with its events as CSV lines ---------------------------

# Header of hand-written CSV event lines (no report_date, intensity, initiator or origin_id).
SHORT_EVENTS_HEADER = "id,event_date,counterpart,domain,outcome,reliability,description,source\n"

_TWO_GROUP_STUDY = """
[study]
name = "{name}"
question = "q"
actor = "T"
observations = "obs.csv"
[time]
start = "2020Q1"
end = "2020Q4"
components = []
[[groups]]
id = "ga"
label = "A"
counterparts = ["a"]
[[groups]]
id = "gb"
label = "B"
counterparts = ["b"]
[[domains]]
id = "x"
label = "X"
[[domains]]
id = "y"
label = "Y"
[[hypotheses]]
id = "h1"
label = "H1"
prior_probability = 0.5
claim = "c"
[hypotheses.priors]
tilt.all = { dist = "Normal", kwargs = { mu = 1.0, sigma = 0.5 } }
spread.all = { dist = "HalfNormal", kwargs = { sigma = 0.5 } }
[[hypotheses]]
id = "h2"
label = "H2"
prior_probability = 0.5
claim = "c"
[hypotheses.priors]
tilt.all = { dist = "Normal", kwargs = { mu = -1.0, sigma = 0.5 } }
spread.all = { dist = "HalfNormal", kwargs = { sigma = 0.5 } }
"""


def two_group_study_toml(name: str) -> str:
    """TOML text of a static study ``name``: groups ga (counterpart a) and gb (b), domains x and y,
    2020Q1..2020Q4 without time components, observations in obs.csv; hypotheses h1 (tilt prior
    N(1, 0.5)) and h2 (N(-1, 0.5)), each at 0.5."""
    return _TWO_GROUP_STUDY.replace("{name}", name)


def two_group_event_lines(n: int) -> list[str]:
    """``n`` CSV lines (columns ``SHORT_EVENTS_HEADER``), events e0..e{n-1} spread over 2020: every
    third with counterpart b, odd ones in domain x, every fourth conflictual, every fifth graded C3."""
    return [
        f"e{i},2020-0{1 + i % 9}-1{i % 9},{'a' if i % 3 else 'b'},{'x' if i % 2 else 'y'},"
        f"{'cooperative' if i % 4 else 'conflictual'},{'A1' if i % 5 else 'C3'},event {i},test\n"
        for i in range(n)
    ]


# --- evidence spread over the quarters of 2020 (history and attribution tests) ----------------------


def quarterly_events(counts: Iterable[tuple[int, int]]) -> list[dict]:
    """Events numbered 1.. for (month, count) pairs: ``count`` events from the 10th of ``month`` of
    2020 on, cycling over counterparts us, eu, russia and domains defence, energy; every fourth
    conflictual (intensity -2), the rest cooperative (intensity 2)."""
    out, n = [], 0
    for month, count in counts:
        for k in range(count):
            n += 1
            out.append(
                event(
                    n,
                    event_date=f"2020-{month:02d}-{10 + k:02d}",
                    counterpart=("us", "eu", "russia")[k % 3],
                    domain=("defence", "energy")[k % 2],
                    outcome="cooperative" if k % 4 else "conflictual",
                    intensity="2" if k % 4 else "-2",
                )
            )
    return out


def warm_and_cold_hypotheses() -> list[dict]:
    """Hypotheses 'warm' (tilt prior N(1, 0.5)) and 'cold' (N(-1, 0.5)), spread HalfNormal(0.5), each
    at 0.5."""
    spread = {"all": prior("HalfNormal", sigma=0.5)}
    return [
        hypothesis("warm", 0.5, {"tilt": {"all": prior("Normal", mu=1.0, sigma=0.5)}, "spread": dict(spread)}),
        hypothesis("cold", 0.5, {"tilt": {"all": prior("Normal", mu=-1.0, sigma=0.5)}, "spread": dict(spread)}),
    ]


# --- one group's events as CSV text (sensitivity and robustness tests) -----------------------------


def one_group_events_csv() -> str:
    """CSV text of 96 events with counterpart a, in domains x and y, in 2020: 82 cooperative and 14
    conflictual (every seventh from the fourth), every fifth graded C3."""
    rows = []
    for i in range(96):  # 82 cooperative, 14 conflictual, in both domains
        outcome = "conflictual" if i % 7 == 3 else "cooperative"
        rows.append(
            f"e{i},2020-0{1 + i % 9}-1{i % 9},a,{'x' if i % 2 else 'y'},{outcome},{'A1' if i % 5 else 'C3'},event {i},t\n"
        )
    return SHORT_EVENTS_HEADER + "".join(rows)
