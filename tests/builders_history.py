"""The evidence of one interval of `forecast history`, as the attribution tests take it apart."""

from __future__ import annotations

from forecast.workflows.history.attribution import counted_reports, interval_evidence


def evidence_between(table, known, q1: int, q2: int, study):
    """(rows counted at quarter ``q1``, the interval evidence of what quarter ``q2`` counts beyond
    them): `counted_reports` at both quarters, then `interval_evidence`."""
    before, _ = counted_reports(table, known, q1, study)
    after, roots = counted_reports(table, known, q2, study)
    return before, interval_evidence(table, study, before, after, roots)
