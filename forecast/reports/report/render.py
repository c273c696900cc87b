"""Rendering a ``Report``: one self-contained HTML page, Markdown, JSON; where they go; writing them.

HTML is rendered with jinja2's autoescaping. Markdown has no such safety net, so every value the
Markdown template prints passes through ``md_text`` unless the template says otherwise (a
``finalize`` hook, not a filter one could forget): study, hypothesis, group and domain labels,
claims, descriptions, sources and ids cannot add HTML, links, images or formatting. Neither
format refers to anything outside itself: figures are embedded as data URIs, and the only links
are to observation sources given as http(s) URLs. Files are written atomically through
forecast.runs.store; a report killed while writing leaves a hidden ``.report.<ext>.tmp-<pid>``
file, which the next report of the run removes once that process is gone (the store's
``sweep_temporaries``, when the run is opened and again before the report is written).
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import quote, urlsplit

import numpy as np
from markupsafe import Markup

from forecast.errors import InputError
from forecast.reports.report.records import FORMATS, Report
from forecast.runs.layout import REPORT_STEM
from forecast.runs.store import atomic_write_text, dumps

SUFFIX = {"html": ".html", "md": ".md", "json": ".json"}
# An output's suffix names its format when --format is not given.
SUFFIX_FORMATS = {".html": "html", ".htm": "html", ".md": "md", ".markdown": "md", ".json": "json"}
TEMPLATES = Path(__file__).resolve().parents[1] / "templates"
LINK_SCHEMES = ("http", "https")


# --- Markdown escaping ---------------------------------------------------------------------------

# HTML is written as entities; these can start inline markup (emphasis, code, links and images
# (with "[" and "]" escaped, "!" and "(" are inert), tables, strikethrough) and are backslash-
# escaped, as CommonMark allows for any ASCII punctuation. Line breaks are folded so a value
# cannot open a block; a value starting a line cannot start a list, heading or code block.
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]#|~])")
_LINE_BREAKS = re.compile(r"[\r\n\u2028\u2029\x0b\x0c]+")
_BLOCK_START = re.compile(r"^([-+=]|\d+(?=[.)]))")


def md_text(value: object) -> Markup:
    """``value`` as inert inline Markdown text: no HTML, no link or image, no emphasis, on one line."""
    if isinstance(value, Markup):  # already rendered by one of the filters below
        return value
    if isinstance(value, int | float | np.number):  # a number cannot carry markup
        return Markup(str(value))
    text = _LINE_BREAKS.sub(" ", str(value)).strip()
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return Markup(_MD_SPECIAL.sub(r"\\\1", text))


def md_line(value: object) -> Markup:
    """``md_text`` for a value that starts a line: it cannot start a list or a heading underline either."""
    text = str(md_text(value))
    m = _BLOCK_START.match(text)
    if m:  # "- x", "+ x", "===", "1. x": text, not a list item or a heading underline
        text = text[: m.end()] + "\\" + text[m.end() :] if m.group(1)[0].isdigit() else "\\" + text
    return Markup(text)


def md_code(value: object) -> Markup:
    """``value`` as an inline code span (verbatim: no markup is interpreted inside one)."""
    text = _LINE_BREAKS.sub(" ", str(value))
    fence = "`" * (max((len(m) for m in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return Markup(f"{fence}{pad}{text}{pad}{fence}")


def safe_url(source: object) -> str | None:
    """``source`` if it is an http(s) URL (percent-encoding what could end a link), else None."""
    text = str(source).strip()
    try:
        parts = urlsplit(text)
    except ValueError:
        return None
    if parts.scheme.lower() not in LINK_SCHEMES or not parts.netloc or any(c.isspace() for c in text):
        return None
    return quote(text, safe="/:?#[]@!$&'()*+,;=%-._~")


def md_source(source: object) -> Markup:
    """An observation's source: a link if it is an http(s) URL, plain (escaped) text otherwise."""
    url = safe_url(source)
    if url is None:
        return md_text(source)
    return Markup(f"[{md_text(source)}](<{url.replace('<', '%3C').replace('>', '%3E')}>)")


def html_source(source: object) -> Markup:
    """An observation's source in HTML: a link if it is an http(s) URL, escaped text otherwise."""
    from markupsafe import escape

    url = safe_url(source)
    if url is None:
        return escape(str(source))
    return Markup('<a href="{}" rel="noopener noreferrer nofollow">{}</a>').format(url, str(source))


# --- the templates ---------------------------------------------------------------------------------


def _number(fmt: str):
    return lambda x: Markup("—" if x is None or not np.isfinite(x) else fmt.format(x))


def _env(markdown: bool):
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=not markdown,
        finalize=md_text if markdown else None,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["p"] = _number("{:.3f}")
    env.filters["f1"] = _number("{:.1f}")
    env.filters["f2"] = _number("{:.2f}")
    env.filters["f3"] = _number("{:.3f}")
    env.filters["int0"] = _number("{:.0f}")
    env.filters["pct"] = lambda x: Markup("—" if x is None or not np.isfinite(x) else f"{100 * x:.1f}%")
    env.filters["signed"] = lambda x: Markup(f"{x:+.2f}")
    env.filters["code"] = md_code
    env.filters["line"] = md_line
    env.filters["source"] = md_source if markdown else html_source
    # A figure's data URI, trusted: it is built here from the PNG bytes (base64 has no markup).
    env.filters["data_uri"] = lambda f: Markup(f.data_uri)
    return env


def _context(report: Report) -> dict:
    return {"r": report, "fig": report.figures, "hids": list(report.labels)}


def render_html(report: Report) -> str:
    return _env(False).get_template("report.html.j2").render(**_context(report))


def render_markdown(report: Report) -> str:
    return _env(True).get_template("report.md.j2").render(**_context(report))


def render_json(report: Report) -> str:
    """The report as strict JSON (forecast.runs.store's encoder: non-finite numbers as null)."""
    return dumps(report.to_dict()) + "\n"


RENDERERS = {"html": render_html, "md": render_markdown, "json": render_json}


# --- where the files go ------------------------------------------------------------------------------


def formats_for(formats: tuple[str, ...], output: Path | None) -> tuple[str, ...]:
    """The formats to write: those asked for, else the one ``output``'s suffix names, else all three."""
    for f in formats:
        if f not in FORMATS:
            raise InputError(f"unknown report format '{f}'; choose from {', '.join(FORMATS)}")
    if formats:
        return tuple(formats)
    if output is not None and not Path(output).is_dir():
        suffix = SUFFIX_FORMATS.get(Path(output).suffix.lower())
        if suffix:
            return (suffix,)
    return FORMATS


def output_paths(run_dir: Path, formats: tuple[str, ...], output: Path | None) -> dict[str, Path]:
    """Where each format goes: ``<run_dir>/report.<ext>`` or ``output`` (one format only)."""
    if output is None:
        return {f: Path(run_dir) / f"{REPORT_STEM}{SUFFIX[f]}" for f in formats}
    if len(formats) != 1:
        raise InputError("--output names one file: choose one --format (html, md or json)")
    output = Path(output)
    if output.is_dir():
        return {formats[0]: output / f"{REPORT_STEM}{SUFFIX[formats[0]]}"}
    if not output.parent.is_dir():
        raise InputError(f"--output {output}: the directory {output.parent} does not exist")
    return {formats[0]: output}


def write_files(report: Report, targets: dict[str, Path]) -> dict[str, str]:
    """Render each format and write it atomically; returns format -> path written."""
    outputs = {}
    for fmt, path in targets.items():
        atomic_write_text(path, RENDERERS[fmt](report))
        outputs[fmt] = str(path)
    return outputs
