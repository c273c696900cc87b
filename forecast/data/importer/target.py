"""The observation file an import appends to: what it holds, and the text it would hold after.

Nothing here writes: the workflow (`forecast.workflows.import_events`) writes the text through
the run store's atomic writer, after ``check_observations`` has validated it in memory.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import warnings
from pathlib import Path

import pandas as pd

from forecast.data.observations import (
    _Problems,
    _records,
    load_observations,
    read_with_arrow,
    validate_table,
)
from forecast.errors import ObservationError
from forecast.spec.study import Study

# The observation file's columns, in the order `forecast init` writes them.
OBSERVATION_COLUMNS = (
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


def existing_events(study: Study, path: Path, today: dt.date) -> pd.DataFrame:
    """The events already in the observation file (validated), for duplicates and corroboration."""
    if not path.is_file():
        return pd.DataFrame(columns=["id", "event_date", "counterpart", "domain", "outcome"])
    t = load_observations(study, path, today=today).table
    return pd.DataFrame(
        {
            "id": t["id"],
            "event_date": t["event_date"],
            "counterpart": t["counterpart"],
            "domain": t["domain"],
            "outcome": t["cooperative"],
        }
    )


def combined_text(path: Path, rows: list[dict]) -> str:
    """The observation file with ``rows`` appended (its header extended if a column is missing)."""
    if not path.is_file() or not path.read_text(encoding="utf-8").strip():
        header = list(OBSERVATION_COLUMNS)
        old_rows: list[list[str]] = []
        text = None
    else:
        text = path.read_text(encoding="utf-8-sig")
        reader = list(csv.reader(io.StringIO(text)))
        header, old_rows = [h.strip() for h in reader[0]], reader[1:]
    needed = [c for c in OBSERVATION_COLUMNS if c not in header and any(r.get(c) for r in rows)]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    if text is not None and not needed:
        # Append to the file as it is, in its own column order.
        out.write(text if text.endswith("\n") else text + "\n")
        for r in rows:
            writer.writerow([r.get(c, "") for c in header])
        return out.getvalue()
    header = header + needed
    writer.writerow(header)
    for r in old_rows:
        writer.writerow(r + [""] * (len(header) - len(r)))
    for r in rows:
        writer.writerow([r.get(c, "") for c in header])
    return out.getvalue()


def check_observations(study: Study, text: str, path: Path, *, today: dt.date) -> None:
    """``load_observations``' checks on ``text`` as if it were ``path``, without writing it anywhere.

    Raises ObservationError listing every problem, with ``path``'s name and real line numbers.
    """
    problems = _Problems(path)
    df = read_with_arrow(text.encode("utf-8"))
    if df is None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", pd.errors.ParserWarning)
                df = pd.read_csv(
                    io.StringIO(text), dtype=str, keep_default_na=False, skipinitialspace=False, index_col=False
                )
        except (pd.errors.ParserError, pd.errors.ParserWarning) as e:
            raise ObservationError(f"{path}: not a readable CSV file: {e}") from None

    def find_lines():
        try:
            starts, _ = _records(text)
        except csv.Error:
            return None
        return starts[1:] if len(starts) - 1 == len(df) else None

    problems.find_lines = find_lines
    validate_table(df, study, problems, today=today)
    if problems.items:
        raise ObservationError(problems.items, heading=f"{path}: {len(problems.items)} problem(s) in the observations")
