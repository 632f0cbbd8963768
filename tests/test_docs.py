"""The docs site (`tools/docs.sh`) and the README generated from `nbs/index.ipynb` (`tools/readme.py`).

The site is built for real with mkdocs: once from a small notebook folder written here (a chapter whose outputs are a
DataFrame and a figure, the "use your own data" guide, a new chapter found by glob), and the chapters' own pages are
checked for rendered outputs whenever a chapter notebook carries some."""
import base64
import importlib.util
import io
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

ROOT = Path(__file__).resolve().parent.parent
NBS = ROOT / "nbs"


def build_site(out: Path, nbs: Path | None = None) -> subprocess.CompletedProcess:
    "Run tools/docs.sh into `out` (from `nbs`, default the project's notebooks)."
    cmd = ["bash", str(ROOT / "tools" / "docs.sh"), "--out", str(out)] + (["--nbs", str(nbs)] if nbs else [])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)


def write_nb(path: Path, *cells) -> None:
    nb = new_notebook(cells=list(cells))
    nb.metadata = {"kernelspec": {"display_name": "python3", "language": "python", "name": "python3"}}
    nbformat.write(nb, path)


def png_bytes() -> bytes:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1], [1, 0])
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


@pytest.fixture(scope="module")
def small_site(tmp_path_factory):
    "A site built by tools/docs.sh from a notebook folder written here."
    tmp = tmp_path_factory.mktemp("docs")
    nbs = tmp / "nbs"; nbs.mkdir()
    df = pd.DataFrame({"customer_id": [1, 2], "churn_probability": [0.125, 0.875]})
    write_nb(nbs / "index.ipynb", new_markdown_cell("# Home\n> the index\n\nRead [the chapter](03_demo.ipynb)."))
    write_nb(nbs / "03_demo.ipynb",
             new_markdown_cell("# Demo chapter\n> outputs kept"),
             new_code_cell("#| default_exp demo_module"),
             new_code_cell("#| hide\nsecret_setup = 1"),
             new_code_cell("#| export\ndf", outputs=[new_output(
                 "execute_result", execution_count=1,
                 data={"text/html": df._repr_html_(), "text/plain": df.to_string()})]),
             new_code_cell("plot", outputs=[new_output(
                 "display_data", data={"image/png": base64.b64encode(png_bytes()).decode(), "text/plain": "<Figure>"})]))
    write_nb(nbs / "77_new_chapter.ipynb", new_markdown_cell("# A chapter nobody configured\n> found by glob"))
    write_nb(nbs / "15_your_data.ipynb", new_markdown_cell("# Your data\n> the guide"))
    out = tmp / "site"
    r = build_site(out, nbs)
    assert r.returncode == 0, r.stdout + r.stderr
    return out


def test_chapter_page_renders_outputs(small_site):
    page = (small_site / "03_demo.html").read_text()
    assert "<table" in page and "0.875" in page          # the DataFrame as a table
    assert re.search(r'<img[^>]+src="data:image/png', page)  # the figure
    assert "#|" not in page and "secret_setup" not in page and "default_exp" not in page


def test_nav_finds_chapters_guide_and_cli(small_site):
    index = (small_site / "index.html").read_text()
    for page, title in [("77_new_chapter.html", "A chapter nobody configured"), ("15_your_data.html", "Use your own data"),
                        ("cli.html", "CLI reference"), ("03_demo.html", "Demo chapter")]:
        assert (small_site / page).exists()
        links = re.findall(rf'<a href="{re.escape(page)}" class="md-nav__link">(.*?)</a>', index, flags=re.S)
        assert any(title in re.sub(r"<[^>]+>|\s+", " ", l) for l in links), f"nav has no {title!r} -> {page}"
    assert 'href="03_demo.html"' in index                  # the notebook link now points at its page


def help_commands() -> list[str]:
    "Command names listed by `churnops --help`."
    exe = shutil.which("churnops")
    cmd = [exe, "--help"] if exe else [sys.executable, "-m", "churnops.cli", "--help"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    text = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env).stdout
    section = text.split("positional arguments:")[1].split("options:")[0]
    return re.findall(r"^    (\w[\w-]*)", section, flags=re.M)


def test_cli_reference_lists_every_command(small_site):
    commands = help_commands()
    assert len(commands) > 10 and "demo" in commands
    page = (small_site / "cli.html").read_text()
    missing = [c for c in commands if not re.search(rf'<h2[^>]*>churnops {re.escape(c)}<', page)]
    assert not missing, f"CLI reference lacks {missing}"
    assert "usage: churnops data build" in page           # nested commands' help too


def test_broken_link_fails_the_build(tmp_path):
    nbs = tmp_path / "nbs"; nbs.mkdir()
    write_nb(nbs / "index.ipynb", new_markdown_cell("# Home\n\nSee [a chapter that is gone](42_gone.ipynb)."))
    out = tmp_path / "site"
    r = build_site(out, nbs)
    assert r.returncode != 0 and "42_gone.html" in r.stdout + r.stderr
    assert not out.exists()                               # nothing half-built left where the site goes


def chapters_with_rich_outputs() -> list[Path]:
    rich = {"text/html", "image/png", "image/svg+xml"}
    return [f for f in sorted(NBS.glob("[0-9][0-9]*.ipynb"))
            if any(rich & set(o.get("data", {})) for c in nbformat.read(f, as_version=4).cells
                   if c.cell_type == "code" for o in c.get("outputs", []))]


def test_project_chapters_render_their_outputs(tmp_path):
    chapters = chapters_with_rich_outputs()
    if not chapters: pytest.skip("no chapter notebook carries a table or figure output yet")
    site = ROOT / "_docs"
    newest = max(p.stat().st_mtime for p in [*NBS.glob("*.ipynb"), ROOT / "tools" / "docs.sh", ROOT / "mkdocs.yml"])
    if not (site / "index.html").exists() or (site / "index.html").stat().st_mtime < newest:
        site = tmp_path / "site"
        r = build_site(site)
        assert r.returncode == 0, r.stdout + r.stderr
    for f in chapters:
        page = (site / f"{f.stem}.html").read_text()
        assert "<table" in page or "<img" in page, f"{f.name} has outputs but its page shows no table or figure"


def load_readme_tool():
    spec = importlib.util.spec_from_file_location("readme_tool", ROOT / "tools" / "readme.py")
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    return mod


def test_readme_matches_index():
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "readme.py"), "--check"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_readme_check_catches_drift(tmp_path):
    tool = load_readme_tool()
    text = tool.render()
    assert text.startswith(tool.HEADER) and "](nbs/03_features.ipynb)" in text
    stale = tmp_path / "README.md"
    stale.write_text(text.replace("## The loop", "## The old loop"))
    problems = tool.check(text, stale)
    assert len(problems) == 1 and "+## The loop" in problems[0]
    stale.write_text(text)
    assert tool.check(text, stale) == []
    assert tool.check(text + "line\n" * tool.MAX_LINES, stale)  # too long is a problem too
