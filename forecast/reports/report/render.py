"""Rendering a ``Report``: one self-contained HTML page, Markdown, JSON; where they go; writing them.

HTML is rendered with jinja2's autoescaping. Markdown has no such safety net, so every value the
Markdown template prints passes through ``md_text`` unless the template says otherwise (a
``finalize`` hook, not a filter one could forget): study, hypothesis, group and domain labels,
claims, descriptions, sources and ids cannot add HTML, links, images or formatting. The HTML page
is self-contained (figures embedded as data URIs); Markdown writes its figures as PNG files in a
``<stem>_files/`` folder beside it (pasteable into Word or Confluence), or embeds them as data
URIs with ``embed_images``; the only links are to observation sources given as http(s) URLs.
PDF is the HTML printed by headless Chromium (``print_pdf``). No format shows an absolute local
path: the run is named relative to the runs directory, input files relative to the repository
or the run (``shown_path``), and any path left in a note is rewritten (``scrub``). Files are
written atomically through
forecast.runs.store; a report killed while writing leaves a hidden ``.report.<ext>.tmp-<pid>``
file, which the next report of the run removes once that process is gone (the store's
``sweep_temporaries``, when the run is opened and again before the report is written).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import quote, urlsplit

import numpy as np
from markupsafe import Markup

from forecast.errors import ForecastError, InputError
from forecast.reports.report.records import ALL_FORMATS, FORMATS, Report
from forecast.runs.layout import REPORT_STEM
from forecast.runs.store import atomic_write_bytes, atomic_write_text, dumps

SUFFIX = {"html": ".html", "md": ".md", "json": ".json", "pdf": ".pdf"}
# An output's suffix names its format when --format is not given.
SUFFIX_FORMATS = {".html": "html", ".htm": "html", ".md": "md", ".markdown": "md", ".json": "json", ".pdf": "pdf"}
TEMPLATES = Path(__file__).resolve().parents[1] / "templates"
REPO = Path(__file__).resolve().parents[3]  # the checkout the package runs from
FILES_SUFFIX = "_files"  # report.md's figures go to report_files/<figure>.png
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--no-pdf-header-footer",
    "--print-to-pdf-no-header",
)
PDF_TIMEOUT_S = 180
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


_TICKS = re.compile(r"`([^`<>]+)`")


def _html_code_spans(value: object) -> object:
    """A plain string's `command` spans as <code> (escaped first: nothing else becomes markup)."""
    if isinstance(value, Markup) or not isinstance(value, str) or "`" not in value:
        return value
    from markupsafe import escape

    return Markup(_TICKS.sub(r"<code>\1</code>", str(escape(value))))


def _number(fmt: str):
    return lambda x: Markup("—" if x is None or not np.isfinite(x) else fmt.format(x))


def _env(markdown: bool):
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=not markdown,
        finalize=md_text if markdown else _html_code_spans,
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


# --- paths as a reader may see them ------------------------------------------------------------------


def run_name(report: Report) -> str:
    """The run relative to its runs directory: ``<study>/<run id>``."""
    return f"{Path(report.run_dir).parent.name}/{report.run_id}"


def shown_path(path: object, run_dir: str | Path | None = None) -> str:
    """A file path as the report shows it: relative to the repository if it is inside it, else to the run."""
    text = str(path)
    if not text or text == "—" or not os.path.isabs(text):
        return text
    p = Path(text)
    for base in (REPO, Path.cwd()):
        try:
            return p.relative_to(base).as_posix()
        except ValueError:
            pass
    if run_dir is not None:
        return Path(os.path.relpath(p, run_dir)).as_posix()
    return p.name


def scrub(text: str, report: Report) -> str:
    """Rewrite what is left of local absolute paths in a rendered report (e.g. in a note)."""
    run = str(Path(report.run_dir))
    for old, new in (
        (run + os.sep, ""),
        (run, run_name(report)),
        (str(Path(run).parent.parent) + os.sep, ""),
        (str(Path(run).parents[2]) + os.sep, ""),
        (str(REPO) + os.sep, ""),
        (str(Path.cwd()) + os.sep, ""),
    ):
        if len(old) > 1:
            text = text.replace(old, new)
    return text


def _context(report: Report, images: str = "embed", files_dir: str = "") -> dict:
    def src(figure) -> Markup:
        # Trusted: base64 has no markup, and the file name is percent-encoded.
        if images == "embed":
            return Markup(figure.data_uri)
        return Markup(quote(f"{files_dir}/{figure.name}.png", safe="/"))

    return {
        "r": report,
        "fig": report.figures,
        "hids": list(report.labels),
        "run_name": run_name(report),
        "src": src,
    }


def render_html(report: Report) -> str:
    env = _env(False)
    env.filters["shown_path"] = lambda p: shown_path(p, report.run_dir)
    return scrub(env.get_template("report.html.j2").render(**_context(report)), report)


def render_markdown(report: Report, *, embed_images: bool = True, files_dir: str = "") -> str:
    """Markdown; figures as data URIs (``embed_images``) or as links to ``<files_dir>/<figure>.png``."""
    env = _env(True)
    env.filters["shown_path"] = lambda p: Markup(md_text(shown_path(p, report.run_dir)))
    ctx = _context(report, "embed" if embed_images else "files", files_dir)
    return scrub(env.get_template("report.md.j2").render(**ctx), report)


def render_json(report: Report) -> str:
    """The report as strict JSON (forecast.runs.store's encoder: non-finite numbers as null)."""
    return scrub(dumps(report.to_dict()) + "\n", report)


# --- PDF: the HTML printed by headless Chromium --------------------------------------------------------


def chromium() -> str | None:
    """The Chromium (or Chrome) binary on PATH, or None."""
    return next((found for name in CHROMIUM_NAMES if (found := shutil.which(name))), None)


def require_chromium() -> str:
    binary = chromium()
    if binary is None:
        raise InputError(
            "--format pdf prints the HTML report with headless Chromium, which is not installed here (looked for "
            + ", ".join(CHROMIUM_NAMES)
            + " on PATH). Install it (e.g. `apt-get install chromium`), or write --format html and print it from a "
            "browser (its print styles keep the summary on one page)."
        )
    return binary


def print_pdf(page: Path, target: Path, *, fragment: str = "") -> bytes:
    """``page`` (an HTML file) printed to PDF by headless Chromium, in a fresh profile; the PDF's bytes."""
    binary = require_chromium()
    with tempfile.TemporaryDirectory(prefix="forecast-pdf-") as tmp:
        out = Path(tmp) / "out.pdf"
        cmd = [
            binary,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={Path(tmp) / 'profile'}",
            f"--print-to-pdf={out}",
            Path(page).resolve().as_uri() + fragment,
        ]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=PDF_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise ForecastError(f"Chromium did not print {target.name} within {PDF_TIMEOUT_S} s") from None
        if not out.is_file() or out.stat().st_size == 0:
            tail = (done.stderr or "").strip().splitlines()[-3:]
            raise ForecastError(f"Chromium could not print {target.name} (exit {done.returncode}): " + " / ".join(tail))
        return out.read_bytes()


def write_pdf(report: Report, target: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="forecast-report-") as tmp:
        page = Path(tmp) / "report.html"
        page.write_text(render_html(report), encoding="utf-8")
        atomic_write_bytes(target, print_pdf(page, target))


def write_markdown(report: Report, target: Path, *, embed_images: bool = False) -> None:
    """report.md, and (unless ``embed_images``) its figures as PNG files in ``<stem>_files/`` beside it."""
    files = target.parent / f"{target.stem}{FILES_SUFFIX}"
    if not embed_images:
        files.mkdir(exist_ok=True)
        for f in report.figures.values():
            atomic_write_bytes(files / f"{f.name}.png", f.png)
    atomic_write_text(target, render_markdown(report, embed_images=embed_images, files_dir=files.name))


RENDERERS = {"html": render_html, "md": render_markdown, "json": render_json}


# --- where the files go ------------------------------------------------------------------------------


def formats_for(formats: tuple[str, ...], output: Path | None) -> tuple[str, ...]:
    """The formats to write: those asked for, else the one ``output``'s suffix names, else all three."""
    for f in formats:
        if f not in ALL_FORMATS:
            raise InputError(f"unknown report format '{f}'; choose from {', '.join(ALL_FORMATS)}")
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
        raise InputError("--output names one file: choose one --format (html, md, json or pdf)")
    output = Path(output)
    if output.is_dir():
        return {formats[0]: output / f"{REPORT_STEM}{SUFFIX[formats[0]]}"}
    if not output.parent.is_dir():
        raise InputError(f"--output {output}: the directory {output.parent} does not exist")
    return {formats[0]: output}


def write_files(report: Report, targets: dict[str, Path], *, embed_images: bool = False) -> dict[str, str]:
    """Render each format and write it atomically; returns format -> path written.

    Markdown's figures go to ``<stem>_files/`` beside it unless ``embed_images``.
    """
    outputs = {}
    for fmt, path in targets.items():
        if fmt == "md":
            write_markdown(report, path, embed_images=embed_images)
        elif fmt == "pdf":
            write_pdf(report, path)
        else:
            atomic_write_text(path, RENDERERS[fmt](report))
        outputs[fmt] = str(path)
    return outputs
