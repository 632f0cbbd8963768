"""Execute chapters in place so they keep their outputs (the docs site and a code host then show each result under its code).

Usage: python tools/run_chapters.py [nbs/NN_name.ipynb ...]   (default: every chapter in nbs/)

A chapter runs top to bottom in one python3 kernel started in nbs/, as nbdev-test runs it, with two differences: the
outputs are written back, and cells nbdev-test would skip are skipped here too (`#| eval: false`, and the `slow` and
`notest` flags of pyproject's `tst_flags`), their old outputs cleared. `show_doc` cells are added after each exported
public definition first, so the public API's signatures and docments appear in the page. A failing cell stops that
chapter, leaves the file untouched, and makes the script exit 1 naming the chapter, cell and error. Outputs are then
normalised by `nbdev-clean` (run it after this script).
"""
import ast
import re
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NBS = Path(__file__).resolve().parent.parent / "nbs"
SKIP_FLAGS = {"slow", "notest"}
SHOW_DOC_IMPORT = "from nbdev.showdoc import show_doc"
CHATTER = re.compile(r"INFO mlflow\.|Creating initial MLflow database|Updating database tables|Successfully registered model|"
                     r"already exists\. Creating a new version|Created version '|from \.autonotebook import tqdm")   # MLflow's log lines, not the chapter's


def quiet(output: dict) -> dict | None:
    "An output as the chapter keeps it: progress bars and MLflow's own log lines dropped; warnings the chapter teaches kept."
    from churnops.runner import NOISE
    if output.get("output_type") != "stream": return output
    text = "".join(l for l in output.get("text", "").splitlines(keepends=True) if not NOISE.search(l) and not CHATTER.search(l))
    text = re.sub(r"^\S+\.py:\d+: ", "", text, flags=re.M)   # where a warning was raised: a temp or machine path
    return nbformat.from_dict({**output, "text": text}) if text.strip() else None   # a node: nbformat.write reads attributes


def directives(source: str) -> dict[str, str]:
    "The cell's `#| key: value` / `#| flag` lines (nbdev's cell directives) as a mapping."
    out = {}
    for line in source.splitlines():
        m = re.match(r"^#\|\s*([\w-]+)\s*:?\s*(.*)$", line.strip())
        if m: out[m.group(1)] = m.group(2).strip()
    return out


def skipped(source: str) -> bool:
    "True for a cell nbdev-test would not run: `eval: false`, or a test flag such as `slow`."
    d = directives(source)
    return d.get("eval", "").lower() == "false" or bool(SKIP_FLAGS & set(d))


def public_names(source: str) -> list[str]:
    "Public functions and classes an exported cell defines (what `show_doc` documents)."
    if "export" not in directives(source) and "exports" not in directives(source): return []
    try: tree = ast.parse(source)
    except SyntaxError: return []
    return [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
            and not n.name.startswith("_") and (ast.get_docstring(n) or not isinstance(n, ast.ClassDef))]   # a class without
    # its own docstring would show its base's (pydantic's BaseModel links into pydantic's docs)


def add_show_doc(nb) -> int:
    "Insert `show_doc(name)` cells after exported public definitions that have none yet; returns how many were added."
    shown = {m for c in nb.cells if c.cell_type == "code" for m in re.findall(r"show_doc\((\w+)", c.source)}
    cells, added = [], 0
    for c in nb.cells:
        cells.append(c)
        if c.cell_type != "code": continue
        for name in public_names(c.source):
            if name in shown: continue
            cells.append(nbformat.v4.new_code_cell(f"show_doc({name})")); shown.add(name); added += 1
    if added and not any(SHOW_DOC_IMPORT in c.source for c in cells if c.cell_type == "code"):
        first_export = next(i for i, c in enumerate(cells) if c.cell_type == "code" and "export" in directives(c.source))
        cells.insert(first_export + 1, nbformat.v4.new_code_cell(SHOW_DOC_IMPORT))
    nb.cells = cells
    return added


def run_chapter(path: Path, timeout: int = 900) -> None:
    "Execute one chapter in place (skipping what nbdev-test skips); raise RuntimeError naming the failing cell."
    nb = nbformat.read(path, as_version=4)
    add_show_doc(nb)
    client = NotebookClient(nb, kernel_name="python3", timeout=timeout, resources={"metadata": {"path": str(path.parent)}})
    with client.setup_kernel():
        for i, cell in enumerate(nb.cells):
            if cell.cell_type != "code": continue
            if skipped(cell.source): cell.outputs, cell.execution_count = [], None; continue
            try: client.execute_cell(cell, i)
            except Exception as e:
                raise RuntimeError(f"{path.name}: cell {i} failed: {type(e).__name__}: {str(e)[-800:]}") from None
            cell.outputs = [o for o in map(quiet, cell.outputs) if o is not None]
    nbformat.write(nb, path)


def main(argv: list[str]) -> int:
    paths = [Path(a) for a in argv] or sorted(NBS.glob("[0-9][0-9]*.ipynb"))
    failed = []
    for p in paths:
        print(f"running {p.name} ...", flush=True)
        try: run_chapter(p)
        except RuntimeError as e: print(e, file=sys.stderr, flush=True); failed.append(p.name)
    if failed: print(f"failed: {failed}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
