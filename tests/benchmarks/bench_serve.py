"""Serving benchmark (run by hand, not collected by pytest):

    python tests/benchmarks/bench_serve.py [--seconds 10] [--connections 1,8,32] [--workers 1] [--json PATH]

1. In-process single-row scoring: `Pipeline.predict_proba` on a 1-row DataFrame vs `serve.FastScorer` on one record
   (same registered model); p50/p99 and the ratio; probabilities checked identical on 2000 rows.
2. HTTP: `churnops serve` and `mlflow models serve --env-manager local` on the same registered model, and a bare endpoint
   (the framework's ceiling: a FastAPI app on the same uvicorn settings and worker count whose one route parses the same
   JSON body and returns a fixed answer the size of churnops'), all on 127.0.0.1, loaded by `wrk` (POST bodies from a Lua
   script) for the same time at the same concurrencies; req/s, p50, p99, the ratios to mlflow and to the bare endpoint.
Figures are printed as measured in this run; nothing is asserted."""
import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
import numpy as np
import pandas as pd
from churnops import tracking
from _results import add_json_option, write_results


def bench_frame(n=5000, seed=0):
    "A churn-shaped table: 9 numeric and 3 categorical features."
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({
        "tenure_days": rng.integers(0, 1500, n).astype("int64"), "age": rng.integers(18, 80, n).astype("int64"),
        "monthly_charges": rng.normal(50, 15, n), "tickets_30d": rng.poisson(1, n).astype("int64"),
        "sessions_7d": rng.poisson(5, n).astype("int64"), "sessions_30d": rng.poisson(20, n).astype("int64"),
        "minutes_30d": rng.gamma(2, 30, n), "spend_30d": rng.gamma(2, 40, n), "resolution_hours_mean": rng.gamma(2, 5, n),
        "plan": rng.choice(["basic", "plus", "pro", "family"], n), "contract_type": rng.choice(["monthly", "annual", "biennial"], n),
        "region": rng.choice(["north", "south", "east", "west", "central"], n)})
    logit = 0.8 * df.tickets_30d - df.tenure_days / 600 - 0.05 * df.sessions_7d + (df.contract_type == "monthly") - 0.5
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return df, y


def bench_pipeline(df, y):
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler
    cat = ["plan", "contract_type", "region"]
    num = [c for c in df.columns if c not in cat]
    pre = ColumnTransformer([("num", Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]), num),
                             ("cat", OneHotEncoder(handle_unknown="ignore"), cat)])
    return Pipeline([("preprocess", pre), ("model", HistGradientBoostingClassifier(max_iter=100, random_state=0))]).fit(df, y)


def register(home, pipe, df):
    import mlflow
    from mlflow.models import infer_signature
    from mlflow.tracking import MlflowClient
    from churnops import train
    tracking.setup_mlflow(home)
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(pipe, name="model", serialization_format="skops", skops_trusted_types=tracking.TRUSTED_TYPES,
                                        signature=infer_signature(df, pipe.predict_proba(df)[:, 1]), input_example=df.head(2),
                                        registered_model_name="churn", pip_requirements=["scikit-learn", "skops"])
        mlflow.log_metric("threshold_at_recall_80", 0.3)
    MlflowClient().set_registered_model_alias("churn", "champion", info.registered_model_version)
    return int(info.registered_model_version)


def pct(a, q): return float(np.percentile(np.asarray(a) * 1000, q))


def in_process(home, df):
    from churnops import train
    from churnops.serve import load_served_model
    pipe, _ = tracking.load_model(home, "churn", "champion")
    m = load_served_model(home, "churn", "champion")
    recs = [{k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()} for r in df.head(2000).to_dict("records")]
    fast = m.scorer.predict_proba(recs)
    ref = pipe.predict_proba(df.head(2000))[:, 1]
    identical = bool(np.array_equal(fast, ref))
    singles = np.array([m.scorer.predict_proba([r])[0] for r in recs[:300]])
    identical_single = bool(np.array_equal(singles, ref[:300]))
    t_pipe, t_fast, c_pipe, c_fast = [], [], [], []     # wall time, and this thread's CPU time (immune to preemption)
    rows = [df.iloc[[i]] for i in range(200)]
    for i in range(2000):
        r = rows[i % 200]; c = time.thread_time(); t = time.perf_counter(); pipe.predict_proba(r)
        t_pipe.append(time.perf_counter() - t); c_pipe.append(time.thread_time() - c)
    for i in range(5000):
        r = recs[i % 200]; c = time.thread_time(); t = time.perf_counter(); m.scorer.predict_proba([r])
        t_fast.append(time.perf_counter() - t); c_fast.append(time.thread_time() - c)
    # the whole request path inside the process: validation (pydantic request model) + fast scoring
    t_req = []
    for i in range(5000):
        r = recs[i % 200]; t = time.perf_counter(); m.scorer.predict_proba([m.request_model.model_validate(r).__dict__]); t_req.append(time.perf_counter() - t)
    print("\n== in-process single-row scoring (same registered model: 9 numeric + 3 categorical, HGB 100 trees) ==")
    print(f"fast path compiled: {m.scorer.fast}; identical to Pipeline.predict_proba on 2000 rows (batch): {identical}, "
          f"on 300 single rows: {identical_single}")
    print(f"{'':38s}{'p50 ms':>10s}{'p99 ms':>10s}{'cpu p50':>10s}{'cpu p99':>10s}")
    print(f"{'Pipeline.predict_proba(1-row DataFrame)':38s}{pct(t_pipe, 50):10.3f}{pct(t_pipe, 99):10.3f}{pct(c_pipe, 50):10.3f}{pct(c_pipe, 99):10.3f}")
    print(f"{'FastScorer.predict_proba([record])':38s}{pct(t_fast, 50):10.3f}{pct(t_fast, 99):10.3f}{pct(c_fast, 50):10.3f}{pct(c_fast, 99):10.3f}")
    print(f"{'validate + FastScorer':38s}{pct(t_req, 50):10.3f}{pct(t_req, 99):10.3f}")
    print(f"speed-up p50: {pct(t_pipe, 50) / pct(t_fast, 50):.1f}x   p99: {pct(t_pipe, 99) / pct(t_fast, 99):.1f}x   "
          f"cpu p50: {pct(c_pipe, 50) / pct(c_fast, 50):.1f}x   cpu p99: {pct(c_pipe, 99) / pct(c_fast, 99):.1f}x")
    figures = {"fast_path_compiled": bool(m.scorer.fast), "identical_batch": identical, "identical_single": identical_single,
               "rows": [{"path": name, "p50_ms": pct(t, 50), "p99_ms": pct(t, 99), "cpu_p50_ms": pct(c, 50) if c else None,
                         "cpu_p99_ms": pct(c, 99) if c else None}
                        for name, t, c in [("Pipeline.predict_proba(1-row DataFrame)", t_pipe, c_pipe),
                                           ("FastScorer.predict_proba([record])", t_fast, c_fast), ("validate + FastScorer", t_req, None)]]}
    return recs, figures


LUA_OURS = """
counter = 0
base = '%s'
request = function()
  counter = counter + 1
  local body = '{"customer_id": ' .. (counter %% 5000) .. ', ' .. base
  return wrk.format("POST", "/predict", {["Content-Type"] = "application/json"}, body)
end
"""
BARE_APP = """
import json, pathlib
from fastapi import FastAPI
from starlette.responses import Response
ANSWER = pathlib.Path(__file__).with_name("bare_answer.json").read_bytes()


async def predict(request):
    json.loads(await request.body())          # parse the body as the service does, answer a constant
    return Response(ANSWER, media_type="application/json")


app = FastAPI()
app.add_route("/predict", predict, methods=["POST"])
app.add_route("/ready", lambda request: Response(b"{}", media_type="application/json"), methods=["GET"])
"""
LUA_STATIC = """
wrk.method = "POST"
wrk.path = "%s"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '%s'
"""


def wrk(url, script, seconds, conns):
    out = subprocess.run(["wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--latency", "--timeout", "5s", "-s", script, url],
                         capture_output=True, text=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    def lat(q):
        m = re.search(rf"^\s+{q}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        v, u = float(m.group(1)), m.group(2)
        return v / 1000 if u == "us" else v * 1000 if u == "s" else v
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errs = re.search(r"Socket errors:.*", out)
    return {"rps": rps, "p50": lat(50), "p99": lat(99), "non2xx": int(non2xx.group(1)) if non2xx else 0,
            "socket_errors": errs.group(0) if errs else ""}


def wait_ready(url, path, proc, timeout=180):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None: raise RuntimeError(f"{url} exited with {proc.returncode}")
        try:
            if httpx.get(url + path, timeout=2).status_code == 200: return
        except httpx.TransportError: pass
        time.sleep(0.2)
    raise TimeoutError(url)


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); return s.getsockname()[1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--connections", default="1,8,32")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--in-process-only", action="store_true", help="only the single-row scoring comparison")
    add_json_option(ap, "serve")
    args = ap.parse_args()
    if not shutil.which("wrk"): sys.exit("wrk is not installed: apt-get install -y wrk")
    home = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    env = dict(os.environ, OMP_NUM_THREADS="1", MLFLOW_DISABLE_TELEMETRY="true")
    procs = []
    try:
        df, y = bench_frame()
        register(home, bench_pipeline(df, y), df)
        recs, figures = in_process(home, df)
        figures = {"in_process": figures, "workers": args.workers, "seconds": args.seconds}
        if args.in_process_only: write_results(args.json, figures); return
        rec = recs[0]
        body_ours = json.dumps(rec)
        body_mlflow = json.dumps({"dataframe_records": [rec]})
        (home / "ours.lua").write_text(LUA_OURS % body_ours[1:].replace("'", "\\'"))
        (home / "mlflow.lua").write_text(LUA_STATIC % ("/invocations", body_mlflow))
        p1, p2 = free_port(), free_port()
        ours = subprocess.Popen([sys.executable, "-c", "import sys; from churnops.cli import main; sys.exit(main())", "serve",
                                 "--home", str(home), "--port", str(p1), "--workers", str(args.workers)], env=env,
                                stdout=open(home / "ours.log", "w"), stderr=subprocess.STDOUT)
        procs.append(ours)
        menv = dict(env, MLFLOW_TRACKING_URI=f"sqlite:///{home}/mlflow.db")
        ml = subprocess.Popen([sys.executable, "-m", "mlflow", "models", "serve", "-m", "models:/churn/1", "--env-manager", "local",
                               "--host", "127.0.0.1", "-p", str(p2), "-w", str(args.workers)], env=menv,
                              stdout=open(home / "mlflow.log", "w"), stderr=subprocess.STDOUT, start_new_session=True)
        procs.append(ml)
        u1, u2 = f"http://127.0.0.1:{p1}", f"http://127.0.0.1:{p2}"
        wait_ready(u1, "/ready", ours); wait_ready(u2, "/ping", ml)
        (home / "bare_answer.json").write_bytes(httpx.post(u1 + "/predict", content=body_ours,   # churnops' own answer's bytes
                                                           headers={"content-type": "application/json"}).content)
        (home / "bare_app.py").write_text(BARE_APP)
        p3 = free_port()
        bare = subprocess.Popen([sys.executable, "-c", "import sys, uvicorn; uvicorn.run('bare_app:app', app_dir=sys.argv[1], "
                                 "host='127.0.0.1', port=int(sys.argv[2]), workers=int(sys.argv[3]), log_level='warning', access_log=False)",
                                 str(home), str(p3), str(args.workers)], env=env, stdout=open(home / "bare.log", "w"),
                                stderr=subprocess.STDOUT)
        procs.insert(0, bare)
        u3 = f"http://127.0.0.1:{p3}"
        wait_ready(u3, "/ready", bare)
        ok, deadline = 0, time.monotonic() + 120          # every worker process ready (each answers /ready for itself)
        while ok < 20 * args.workers and time.monotonic() < deadline:
            code = httpx.post(u1 + "/predict", content=body_ours, headers={"content-type": "application/json"}).status_code
            ok = ok + 1 if code == 200 else 0
            if code != 200: time.sleep(0.2)
        a = httpx.post(u1 + "/predict", content=body_ours, headers={"content-type": "application/json"}).json()
        b = httpx.post(u2 + "/invocations", content=body_mlflow, headers={"content-type": "application/json"}).json()
        print(f"\nsame answer: churnops {a['churn_probability']:.12f}   mlflow {b['predictions'][0]}")
        for u, s in ((u1, home / "ours.lua"), (u2, home / "mlflow.lua"), (u3, home / "ours.lua")): wrk(u, s, 2, 4)   # warm all
        print(f"\n== HTTP, wrk -t1 --latency, {args.seconds}s per run, {args.workers} worker process(es) each, {os.cpu_count()} cores ==")
        print(f"{'conns':>5s} | {'churnops req/s':>14s} {'p50 ms':>8s} {'p99 ms':>8s} {'non2xx':>6s} | {'mlflow req/s':>12s} {'p50 ms':>8s} {'p99 ms':>8s} | {'ratio':>6s}"
              f" | {'bare req/s':>10s} {'p50 ms':>8s} {'p99 ms':>8s} | {'of bare':>7s}")
        http = []
        for c in [int(x) for x in args.connections.split(",")]:
            r1 = wrk(u1, home / "ours.lua", args.seconds, c)
            r2 = wrk(u2, home / "mlflow.lua", args.seconds, c)
            r3 = wrk(u3, home / "ours.lua", args.seconds, c)
            print(f"{c:5d} | {r1['rps']:14.0f} {r1['p50']:8.2f} {r1['p99']:8.2f} {r1['non2xx']:6d} | {r2['rps']:12.0f} {r2['p50']:8.2f} {r2['p99']:8.2f} | {r1['rps'] / r2['rps']:5.1f}x"
                  f" | {r3['rps']:10.0f} {r3['p50']:8.2f} {r3['p99']:8.2f} | {r1['rps'] / r3['rps']:6.0%}"
                  + (f"  ({r1['socket_errors']})" if r1["socket_errors"] else ""))
            http.append({"connections": c, "churnops": r1, "mlflow": r2, "bare": r3, "over_mlflow": r1["rps"] / r2["rps"],
                         "share_of_bare": r1["rps"] / r3["rps"]})
        figures["http"] = http
        text = httpx.get(u1 + "/metrics").text
        batches = re.search(r"churnops_microbatch_batches_total ([\d.]+)", text); rows = re.search(r"churnops_microbatch_rows_total ([\d.]+)", text)
        if batches and rows and float(batches.group(1)):
            print(f"\nmicro-batching: {float(rows.group(1)):.0f} records scored in {float(batches.group(1)):.0f} model calls "
                  f"({float(rows.group(1)) / float(batches.group(1)):.2f} records per call)")
            figures["microbatch"] = {"records": float(rows.group(1)), "calls": float(batches.group(1))}
        ours.send_signal(signal.SIGTERM); ours.wait(30)
        from churnops.predlog import read_prediction_log
        logged = len(read_prediction_log(home))
        print(f"prediction log after SIGTERM: {logged} rows")
        figures["prediction_log_rows_after_sigterm"] = logged
        write_results(args.json, figures)
    finally:
        for p in procs:
            if p.poll() is None:
                try: os.killpg(p.pid, signal.SIGTERM) if p is procs[-1] else p.terminate()
                except ProcessLookupError: pass
                try: p.wait(15)
                except subprocess.TimeoutExpired: p.kill()
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
