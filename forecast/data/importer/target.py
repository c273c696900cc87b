"""The observation file an import appends to: what it holds, and the text it would hold after.

Nothing here writes: the workflow (`forecast.workflows.import_events`) writes the text through
the run store's atomic writer, after ``check_observations`` has validated it in memory.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from pathlib import Path

import pandas as pd

from forecast.data.observations import COLUMNS, check_observation_bytes, load_observations
from forecast.spec.study import Study

# Every row of a file that has this column needs a value in it; a file without it reads every row
# as "joint". So an import never adds it to a file with rows (its rows are then read as joint too).
FILLED_BY_EVERY_ROW = ("initiator",)


EXISTING_COLUMNS = ["id", "event_date", "counterpart", "domain", "outcome", "initiator", "origin_id"]


def existing_events(study: Study, path: Path, today: dt.date) -> pd.DataFrame:
    """The events already in the observation file (validated), for duplicates and corroboration."""
    if not path.is_file():
        return pd.DataFrame(columns=EXISTING_COLUMNS)
    t = load_observations(study, path, today=today).table
    return pd.DataFrame(
        {
            "id": t["id"],
            "event_date": t["event_date"],
            "counterpart": t["counterpart"],
            "domain": t["domain"],
            "outcome": t["cooperative"],
            "initiator": t["initiator"],
            "origin_id": t["origin_id"],
        }
    )


def combined_text(path: Path, rows: list[dict]) -> str:
    """The observation file with ``rows`` appended (its header extended if a column is missing).

    A new or empty file gets every column of ``forecast.data.observations.COLUMNS``.
    """
    if not path.is_file() or not path.read_text(encoding="utf-8").strip():
        header = list(COLUMNS)
        old_rows: list[list[str]] = []
        text = None
    else:
        text = path.read_text(encoding="utf-8-sig")
        reader = list(csv.reader(io.StringIO(text)))
        header, old_rows = [h.strip() for h in reader[0]], reader[1:]
    needed = [c for c in COLUMNS if c not in header and c not in FILLED_BY_EVERY_ROW and any(r.get(c) for r in rows)]
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
    """Every check of ``load_observations`` on ``text`` as the content of ``path``, which is not
    written (nor anything else); raises ObservationError listing every problem."""
    check_observation_bytes(study, text.encode("utf-8"), path, today=today)
