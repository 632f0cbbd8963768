"""The label horizon monitoring counts by is the declaration's `label.horizon_days`, not the config's
`problem.label_horizon_days`: a home whose two disagree, monitored through the real job (papermill), labels by the
declaration; a home without a declaration (a table model's) falls back to the config."""
import os
import sqlite3

import pandas as pd
import numpy as np
import pytest

from churnops import monitor, predlog
from churnops.config import Paths
from churnops.simulate import world_declaration, write_declaration
from test_monitor_eventtime import DAY0, write_event_world
from test_monitor_job import features, register_model

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


@pytest.fixture(autouse=True)
def _no_pinned_tracking_uri():
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    yield
    os.environ.pop("MLFLOW_TRACKING_URI", None)


def churned_within(home, event_times, days):
    "Predictions whose customer's churn is reported within `days` after its as_of, counted straight from feedback.db."
    with sqlite3.connect(Paths(home).predictions / "feedback.db") as con:
        fb = pd.read_sql_query("SELECT customer_id, churned, ts FROM feedback", con)
    fb["ts"] = pd.to_datetime(fb["ts"], utc=True, format="ISO8601")
    as_of = dict(zip(event_times["request_id"].str[1:], pd.to_datetime(event_times["as_of"], utc=True)))
    hit = [(r.ts - as_of[r.customer_id[1:]]) <= pd.Timedelta(days=days) for r in fb[fb.churned == 1].itertuples()]
    return int(np.sum(hit))


def test_monitor_labels_by_the_declarations_horizon(tmp_path):
    rng = np.random.default_rng(5)
    home = tmp_path / "home"
    register_model(home, features(rng, 3000))
    decl = world_declaration().model_copy(deep=True)
    decl.label.horizon_days = 10
    write_declaration(decl, home / "declaration.yaml")
    (home / "churnops.yaml").write_text("problem:\n  label_horizon_days: 30\n")
    assert predlog.label_horizon_days(home) == 10.0
    ev, y = write_event_world(home, rng, 800, wrong=0.0)
    res = monitor.run_monitor(home, DAY0, DAY0 + pd.Timedelta(days=5))
    assert res["label_horizon_days"] == 10.0
    within_10, within_30 = churned_within(home, ev, 10), churned_within(home, ev, 30)
    assert within_10 < within_30 == int(y.sum())                     # the two horizons label differently here
    assert res["labelled_churned"] == within_10 and res["n_labelled"] == 800   # later churners count as stayed at 10 days


def test_a_home_without_a_declaration_uses_the_config(tmp_path):
    (tmp_path / "churnops.yaml").write_text("problem:\n  label_horizon_days: 45\n")
    assert predlog.label_horizon_days(tmp_path) == 45.0
    (tmp_path / "churnops.yaml").write_text("declaration: missing.yaml\nproblem:\n  label_horizon_days: 45\n")
    with pytest.raises(ValueError, match="missing.yaml"):            # named but absent: an error, not the fallback
        predlog.label_horizon_days(tmp_path)
