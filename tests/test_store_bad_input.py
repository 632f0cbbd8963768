"""Bad input to the feature store and the feature builder: each fails with a message naming what is wrong and what is available."""
from datetime import timedelta

import fsspec
import pandas as pd
import pytest
from pydantic import ValidationError

from churnops import features as F
from churnops import store as S


@pytest.fixture
def view_and_source():
    src = pd.DataFrame({"customer_id": [1, 2], "event_timestamp": pd.to_datetime(["2024-01-01", "2024-01-02"], utc=True),
                        "created": pd.to_datetime(["2024-01-01", "2024-01-02"], utc=True), "x": [1.0, 2.0], "y": ["a", "b"]})
    url = "memory://bad_input/src.parquet"
    with fsspec.open(url, "wb") as fh:
        src.to_parquet(fh)
    view = S.FeatureView(name="v", features=[S.Feature(name="x"), S.Feature(name="y", dtype="string")], source=url, ttl=timedelta(days=30))
    return view, src


ENT = pd.DataFrame({"customer_id": [1, 2], "event_timestamp": pd.to_datetime(["2024-01-05", "2024-01-05"], utc=True)})


def test_entity_df_without_customer_id(view_and_source):
    view, _ = view_and_source
    with pytest.raises(ValueError, match=r"no entity key column 'customer_id' \(columns: \['event_timestamp'\]\)"):
        S.get_historical_features(ENT.drop(columns="customer_id"), ["v:x"], [view])


def test_entity_df_without_timestamp(view_and_source):
    view, _ = view_and_source
    with pytest.raises(ValueError, match="no timestamp column 'event_timestamp'"):
        S.get_historical_features(ENT.drop(columns="event_timestamp"), ["v:x"], [view])
    # a different name works when given
    got = S.get_historical_features(ENT.rename(columns={"event_timestamp": "as_of"}), ["v:x"], [view], timestamp_column="as_of")
    assert got["x"].tolist() == [1.0, 2.0]


def test_unknown_view_lists_available(view_and_source):
    view, _ = view_and_source
    with pytest.raises(KeyError, match=r"unknown feature view 'w'.*available views: \['v'\]"):
        S.get_historical_features(ENT, ["w:x"], [view])


def test_unknown_feature_lists_available(view_and_source):
    view, _ = view_and_source
    with pytest.raises(KeyError, match=r"unknown feature 'z' in view 'v'; available features: \['x', 'y'\]"):
        S.get_historical_features(ENT, ["v:z"], [view])


def test_bare_feature_names(view_and_source):
    view, _ = view_and_source
    assert S.get_historical_features(ENT, ["x"], [view])["x"].tolist() == [1.0, 2.0]        # one view declares it
    with pytest.raises(KeyError, match=r"'nosuch' is not declared by any view; write it as 'view:feature'. Available: \['v:x', 'v:y'\]"):
        S.get_historical_features(ENT, ["nosuch"], [view])
    with pytest.raises(KeyError, match=r"declared by several views \['v', 'w'\]"):
        S.get_historical_features(ENT, ["x"], [view, view.model_copy(update={"name": "w"})])


def test_source_missing_columns(view_and_source):
    view, src = view_and_source
    url = "memory://bad_input/missing.parquet"
    with fsspec.open(url, "wb") as fh:
        src.drop(columns=["y", "created"]).to_parquet(fh)
    bad = view.model_copy(update={"source": url})
    with pytest.raises(ValueError, match=r"source 'memory://bad_input/missing.parquet' lacks columns \['created', 'y'\]"):
        S.get_historical_features(ENT, ["v:x"], [bad])


def test_source_that_does_not_exist(view_and_source):
    view, _ = view_and_source
    with pytest.raises(FileNotFoundError, match="does not exist"):
        S.get_historical_features(ENT, ["v:x"], [view.model_copy(update={"source": "memory://nowhere/x.parquet"})])


def test_null_entity_keys(view_and_source):
    view, _ = view_and_source
    ent = pd.DataFrame({"customer_id": [1, None, 2], "event_timestamp": pd.to_datetime(["2024-01-05"] * 3, utc=True)})
    with pytest.raises(ValueError, match=r"1 null 'customer_id' value\(s\), first at row position\(s\) \[1\]"):
        S.get_historical_features(ent, ["v:x"], [view])


def test_null_entity_timestamps(view_and_source):
    view, _ = view_and_source
    ent = ENT.copy(); ent.loc[1, "event_timestamp"] = pd.NaT
    with pytest.raises(ValueError, match=r"null timestamps in 'event_timestamp' at row position\(s\) \[1\]"):
        S.get_historical_features(ent, ["v:x"], [view])


def test_null_keys_in_source_are_dropped_with_warning(view_and_source, caplog):
    view, src = view_and_source
    src = pd.concat([src, src.assign(customer_id=None)]).reset_index(drop=True)
    with caplog.at_level("WARNING", logger="churnops.store"):
        got = S.get_historical_features(ENT, ["v:x"], [view], sources={"v": src.dropna(subset=["customer_id"]).astype({"customer_id": "int64"})})
        assert got["x"].tolist() == [1.0, 2.0]
        url = "memory://bad_input/nullkeys.parquet"
        with fsspec.open(url, "wb") as fh:
            src.to_parquet(fh)
        got = S.get_historical_features(ENT, ["v:x"], [view.model_copy(update={"source": url})])
    assert got["x"].tolist() == [1.0, 2.0]
    assert "dropping 2 source row(s) with a null customer_id" in caplog.text


def test_entity_key_type_mismatch(view_and_source):
    view, _ = view_and_source
    with pytest.raises(TypeError, match="entity key dtype"):
        S.get_historical_features(ENT.assign(customer_id=["1", "2"]), ["v:x"], [view])


@pytest.mark.parametrize("ttl", [timedelta(0), timedelta(days=-1), 0, -60])
def test_non_positive_ttl(ttl):
    with pytest.raises(ValidationError, match="ttl must be positive"):
        S.FeatureView(name="v", features=[S.Feature(name="x")], source="s", ttl=ttl)


def test_view_definition_errors():
    with pytest.raises(ValidationError, match="declares no features"):
        S.FeatureView(name="v", features=[], source="s", ttl=60)
    with pytest.raises(ValidationError, match="clash"):
        S.FeatureView(name="v", features=[S.Feature(name="event_timestamp")], source="s", ttl=60)
    with pytest.raises(ValidationError, match="extra"):
        S.FeatureView(name="v", features=[S.Feature(name="x")], source="s", ttl=60, tll=5)


def test_online_lookup_before_materialisation(tmp_path, view_and_source):
    view, _ = view_and_source
    store = S.FeatureStore(tmp_path, views=[view])
    with pytest.raises(RuntimeError, match=r"never been materialised for view\(s\) \['v'\]: run `churnops store materialize`"):
        store.get_online_features(["v:x"], [{"customer_id": 1}])


def test_store_without_registry(tmp_path):
    with pytest.raises(RuntimeError, match="no feature views registered"):
        S.FeatureStore(tmp_path).get_historical_features(ENT, ["v:x"])


def test_feature_tables_missing_columns():
    t = F.example_tables()
    t["sessions"] = t["sessions"].drop(columns="session_duration_min")
    del t["external"]
    with pytest.raises(ValueError, match=r"table 'sessions' lacks columns \['session_duration_min'\].*table 'external' is missing"):
        F.build_training_set(t, F.monthly_as_of_dates("2024-02-01", "2024-03-01"), 30)


def test_duplicate_customers_rejected():
    t = F.example_tables()
    t["customers"] = pd.concat([t["customers"], t["customers"].iloc[:1]])
    with pytest.raises(ValueError, match=r"duplicate customer_id \[1\]"):
        F.build_features(t, F.monthly_as_of_dates("2024-02-01", "2024-03-01"))
