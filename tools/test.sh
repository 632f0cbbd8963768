#!/usr/bin/env bash
# The whole test suite: install dev extras, prove notebooks and package agree (and README and index), build the docs,
# run the notebooks' tests, then pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q -e ".[dev]"
nbdev-export
git diff --exit-code -- churnops || { echo "nbdev-export changed churnops/: notebooks and package are out of sync"; exit 1; }
[ -z "$(git status --porcelain -- churnops)" ] || { git status --porcelain -- churnops; echo "nbdev-export left untracked files in churnops/"; exit 1; }
nbdev-clean
git diff --exit-code -- nbs || { echo "nbdev-clean changed nbs/: commit cleaned notebooks"; exit 1; }
python tools/readme.py --check   # README.md is rendered from nbs/index.ipynb
bash tools/docs.sh               # the docs site into _docs/, broken links are errors
nbdev-test --n-workers 2
# two processes, each test file whole in one of them (module fixtures built once); every server a test starts
# listens on a free port in a temp dir, so the two never meet. Files go out in collection order, which puts the
# long ones first (tests/conftest.py LONG_FILES), not xdist's default of most tests first.
python -m pytest -n 2 --dist loadfile --no-loadscope-reorder tests
