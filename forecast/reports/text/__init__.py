"""Terminal renderers, one module per command: records in, text out (no computation, no files)."""
