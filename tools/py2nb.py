"""Authoring aid: turn a jupytext percent-format script into a notebook under nbs/.

The notebook is the source of truth once written; the script is a scratch file kept outside the repo.
Usage: python tools/py2nb.py SCRIPT.py nbs/NN_name.ipynb
Cells tagged in the script (`# %% tags=["parameters"]`) keep their tags; every notebook gets a python3 kernelspec.
"""
import sys

import jupytext
import nbformat


def convert(src: str, dest: str) -> None:
    nb = jupytext.read(src, fmt="py:percent")
    nb.metadata = {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}}
    for cell in nb.cells:
        cell.metadata = {k: v for k, v in cell.metadata.items() if k == "tags"}
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nbformat.write(nb, dest)


if __name__ == "__main__":
    convert(sys.argv[1], sys.argv[2])
