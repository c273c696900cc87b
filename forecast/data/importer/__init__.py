"""Coded event data (CAMEO, PLOVER) into a study's observation format; `forecast import` runs it.

Reads event tables as GDELT, ICEWS and POLECAT-style exports provide them (one row per coded
event: date, source and target actors, a CAMEO event code or PLOVER event type, a quad class,
a Goldstein-like score) and turns the rows that concern the study into observations:

- the *actors*: one side must be the study's actor, the other a counterpart of the study, both
  named through the mapping file's ``actor`` list and ``[counterparts]`` table (country codes,
  actor codes or names, whichever columns the file has);
- the *outcome*: cooperative or conflictual from the quad class (1, 2 cooperative; 3, 4
  conflictual), else from the PLOVER event type or the CAMEO root code through their quad
  classes, else from the sign of the Goldstein score; the score itself becomes the intensity,
  and a score whose sign contradicts the quad class is reported, not guessed;
- the *domain*: the first ``[domains.keywords]`` entry found in the row's text, else the
  longest ``[domains.codes]`` prefix of the CAMEO code, else ``[domains].default``;
- the *dates*: the event date, and the report date (GDELT's DATEADDED, POLECAT's publication
  date) kept apart from it.

Every row that is not imported is reported with its line and the reason; nothing is dropped
silently. Ids stay unique (``<prefix>-<source event id>``), so a re-import adds nothing twice,
and an event that matches one already in the file (same date, counterpart, domain and outcome)
is skipped, or added as a corroborating report of it (``origin_id``) with ``on_match =
"corroborate"``.

Modules, in the order an import uses them: ``sources`` (formats, column aliases, the bounded
streaming reader), ``mapping`` (the mapping file's schema), ``rows`` (each row to an observation
or a reason), ``target`` (the observation file before and after), ``limits`` (size limits and
how file content is shown in messages). Nothing in this package writes a file.
"""

from forecast.data.importer.limits import MAX_COLUMNS, MAX_FIELD_CHARS, MAX_LINE_BYTES
from forecast.data.importer.mapping import DEFAULT_MAPPING, ON_MATCH, Mapping, load_mapping
from forecast.data.importer.rows import Mapped, Skipped, map_rows
from forecast.data.importer.sources import (
    ALIASES,
    FIELDS,
    FORMATS,
    GDELT1_COLUMNS,
    GDELT2_COLUMNS,
    Source,
    read_source,
    resolve_columns,
)
from forecast.data.importer.target import check_observations, combined_text, existing_events

__all__ = [
    "ALIASES",
    "DEFAULT_MAPPING",
    "FIELDS",
    "FORMATS",
    "GDELT1_COLUMNS",
    "GDELT2_COLUMNS",
    "MAX_COLUMNS",
    "MAX_FIELD_CHARS",
    "MAX_LINE_BYTES",
    "ON_MATCH",
    "Mapped",
    "Mapping",
    "Skipped",
    "Source",
    "check_observations",
    "combined_text",
    "existing_events",
    "load_mapping",
    "map_rows",
    "read_source",
    "resolve_columns",
]
