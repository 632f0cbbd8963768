"""The declared engine gives the same values as the hand-written features it replaced.

`tests/fixtures/features_reference/` holds a simulated world (300 customers, 200 days, seed 0, built by `data.build`) and the
training sets the old code made from it and from `features.example_tables()` (see `make_features_reference.py` there).
The simulator's features are its declaration's: `simulate_world` writes it into the home, `load_declaration` reads it back.
"""
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from churnops import features as F
from churnops import simulate as S
from churnops.declaration import feature_names, load_declaration

REF = Path(__file__).parent / "fixtures" / "features_reference"
TABLES = ("customers", "subscriptions", "transactions", "support_tickets", "cancellations", "sessions", "external")


def assert_same(got: pd.DataFrame, want: pd.DataFrame):
    assert list(got.columns) == list(want.columns)
    pd.testing.assert_frame_equal(got[["customer_id", "as_of", "is_churned"]], want[["customer_id", "as_of", "is_churned"]])
    for c in F.NUMERIC_COLUMNS:
        a, b = got[c].to_numpy(dtype=float), want[c].to_numpy(dtype=float)
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b), err_msg=c)
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=0, err_msg=c)
    for c in F.CATEGORICAL_COLUMNS:
        pd.testing.assert_series_equal(got[c], want[c], obj=c)


def load(kind):
    dates = json.loads((REF / "dates.json").read_text())
    return [pd.Timestamp(d) for d in dates[kind]], dates["horizon_days"]


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    "A simulated home: its declaration.yaml is what simulate_world writes (the world's size does not change it)."
    home = tmp_path_factory.mktemp("sim_home")
    S.simulate_world(home, customers=20, days=3, seed=0)
    return home


def test_home_declaration_round_trips(home):
    d = load_declaration(home)
    assert d == S.world_declaration()
    assert sorted(feature_names(d, hidden=False)) == sorted(F.FEATURE_COLUMNS) and len(F.FEATURE_COLUMNS) == 36
    assert "WORLD_FEATURES_YAML" not in dir(F) and not hasattr(F, "SIMULATOR_FEATURES_YAML")   # one copy: simulate's


def test_simulated_world_matches_hand_written_features(home):
    tables = {t: pd.read_parquet(REF / f"sim_{t}.parquet") for t in TABLES}
    dates, horizon = load("sim")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = F.build_training_set(tables, dates, horizon, declaration=load_declaration(home))
        default = F.build_training_set(tables, dates, horizon)
    want = pd.read_parquet(REF / "sim_training_set.parquet")
    assert len(want) > 2000 and want["is_churned"].sum() > 10
    assert_same(got, want)
    pd.testing.assert_frame_equal(got, default)


def test_simulated_world_in_slices_matches():
    tables = {t: pd.read_parquet(REF / f"sim_{t}.parquet") for t in TABLES}
    dates, horizon = load("sim")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lab = F.label_frame(tables, dates, horizon)
    whole = F.compute_features(tables, lab)
    pd.testing.assert_frame_equal(F.compute_features(tables, lab, chunk_entities=37), whole)


def test_example_world_matches_hand_written_features():
    dates, horizon = load("example")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = F.build_training_set(F.example_tables(), dates, horizon)
    assert_same(got, pd.read_parquet(REF / "example_training_set.parquet"))


def test_default_dates_unchanged_on_simulated_world():
    """The first date follows the first windowed event: the same as the old 'first session or transaction' here."""
    tables = {t: pd.read_parquet(REF / f"sim_{t}.parquet") for t in TABLES}
    first = min(tables[t]["event_timestamp"].min() for t in ("sessions", "transactions"))
    assert F.data_start(tables) == first
    assert F.data_end(tables) == max(tables[t]["event_timestamp"].max() for t in TABLES if "event_timestamp" in tables[t])


def test_comparison_can_fail():
    want = pd.read_parquet(REF / "example_training_set.parquet")
    bad = want.copy()
    bad.loc[bad.index[0], "sessions_30d"] += 1e-9
    with pytest.raises(AssertionError):
        assert_same(bad, want)


def test_stored_build_bucket_by_bucket_matches_one_piece(tmp_path):
    "A build in 5 buckets, each task reading its own: the same training set as all tables in memory as one bucket."
    from churnops import data as D
    home = tmp_path / "h"
    S.simulate_world(home, customers=120, days=240, seed=2)
    (home / "churnops.yaml").write_text("compute: {bucket_entities: 25}\n")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        D.build(home)
    sb = D.open_build(home)
    assert sb.buckets == 5
    tables = D.load_build(home)
    dates = F.default_as_of_dates(tables, 30)
    assert F.default_as_of_dates(sb, 30) == dates and len(dates) >= 2      # the manifests give the same dates
    got = F.build_training_set(sb, dates, 30)
    want = F.build_training_set(tables, dates, 30, buckets=1)
    assert len(want) > 200
    pd.testing.assert_frame_equal(got, want)
    assert F.frame_hash(got) == F.frame_hash(want)
    with pytest.warns(UserWarning, match="censored"):                      # warned once, against the whole data's end
        F.build_training_set(sb, [F.data_end(sb).normalize()], 30)
