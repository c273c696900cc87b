"""Plots drawn from a run's stored JSON (one module per command that stored it), for the report.

Workflows draw nothing: each analysis stores its numbers in the run, and ``forecast report``
draws them here. Every function takes plain values (lists, dicts, strings) and returns PNG bytes,
so the report renders them like its other figures (forecast.reports.figures).
"""
