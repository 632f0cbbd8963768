"""End to end on a simulated world: simulate → data build → features/store CLI → training set through the store → online store."""
import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from churnops import data as D
from churnops import features as F
from churnops import simulate
from churnops import store as S


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    home = tmp_path_factory.mktemp("store_world")
    simulate.simulate_world(home, customers=200, days=240, seed=3)
    D.build(home)
    return home


def cli(home, *args):
    env = {**os.environ, "CHURNOPS_DEBUG": "1"}
    r = subprocess.run([sys.executable, "-c", "import sys; from churnops.cli import main; sys.exit(main())", *args, "--home", str(home)], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    try: return json.loads(r.stdout)
    except json.JSONDecodeError: return json.loads(r.stdout.strip().splitlines()[-1])


def test_training_set_through_store_equals_direct(world):
    tables = D.load_build(world)
    dates = F.default_as_of_dates(tables, 30)
    assert len(dates) >= 3
    direct = F.build_training_set(tables, dates, 30)
    via = S.build_training_set_from_store(world, dates, 30, tables=tables)
    pd.testing.assert_frame_equal(via, direct)
    assert direct["is_churned"].sum() > 0
    # entity rows in between snapshots get the latest earlier snapshot, never a later one
    mid = direct[["customer_id"]].assign(event_timestamp=direct["as_of"] + pd.Timedelta(days=10))
    got = S.FeatureStore(world).get_historical_features(mid, ["churn_features:tenure_days"])
    np.testing.assert_allclose(got["tenure_days"].to_numpy(), direct["tenure_days"].to_numpy())


def test_cli_build_register_materialize_get(world):
    out = cli(world, "features", "build")
    ts = pd.read_parquet(os.path.join(out["path"], "part-0.parquet"))
    assert len(ts) == out["rows"] and list(ts.columns) == ["customer_id", "as_of", *F.FEATURE_COLUMNS, "is_churned"]
    reg = cli(world, "store", "register")
    assert reg["features"] == len(F.FEATURE_COLUMNS)
    views = cli(world, "store", "views")
    assert views["feature_set_version"] == reg["feature_set_version"] == S.FeatureStore(world).version
    mat = cli(world, "store", "materialize")
    assert mat["rows"]["churn_features"] > 0

    # the online store serves the last historical row of each customer
    store = S.FeatureStore(world)
    src = S.load_source(store.views["churn_features"])
    last = src.sort_values(["event_timestamp", "created"], kind="stable").groupby("customer_id").tail(1).set_index("customer_id")
    ids = last.index.tolist()[:50]
    on = store.get_online_features(["churn_features:*"], [{"customer_id": c} for c in ids])
    assert on["_status"] == ["PRESENT"] * len(ids)
    for col in F.FEATURE_COLUMNS:
        exp = [None if pd.isna(v) else v for v in last.loc[ids, col].tolist()]
        got = on[col]
        if col in F.NUMERIC_COLUMNS:
            np.testing.assert_allclose(np.array(got, dtype=float), np.array(exp, dtype=float), rtol=0, atol=0)
        else:
            assert got == exp, col
    # ... and equals a historical query at the end of time
    hist = store.get_historical_features(pd.DataFrame({"customer_id": ids, "event_timestamp": last.loc[ids, "event_timestamp"].to_numpy()}),
                                         ["churn_features:*"])
    np.testing.assert_allclose(hist["tenure_days"].to_numpy(dtype=float), np.array(on["tenure_days"], dtype=float))

    got = cli(world, "store", "get", "--customer-id", str(ids[0]), "--customer-id", "999999")
    assert got["customer_id"] == [ids[0], 999999] and got["_status"] == ["PRESENT", "NOT_FOUND: churn_features"]
    assert got["tenure_days"][0] == pytest.approx(float(last.loc[ids[0], "tenure_days"])) and got["tenure_days"][1] is None


def test_view_over_a_data_version(world):
    """A view whose source is a data version (`data:<table>@<hash>`): point-in-time plan and charges from subscriptions."""
    build = D.read_build(world)
    version = build["tables"]["subscriptions"]
    view = S.FeatureView(name="plan", features=[S.Feature(name="plan", dtype="string"), S.Feature(name="monthly_charges")],
                         source=f"data:subscriptions@{version}", ttl=pd.Timedelta(days=3650).to_pytimedelta(),
                         created_timestamp_field=None, owner="billing")
    subs = D.load_table(world, "subscriptions")
    ent = subs[["customer_id"]].assign(event_timestamp=subs["event_timestamp"] + pd.Timedelta(hours=1)).head(40)
    got = S.get_historical_features(ent, ["plan:*"], [view], home=world)
    # reference: the latest subscription row at or before each entity timestamp, by a plain loop
    for (_, e), p, m in zip(ent.iterrows(), got["plan"], got["monthly_charges"]):
        rows = subs[(subs.customer_id == e.customer_id) & (subs.event_timestamp <= e.event_timestamp)]
        last = rows.iloc[np.lexsort((np.arange(len(rows)), rows["event_timestamp"].to_numpy()))[-1]]
        assert p == last["plan"] and m == last["monthly_charges"]
    assert S.feature_set_version([view]) != S.feature_set_version([view.model_copy(update={"source": "data:subscriptions"})])


def test_home_option_before_the_action(world, tmp_path, capsys):
    """`churnops store --home H views` and `churnops store views --home H` name the same home (sub-subcommand defaults do not win)."""
    from churnops.cli import main
    S.register_churn_features(world, F.default_as_of_dates(D.load_build(world), 30)[:2])
    outs = []
    for argv in (["store", "--home", str(world), "views"], ["store", "views", "--home", str(world)]):
        assert main(argv) == 0
        outs.append(json.loads(capsys.readouterr().out))
    assert outs[0] == outs[1] and outs[0]["feature_set_version"] == S.FeatureStore(world).version
    assert main(["store", "views", "--home", str(tmp_path)]) == 0          # an empty home really is another home
    assert json.loads(capsys.readouterr().out)["views"] == []
