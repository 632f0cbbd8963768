"""Render README.md from nbs/index.ipynb (nbdev-readme needs Quarto, which cannot be installed here).

    python tools/readme.py           # write README.md
    python tools/readme.py --check   # exit 1 when README.md and the index notebook disagree (or README is too long)

Markdown cells are copied as they are, with links to notebooks (`03_features.ipynb`) pointed at `nbs/`; code cells
(none today) become fenced blocks with their text outputs; `#| hide` cells are left out.
"""
from __future__ import annotations

import argparse
import difflib
import re
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
INDEX, README = ROOT / "nbs" / "index.ipynb", ROOT / "README.md"
MAX_LINES = 200  # the README should fit on a screen or two; detail belongs in the chapters
HEADER = "<!-- Generated from nbs/index.ipynb by tools/readme.py: edit the notebook, then run `python tools/readme.py`. -->"


def relink(md: str) -> str:
    "Point relative links at the notebooks folder: `](03_features.ipynb)` -> `](nbs/03_features.ipynb)`."
    return re.sub(r"\]\((?![a-z][a-z0-9+.-]*:|/|#)([^)\s]+)\)", r"](nbs/\1)", md)


def code_block(cell) -> list[str]:
    "A code cell as a fenced python block plus its text outputs; nothing for `#| hide` cells."
    lines = cell.source.splitlines()
    if any(l.startswith("#|") and "hide" in l for l in lines): return []
    src = "\n".join(l for l in lines if not l.startswith("#|")).strip("\n")
    parts = [f"```python\n{src}\n```"] if src else []
    for o in cell.get("outputs", []):
        text = o.get("text") or o.get("data", {}).get("text/plain")
        if text: parts.append("```\n" + "".join(text).rstrip("\n") + "\n```")
    return parts


def render(index: Path = INDEX) -> str:
    "The README text for an index notebook."
    nb = nbformat.read(index, as_version=4)
    parts = [HEADER]
    for cell in nb.cells:
        if cell.cell_type == "markdown": parts.append(relink(cell.source.strip("\n")))
        elif cell.cell_type == "code": parts += code_block(cell)
    return "\n\n".join(parts) + "\n"


def check(expected: str, readme: Path = README) -> list[str]:
    "Problems with the README on disk: differences from `expected`, or too many lines."
    found = readme.read_text() if readme.exists() else ""
    problems = []
    if found != expected:
        diff = difflib.unified_diff(found.splitlines(), expected.splitlines(), str(readme), "rendered from nbs/index.ipynb",
                                    lineterm="", n=1)
        problems.append("README.md differs from nbs/index.ipynb (run `python tools/readme.py`):\n"
                        + "\n".join(list(diff)[:40]))
    n = expected.count("\n")
    if n > MAX_LINES: problems.append(f"README.md: {n} lines, more than {MAX_LINES}: move detail into a chapter")
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="do not write; exit 1 when README.md is not the rendered index")
    args = ap.parse_args(argv)
    text = render()
    if args.check:
        problems = check(text)
        for p in problems: print(p, file=sys.stderr)
        return 1 if problems else 0
    tmp = README.with_name(".README.md.tmp")
    tmp.write_text(text); tmp.replace(README)
    print(f"README.md: {text.count(chr(10))} lines from nbs/index.ipynb")
    return 0


if __name__ == "__main__":
    sys.exit(main())
