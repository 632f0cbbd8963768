"""System metrics without flags: the serving pid (and its workers) from serve/server.json, CPU/memory of the process tree,
GPU through `nvidia-smi` (a stand-in script on PATH printing nvidia-smi's CSV, since this machine has no GPU), and the
problem definition's rules (CPU 80 %, memory 80 %, GPU 90 %)."""
import json
import os
import stat
import subprocess
import sys
import time

import pytest

from churnops import monitor
from churnops.config import Config, config_from_dict
from churnops.files import utc_now
from churnops.serve import server_info_path


@pytest.fixture
def fake_gpu(tmp_path, monkeypatch):
    "A stand-in `nvidia-smi` first on PATH: checks it was asked the documented query and prints two GPUs in its CSV format."
    bindir = tmp_path / "bin"; bindir.mkdir()
    exe = bindir / "nvidia-smi"
    exe.write_text("#!/bin/sh\n"
                   'test "$1" = "--query-gpu=utilization.gpu,memory.used,memory.total" || exit 9\n'
                   'test "$2" = "--format=csv,noheader,nounits" || exit 9\n'
                   "echo '87, 10240, 16384'\necho '93, 15000, 16384'\n")
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    return exe


@pytest.fixture
def service(tmp_path):
    "A parent process with two busy workers (children), recorded in serve/server.json as `churnops serve` records itself."
    code = ("import subprocess, sys, time\n"
            "kids = [subprocess.Popen([sys.executable, '-c', 'x = bytearray(30 * 2**20)\\nwhile True: pass']) for _ in range(2)]\n"
            "time.sleep(600)")
    proc = subprocess.Popen([sys.executable, "-c", code])
    home = tmp_path / "home"
    server_info_path(home).parent.mkdir(parents=True)
    server_info_path(home).write_text(json.dumps({"host": "127.0.0.1", "port": 1, "pid": proc.pid, "workers": 2,
                                                  "token": "t", "started": utc_now().isoformat()}))
    import psutil
    deadline = time.monotonic() + 30
    while len(psutil.Process(proc.pid).children()) < 2 and time.monotonic() < deadline: time.sleep(0.1)
    yield home, proc
    for k in psutil.Process(proc.pid).children(recursive=True): k.kill()
    proc.kill(); proc.wait()


def test_gpu_through_a_stand_in_nvidia_smi_fires_the_gpu_rule(fake_gpu):
    gpus = monitor.gpu_metrics()
    assert [g["utilization_percent"] for g in gpus] == [87.0, 93.0]
    assert gpus[0]["memory_percent"] == pytest.approx(100 * 10240 / 16384)
    s = monitor.system_metrics()
    assert s["metrics"]["gpu_utilization_percent"] == 93.0 and s["metrics"]["gpu_memory_percent"] == pytest.approx(100 * 15000 / 16384)
    alerts, skipped = monitor.evaluate_rules(s["metrics"], monitor.system_rules(Config()))
    assert [a["metric"] for a in alerts] == ["gpu_utilization_percent"]
    assert alerts[0]["message"] == "gpu_utilization_percent = 93% is above the threshold 90%"
    assert skipped == ["cpu_percent", "memory_percent"]                 # no service given or recorded: no data, not 0
    # the problem definition's GPU limit raised to 95 %: 93 % no longer alerts
    assert monitor.evaluate_rules(s["metrics"], monitor.system_rules(config_from_dict({"system_metrics": {"max_gpu": "95%"}})))[0] == []


def test_no_gpu_is_absent_not_zero(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))                          # no nvidia-smi anywhere
    s = monitor.system_metrics()
    assert s["gpu"] == "absent" and "gpu_utilization_percent" not in s["metrics"]


def test_service_and_workers_found_from_server_json(service):
    home, proc = service
    s = monitor.system_metrics(home=home, interval=0.5)
    p = s["process"]
    assert s["pid_source"] == str(server_info_path(home)) and p["pid"] == proc.pid
    assert len(p["worker_pids"]) == 2 and p["processes"] == 3
    assert p["rss_mb"] > 60                                            # two workers of 30 MB each, summed
    assert p["cpu_core_percent"] > 5                                   # busy workers (the 2 cores are shared: no more is promised)
    assert p["cpu_percent"] == pytest.approx(p["cpu_core_percent"] / os.cpu_count())
    assert 0 < p["memory_percent"] < 100
    # a machine-share limit below what the workers use: the CPU rule fires
    cfg = config_from_dict({"system_metrics": {"max_cpu": "1%"}})
    alerts, _ = monitor.evaluate_rules(s["metrics"], monitor.system_rules(cfg))
    assert [a["metric"] for a in alerts] == ["cpu_percent"]


def test_monitor_command_reads_the_service_without_flags(service):
    "`churnops monitor` over a window, no --serving-pid: the report's system section has the recorded service's tree."
    home, proc = service
    from test_monitor_job import features, register_model, write_world
    import numpy as np, pandas as pd
    rng = np.random.default_rng(1)
    register_model(home, features(rng, 2000))
    end = pd.Timestamp.now(tz="UTC") + pd.Timedelta(minutes=5)
    write_world(home, rng, 400, end)
    out = subprocess.run([sys.executable, "-m", "churnops.cli", "monitor", "--home", str(home), "--window-start",
                          (end - pd.Timedelta(days=3)).isoformat(), "--window-end", end.isoformat()],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    res = json.loads(sorted((home / "reports").glob("monitor-*.json"))[-1].read_text())
    assert res["system"]["process"]["pid"] == proc.pid and len(res["system"]["process"]["worker_pids"]) == 2
    assert {"cpu_percent", "memory_percent", "rss_mb"} <= set(res["metrics"])
    assert "cpu_percent" not in res["alerts_skipped"]
