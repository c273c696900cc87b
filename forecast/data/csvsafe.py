"""Text written into CSV files that people open in spreadsheets.

A cell that begins with ``=``, ``+``, ``-`` or ``@`` (or a TAB or CR, which some programs skip
before reading such a character) is taken by Excel, LibreOffice and Google Sheets as a formula:
an id like ``=HYPERLINK("http://evil.example", "click")`` runs when the file is opened. OWASP's
advice on CSV injection is to prefix such a cell with a single quote, which spreadsheets show as
text. Apply it to free-text fields only (ids, descriptions, sources, labels): a number such as an
intensity of ``-3`` must stay a number.
"""

from __future__ import annotations

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(text: str) -> str:
    """``text`` with a leading ``'`` if a spreadsheet would read it as a formula; otherwise unchanged.

    Idempotent: a neutralised value begins with ``'`` and is returned as it is.
    """
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text
