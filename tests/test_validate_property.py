"""Property: whatever a study file or an observation file holds, validation fails only with
forecast's own errors (issue 13): never a KeyError, a pandas or pydantic exception, a crash.

Hypothesis generates observation rows (valid values mixed with arbitrary text: quotes, commas,
line breaks, control characters, very long values), raw CSV text and bytes, headers with missing,
repeated and unknown columns, and study files (the mini study with any value replaced by any TOML
value, and raw text). Each example runs the checks of `forecast validate`. Example counts are
kept small so that the whole file runs in a few seconds (fast layer).
"""

from __future__ import annotations

import copy
import csv
import datetime as dt
import io
import tempfile
from pathlib import Path

from helpers import COLUMNS, DIRECTED_COLUMNS, base_study, event, to_toml, write_study
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from forecast.data.cells import cell_data
from forecast.data.observations import load_observations
from forecast.errors import ForecastError
from forecast.spec.elicitation import STATEMENT_KEYS
from forecast.spec.questions import load_questions
from forecast.spec.study import load_study

TODAY = dt.date(2024, 6, 30)
FAST = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Values a valid row of the mini study may hold, per column, next to arbitrary text.
GOOD = {
    "id": ["E1", "E2", "x"],
    "event_date": ["2020-02-01", "2021-12-31", "2019-12-31", "2030-01-01", ""],
    "report_date": ["", "2020-03-01", "2020-01-01"],
    "counterpart": ["us", "eu", "russia", "turkey"],
    "domain": ["defence", "energy", "space"],
    "outcome": ["cooperative", "conflictual", "Cooperative", "neutral"],
    "initiator": ["actor", "counterpart", "joint", "", "both"],
    "intensity": ["3", "-3", "0", "11", "nan", "inf", "1e400", ""],
    "reliability": ["A1", "F6", "0.5", "0", "1.5", "G7", "nan", ""],
    "description": ["Talks", ""],
    "source": ["Wire", ""],
    "origin_id": ["", "E1", "E2", "E9"],
}
ANY_TEXT = st.text(
    alphabet=st.one_of(
        st.sampled_from(list(',"\n\r\t;|\x00\x1b\x7f\x85\u2028\ufeff ')),
        st.characters(codec="utf-8"),
    ),
    max_size=30,
)


def value(column: str) -> st.SearchStrategy[str]:
    good = st.sampled_from(GOOD.get(column, [""]))
    return st.one_of(good, good, good, ANY_TEXT)


def row(columns) -> st.SearchStrategy[dict]:
    return st.fixed_dictionaries({c: value(c) for c in columns})


HEADERS = st.one_of(
    st.just(COLUMNS),
    st.just(DIRECTED_COLUMNS),
    st.lists(st.sampled_from([*DIRECTED_COLUMNS, "note_x", "notes", "extra", ""]), min_size=1, max_size=15),
)


def validate(study_path: Path) -> None:
    """The checks `forecast validate` makes, plus the cells an update would build."""
    study = load_study(study_path)
    load_questions(study, today=TODAY)
    obs = load_observations(study, today=TODAY)
    cell_data(obs.table, study)


def only_forecast_errors(study_path: Path) -> None:
    try:
        validate(study_path)
    except ForecastError:
        pass


def csv_text(header, rows) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    for r in rows:
        writer.writerow([r.get(c, "") for c in header])
    return out.getvalue()


@FAST
@given(data=st.data(), header=HEADERS, initiators=st.sampled_from([None, ["actor"], ["actor", "joint"]]))
def test_generated_rows_fail_only_with_forecast_errors(data, header, initiators):
    rows = data.draw(st.lists(row(header), max_size=6))
    study = base_study()
    if initiators is not None:
        study["evidence"] = {"initiators": initiators}
    with tempfile.TemporaryDirectory() as d:
        path = write_study(Path(d), study)
        (Path(d) / "events.csv").write_text(csv_text(header, rows), encoding="utf-8")
        only_forecast_errors(path)


@FAST
@given(
    lines=st.lists(
        st.one_of(
            st.just(",".join(DIRECTED_COLUMNS)),
            st.just(",".join(event(1, initiator="joint")[c] for c in DIRECTED_COLUMNS)),
            ANY_TEXT,
        ),
        max_size=6,
    ),
    ending=st.sampled_from(["\n", "\r\n", ""]),
)
def test_raw_csv_text_fails_only_with_forecast_errors(lines, ending):
    with tempfile.TemporaryDirectory() as d:
        path = write_study(Path(d))
        (Path(d) / "events.csv").write_text(ending.join(lines), encoding="utf-8", newline="")
        only_forecast_errors(path)


@FAST
@given(content=st.binary(max_size=200))
def test_raw_bytes_as_observations_fail_only_with_forecast_errors(content):
    with tempfile.TemporaryDirectory() as d:
        path = write_study(Path(d))
        (Path(d) / "events.csv").write_bytes(
            b"id,event_date,counterpart,domain,outcome,reliability,description,source\n" + content
        )
        only_forecast_errors(path)


# --- study files ---------------------------------------------------------------------------------

TOML_VALUES = st.recursive(
    st.one_of(
        st.none(),  # stands for "remove the key"
        st.booleans(),
        st.integers(min_value=-(2**63), max_value=2**63 - 1),
        st.floats(allow_nan=True, allow_infinity=True),
        st.floats(min_value=-3, max_value=3),
        ANY_TEXT,
        st.sampled_from(["2020Q1", "2021Q4", "all", "Normal", "HalfNormal", "actor", "joint", "west", "east"]),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(
            st.one_of(ANY_TEXT, st.sampled_from(["dist", "kwargs", "mu", "sigma", "id", *STATEMENT_KEYS])),
            inner,
            max_size=3,
        ),
    ),
    max_leaves=8,
)


def paths(obj, prefix=()):
    """Every key path of a nested dict/list (to choose where to put a generated value)."""
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from paths(v, (*prefix, i))


def replaced(data: dict, path: tuple, new) -> dict:
    out = copy.deepcopy(data)
    if not path:
        return out if not isinstance(new, dict) else new
    parent = out
    for k in path[:-1]:
        parent = parent[k]
    if new is None:
        del parent[path[-1]]
    else:
        parent[path[-1]] = new
    return out


STUDY = base_study()
STUDY["questions"] = [
    {
        "id": "q1",
        "text": "Will it happen?",
        "group": "east",
        "domain": "energy",
        "quarter": "2021Q2",
        "kind": "share_above",
        "threshold": 0.5,
        "created": "2021-01-10",
    }
]
STUDY["evidence"] = {"initiators": ["actor", "joint"]}
STUDY_PATHS = list(paths(STUDY))


@FAST
@given(
    changes=st.lists(st.tuples(st.sampled_from(STUDY_PATHS), TOML_VALUES), min_size=1, max_size=3),
)
def test_generated_study_files_fail_only_with_forecast_errors(changes):
    data = STUDY
    for path, new in changes:
        try:
            data = replaced(data, path, new)
        except (KeyError, IndexError, TypeError):  # an earlier change removed or retyped the parent
            continue
    with tempfile.TemporaryDirectory() as d:
        try:
            text = to_toml(data)
        except (TypeError, ValueError):  # None inside a list: not expressible in TOML
            return
        (Path(d) / "mini.toml").write_text(text, encoding="utf-8")
        (Path(d) / "events.csv").write_text(
            csv_text(DIRECTED_COLUMNS, [event(1, initiator="actor"), event(2, initiator="joint")]), encoding="utf-8"
        )
        only_forecast_errors(Path(d) / "mini.toml")


NUMBERS = st.one_of(st.floats(min_value=-5, max_value=5), st.floats(), st.integers(-3, 3))
# A statement's 'dist' may be any TOML value (a list once crashed the elicitation's check).
DIST = st.one_of(
    ANY_TEXT, st.lists(ANY_TEXT, max_size=2), NUMBERS, st.sampled_from(["Normal", "StudentT", "HalfNormal", "Gamma"])
)
STATEMENTS = st.dictionaries(
    st.sampled_from(STATEMENT_KEYS),
    st.one_of(NUMBERS, st.lists(NUMBERS, max_size=3), ANY_TEXT, st.booleans(), st.sampled_from(["Normal", "StudentT"])),
    min_size=1,
    max_size=3,
).flatmap(lambda d: st.fixed_dictionaries({k: (DIST if k == "dist" else st.just(v)) for k, v in d.items()}))


@FAST
@given(
    entries=st.lists(
        st.tuples(
            st.integers(0, 1),
            st.sampled_from(["tilt", "spread", "trend", "volatility"]),
            st.sampled_from(["all", "west", "east"]),
            STATEMENTS,
        ),
        min_size=1,
        max_size=3,
    )
)
def test_generated_prior_statements_fail_only_with_forecast_errors(entries):
    data = copy.deepcopy(STUDY)
    for h, param, group, statement in entries:
        data["hypotheses"][h]["priors"].setdefault(param, {})[group] = statement
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "mini.toml").write_text(to_toml(data), encoding="utf-8")
        (Path(d) / "events.csv").write_text(csv_text(DIRECTED_COLUMNS, [event(1, initiator="actor")]), encoding="utf-8")
        only_forecast_errors(Path(d) / "mini.toml")


@FAST
@given(text=st.text(max_size=300))
def test_raw_text_as_a_study_file_fails_only_with_forecast_errors(text):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "study.toml"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        only_forecast_errors(path)
