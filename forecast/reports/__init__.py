"""Everything a person reads: terminal renderers, plots, the report."""
