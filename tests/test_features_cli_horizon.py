"""`churnops features build` labels with the declaration's horizon (`label.horizon_days`), not the config's
`problem.label_horizon_days`; `--horizon` overrides it for one build. Run through the CLI in a real process on a simulated
home whose declaration says 14 days while its config says 30; the labels are checked against a hand-written rule on the
label table (churned when the customer's cancellation falls in `(as_of, as_of + horizon]`)."""
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pandas as pd
import pytest
import yaml

from churnops import data as D
from churnops import simulate as S


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    "A simulated home and data build; declaration horizon 14 days, config horizon 30 days."
    home = tmp_path_factory.mktemp("horizon") / "h"
    S.simulate_world(home, customers=150, days=240, seed=3)
    decl = yaml.safe_load((home / "declaration.yaml").read_text())
    decl["label"]["horizon_days"] = 14
    (home / "declaration.yaml").write_text(yaml.safe_dump(decl, sort_keys=False))
    (home / "churnops.yaml").write_text("problem: {label_horizon_days: 30}\n")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        D.build(home)
    return home


def features_build(home: Path, *extra: str) -> tuple[pd.DataFrame, dict]:
    "Run `churnops features build` in its own process; (training set, manifest) of the version it wrote."
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    r = subprocess.run([sys.executable, "-m", "churnops.cli", "features", "build", "--home", str(home), *extra],
                       capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr
    dest = Path(json.loads(r.stdout.strip().splitlines()[-1])["path"])
    return pd.read_parquet(dest / "part-0.parquet"), json.loads((dest / "manifest.json").read_text())


def expected_labels(home: Path, ts: pd.DataFrame, horizon_days: float) -> pd.Series:
    "Hand-written rule: 1 when the customer's cancellation is after as_of and at most `horizon_days` later."
    ends = D.load_table(home, "cancellations").set_index("customer_id")["event_timestamp"]
    end = pd.to_datetime(ts["customer_id"].map(ends), utc=True)
    as_of = pd.to_datetime(ts["as_of"], utc=True)
    return ((end > as_of) & (end <= as_of + pd.Timedelta(days=horizon_days))).astype(int).rename("is_churned")


def test_declaration_horizon_is_the_default(home):
    ts, manifest = features_build(home)
    assert manifest["horizon_days"] == 14
    assert ts["is_churned"].sum() > 0
    pd.testing.assert_series_equal(ts["is_churned"].astype(int).reset_index(drop=True),
                                   expected_labels(home, ts, 14).reset_index(drop=True))
    assert not expected_labels(home, ts, 30).equals(ts["is_churned"].astype(int))   # the config's 30 days would label otherwise


def test_flag_overrides_the_declaration(home):
    ts, manifest = features_build(home, "--horizon", "45")
    assert manifest["horizon_days"] == 45
    pd.testing.assert_series_equal(ts["is_churned"].astype(int).reset_index(drop=True),
                                   expected_labels(home, ts, 45).reset_index(drop=True))
