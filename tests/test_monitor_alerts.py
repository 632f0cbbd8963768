"""Alerts to a JSON-lines file and a real local webhook; the retraining trigger's reasons, cool-down and launches."""
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pandas as pd
import pytest

from churnops import monitor
from churnops.config import Config, MonitoringRule, RetrainConfig, config_from_dict


@pytest.fixture
def webhook():
    "A real HTTP server on 127.0.0.1 that records POSTed JSON bodies; `.status` sets its answer."
    received = []
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append({"path": self.path, "json": json.loads(body), "content_type": self.headers["Content-Type"]})
            self.send_response(srv.status); self.end_headers(); self.wfile.write(b"ok")
        def log_message(self, *a): pass
    srv = HTTPServer(("127.0.0.1", 0), Handler); srv.status = 200
    t = threading.Thread(target=srv.serve_forever, daemon=True); t.start()
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}/hook"; srv.received = received
    yield srv
    srv.shutdown(); srv.server_close()


def test_rules_from_config_fire_in_the_right_direction():
    cfg = config_from_dict({"monitoring": [{"metric": "accuracy", "threshold": 0.9, "direction": "below"},
                                           {"metric": "p99_latency_ms", "threshold": 100, "direction": "above", "unit": "ms"},
                                           {"metric": "psi", "threshold": 0.2, "direction": "above"}]})
    alerts, skipped = monitor.evaluate_rules({"accuracy": 0.95, "p99_latency_ms": 100.0, "psi": float("nan")}, config=cfg)
    assert alerts == [] and skipped == ["psi"]                       # equal to the threshold does not fire; NaN is "no data"
    alerts, _ = monitor.evaluate_rules({"accuracy": 0.89, "p99_latency_ms": 100.5, "psi": 0.3}, config=cfg, context={"model_version": 3})
    assert [a["metric"] for a in alerts] == ["accuracy", "p99_latency_ms", "psi"]
    assert alerts[1]["unit"] == "ms" and "above the threshold 100ms" in alerts[1]["message"]
    assert alerts[0]["context"] == {"model_version": 3}


def test_alerts_file_and_webhook(tmp_path, webhook):
    alerts, _ = monitor.evaluate_rules({"accuracy": 0.5, "error_rate": 0.2}, config=Config())
    res = monitor.record_alerts(tmp_path, alerts, webhook.url)
    assert res["written"] == 2 and res["webhook_status"] == 200 and res["webhook_error"] is None
    assert webhook.received[0]["path"] == "/hook" and webhook.received[0]["content_type"] == "application/json"
    assert [a["metric"] for a in webhook.received[0]["json"]["alerts"]] == ["accuracy", "error_rate"]
    lines = (tmp_path / "reports" / "alerts.jsonl").read_text().splitlines()
    assert [json.loads(l)["metric"] for l in lines] == ["accuracy", "error_rate"]
    # a failing webhook is reported, and the alerts are still written
    webhook.status = 500
    res = monitor.record_alerts(tmp_path, alerts[:1], webhook.url)
    assert res["webhook_status"] == 500 and res["webhook_error"] == "HTTP 500" and res["written"] == 1
    assert len(monitor.read_alerts(tmp_path)) == 3
    # nothing listening: a connection error, not an exception
    res = monitor.record_alerts(tmp_path, alerts[:1], "http://127.0.0.1:9/none", timeout=2)
    assert res["webhook_status"] is None and "ConnectError" in res["webhook_error"]
    assert monitor.record_alerts(tmp_path, [], webhook.url)["written"] == 0
    assert len(webhook.received) == 2                               # no POST for no alerts


def test_trigger_reasons_each(tmp_path):
    t = pd.Timestamp("2025-06-01", tz="UTC")
    cases = [({"accuracy": 0.80}, ["accuracy_degradation"]), ({"max_psi": 0.25}, ["data_drift"]),
             ({"dataset_drift": True}, ["data_drift"]), ({"trained_at": t - pd.Timedelta(days=31)}, ["scheduled_retrain"]),
             ({"rows_since_training": 100_000}, ["new_data_available"]),
             ({"accuracy": 0.9, "max_psi": 0.05, "dataset_drift": False, "trained_at": t - pd.Timedelta(days=3),
               "rows_since_training": 10}, [])]
    for i, (signals, reasons) in enumerate(cases):
        d = monitor.RetrainingTrigger(tmp_path / str(i), RetrainConfig()).evaluate(now=t, **signals)
        assert d.reasons == reasons and d.retrain == bool(reasons), (signals, d)
    d = monitor.RetrainingTrigger(tmp_path / "all", RetrainConfig()).evaluate(
        accuracy=0.5, max_psi=0.5, trained_at="2025-01-01", rows_since_training=10**6, now=t)
    assert d.reasons == list(monitor.RETRAIN_REASONS)


def test_trigger_cooldown_persists_across_instances_and_launches_a_command(tmp_path):
    cfg = RetrainConfig(cooldown_hours=6)
    t = pd.Timestamp("2025-06-01", tz="UTC")
    d1 = monitor.RetrainingTrigger(tmp_path, cfg).evaluate(max_psi=0.4, now=t)
    marker = tmp_path / "launched.txt"
    res = monitor.RetrainingTrigger(tmp_path, cfg).fire(
        d1, launch=[sys.executable, "-c", f"import os; open({str(marker)!r}, 'w').write(os.environ['CHURNOPS_RETRAIN_REASONS'])"], wait=True)
    assert res["launched"] and res["returncode"] == 0 and marker.read_text() == "data_drift"
    # a new process (new instance) an hour later: suppressed by the persisted cool-down
    d2 = monitor.RetrainingTrigger(tmp_path, cfg).evaluate(max_psi=0.4, accuracy=0.1, now=t + pd.Timedelta(hours=1))
    assert (d2.retrain, d2.suppressed, d2.reasons) == (False, "cooldown", ["accuracy_degradation", "data_drift"])
    assert pd.Timestamp(d2.cooldown_until) == t + pd.Timedelta(hours=6)
    assert monitor.RetrainingTrigger(tmp_path, cfg).fire(d2, launch=["false"]) == {"launched": False, "why": "cooldown"}
    d3 = monitor.RetrainingTrigger(tmp_path, cfg).evaluate(max_psi=0.4, now=t + pd.Timedelta(hours=7))
    assert d3.retrain
    state = json.loads((tmp_path / "reports" / "retrain_state.json").read_text())
    assert state["reasons"] == ["data_drift"] and state["launch"]["command"][0] == sys.executable
    decisions = (tmp_path / "reports" / "retrain_decisions.jsonl").read_text().splitlines()
    assert [json.loads(l)["retrain"] for l in decisions] == [True, False, True]


def test_trigger_reads_thresholds_from_the_home_config(tmp_path):
    (tmp_path / "churnops.yaml").write_text("retrain:\n  min_accuracy: 0.95\n  cooldown_hours: 0\n")
    trig = monitor.RetrainingTrigger(tmp_path)
    assert trig.config.min_accuracy == 0.95
    assert trig.evaluate(accuracy=0.93).reasons == ["accuracy_degradation"]


def test_process_metrics_of_a_real_process_and_gpu_absent():
    import subprocess
    proc = subprocess.Popen([sys.executable, "-c", "x = bytearray(50 * 2**20)\nwhile True: pass"])
    try:
        import time; time.sleep(1.0)
        m = monitor.process_metrics(proc.pid, interval=0.5)
        assert m["pid"] == proc.pid and m["rss_mb"] > 40 and m["cpu_percent"] > 1 and m["threads"] >= 1
    finally:
        proc.kill(); proc.wait()
    with pytest.raises(ValueError, match="no process with pid"):
        monitor.process_metrics(proc.pid)
    s = monitor.system_metrics()
    if monitor.gpu_metrics() is None:
        assert s["gpu"] == "absent" and s["gpu_utilization_percent"] is None      # absent, not 0 %
    else:
        assert isinstance(s["gpu"], list) and s["gpu_utilization_percent"] is not None
