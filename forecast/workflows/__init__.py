"""One module per command: compute, store through forecast.runs, return a typed record."""
