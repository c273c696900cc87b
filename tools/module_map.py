"""Write the README's module map from the package tree and each module's docstring.

    python tools/module_map.py          # rewrite the block between the markers in README.md
    python tools/module_map.py --check  # exit 1 if the README's block is stale (CI runs the test)

The map is generated so that it cannot go stale: tests/test_readme.py fails when a module is
added, moved or re-described without rerunning this script.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "forecast"
README = REPO / "README.md"
BEGIN, END = "<!-- BEGIN module-map (tools/module_map.py) -->", "<!-- END module-map -->"


def first_line(path: Path) -> str:
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    line = doc.strip().split("\n\n")[0].replace("\n", " ").strip()
    return line


LAYERS = ["spec", "data", "model", "stats", "fit", "runs", "workflows", "reports", "cli", "api"]
FIRST = ["__init__.py", "settings.py", "errors.py"]


def _children(folder: Path) -> list[Path]:
    def key(p: Path) -> tuple:
        name = p.name.removesuffix(".py")
        if folder == PACKAGE:
            if p.name in FIRST:
                return (0, FIRST.index(p.name), "")
            return (1, LAYERS.index(name) if name in LAYERS else len(LAYERS), name)
        return (0 if p.name == "__init__.py" else 1, p.is_dir(), name)

    kids = [p for p in folder.iterdir() if (p.suffix == ".py" or (p.is_dir() and (p / "__init__.py").exists()))]
    return sorted(kids, key=key)


def _walk(folder: Path, depth: int, out: list[tuple[str, str]]) -> None:
    for p in _children(folder):
        if p.name == "__init__.py":
            continue
        if p.is_dir():
            out.append(("  " * depth + p.name + "/", first_line(p / "__init__.py")))
            _walk(p, depth + 1, out)
        else:
            out.append(("  " * depth + p.name, first_line(p)))


def module_map() -> str:
    entries = [("forecast/", first_line(PACKAGE / "__init__.py"))]
    _walk(PACKAGE, 1, entries)
    width = max(len(n) for n, _ in entries) + 2
    return "\n".join(["```", *(f"{n:<{width}}{d}".rstrip() for n, d in entries), "```"])


def render(readme: str) -> str:
    start, stop = readme.index(BEGIN), readme.index(END)
    return readme[: start + len(BEGIN)] + "\n" + module_map() + "\n" + readme[stop:]


def main(argv: list[str]) -> int:
    text = README.read_text(encoding="utf-8")
    new = render(text)
    if "--check" in argv:
        return 0 if new == text else 1
    README.write_text(new, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
