"""Coded event data (CAMEO, PLOVER) into a study's observation format; `forecast import` runs it.

Reads event tables as GDELT, ICEWS and POLECAT-style exports provide them (one row per coded
event: date, source and target actors, a CAMEO event code or PLOVER event type, a quad class,
a Goldstein-like score) and turns the rows that concern the study into observations:

- the *actors*: one side must be the study's actor, the other a counterpart of the study, both
  named through the mapping file's ``actor`` list and ``[counterparts]`` table: CAMEO codes by
  prefix (TUR matches TURGOV), names and aliases whole (Türkiye, TURKISH); each side's columns
  are read in an explicit order (``actor_columns``: code or country first, then the fallbacks);
- the *outcome*: cooperative or conflictual from the quad class (as GDELT assigns it, by the
  CAMEO root code), else the PLOVER event type, else the CAMEO root code, else the Goldstein
  sign; neutral rows (CAMEO 01-02, Goldstein 0) are reported as ``neutral`` unless kept;
- the *domain*: a keyword as whole words of the text or the URL's path, else a POLECAT context,
  mode or event type, else the longest CAMEO prefix, else ``[domains].default``;
- the *dates*: the event date, and the report date (GDELT's DATEADDED, POLECAT's publication
  date) kept apart from it;
- the *events*: repeated reports of one event become one event, its best-attested report with
  a grade that rises with its independent sources, the others kept as corroborating reports
  (``origin_id``); noise filters drop rows with too few sources or mentions or from blocked sites.

Every row that is not imported is counted with its reason, and every parsed one is reported with
its line; rows the reader's pre-filter drops (no code or name of the actor in the line) are
counted, not parsed. Ids stay unique (``<prefix>-<source event id>``), so a re-import adds
nothing twice, and an event already in the file is skipped, corroborated or kept (``on_match``).

Modules, in the order an import uses them: ``sources`` (formats, column aliases, compressed
files, the bounded chunked reader and its pre-filter), ``mapping`` (the mapping file's schema),
``rows`` (each row to a candidate observation or a reason), ``cluster`` (candidates into events),
``target`` (the observation file before and after), ``limits`` (size limits and
how file content is shown in messages). Nothing in this package writes a file.
"""

from forecast.data.importer.cluster import Candidate, Cluster, cluster, match_existing
from forecast.data.importer.limits import MAX_COLUMNS, MAX_FIELD_CHARS, MAX_LINE_BYTES
from forecast.data.importer.mapping import DEFAULT_MAPPING, ON_MATCH, Mapping, load_mapping
from forecast.data.importer.rows import NOT_THE_ACTOR, Mapped, Skipped, actor_prefilter, map_rows
from forecast.data.importer.sources import (
    ALIASES,
    FIELDS,
    FORMATS,
    GDELT1_COLUMNS,
    GDELT2_COLUMNS,
    Counts,
    Source,
    read_source,
    resolve_columns,
)
from forecast.data.importer.target import check_observations, combined_text, existing_events

__all__ = [
    "ALIASES",
    "NOT_THE_ACTOR",
    "Candidate",
    "Cluster",
    "Counts",
    "actor_prefilter",
    "cluster",
    "match_existing",
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
