"""Shared pieces of the serving tests: a real MLflow registry with tiny churn models, a real `churnops serve` process,
and a bounded load loop. (No tests here; the name keeps it with the other serve test files.)"""
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
from churnops import tracking

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

NUMERIC = ["tenure_days", "monthly_charges", "tickets_30d"]
CATEGORICAL = ["plan", "region"]


def churn_frame(n=300, seed=0):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"tenure_days": rng.integers(0, 1000, n).astype("int64"), "monthly_charges": rng.normal(50, 10, n),
                       "tickets_30d": rng.poisson(1, n).astype("int64"), "plan": rng.choice(["basic", "plus", "pro"], n),
                       "region": rng.choice(["north", "south"], n)})
    y = (rng.random(n) < 1 / (1 + np.exp(-(df.tickets_30d - 1 - df.tenure_days / 500)))).astype(int)
    return df, y


def churn_pipeline(df, y, max_iter=20):
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler
    pre = ColumnTransformer([("num", Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]), NUMERIC),
                             ("cat", OneHotEncoder(handle_unknown="ignore"), CATEGORICAL)])
    return Pipeline([("preprocess", pre), ("model", HistGradientBoostingClassifier(max_iter=max_iter, random_state=0))]).fit(df, y)


def register_version(home, pipe, df, threshold=0.3, semver=None, alias=None):
    "Log `pipe` like `train` does (skops, trusted types, signature) and register it as `churn`; returns the version."
    import mlflow
    from mlflow.models import infer_signature
    from mlflow.tracking import MlflowClient
    tracking.setup_mlflow(home)
    with mlflow.start_run() as run:
        info = mlflow.sklearn.log_model(pipe, name="model", serialization_format="skops", skops_trusted_types=tracking.TRUSTED_TYPES,
                                        signature=infer_signature(df, pipe.predict_proba(df)[:, 1]), input_example=df.head(2),
                                        registered_model_name="churn", pip_requirements=["scikit-learn", "skops"])
        mlflow.log_metric("threshold_at_recall_80", threshold)
        mlflow.log_metric("precision_at_recall_80", 0.9)     # the registry's baseline gate judges it
    client = MlflowClient()
    v = int(info.registered_model_version)
    if semver: client.set_model_version_tag("churn", str(v), "churnops.semver", semver)
    if alias: client.set_registered_model_alias("churn", alias, str(v))
    return v


def build_template(home: Path):
    "v1 champion, v2 challenger, v3 registered but with a corrupt model file (fails to load)."
    df, y = churn_frame(seed=0)
    register_version(home, churn_pipeline(df, y), df, threshold=0.3, semver="1.0.0", alias="champion")
    df2, y2 = churn_frame(seed=1)
    register_version(home, churn_pipeline(df2, y2, max_iter=10), df2, threshold=0.4, semver="1.1.0", alias="challenger")
    v3 = register_version(home, churn_pipeline(df, y, max_iter=5), df, threshold=0.5, semver="2.0.0")
    # corrupt v3's model file: the newest model.skops under the artifact store
    newest = max(Path(home, "mlartifacts").rglob("model.skops"), key=lambda p: p.stat().st_mtime)
    newest.write_bytes(b"not a skops file")
    online_store(home, df)
    return {"champion": 1, "challenger": 2, "broken": v3}


ONLINE_CUSTOMERS = range(1, 51)


def online_store(home, df):
    "Customers 1..50 materialised into the home's online store (a real `store` feature view over a parquet source)."
    from datetime import timedelta
    from churnops import store
    snap = df.head(len(ONLINE_CUSTOMERS)).copy()
    snap.insert(0, "customer_id", list(ONLINE_CUSTOMERS))
    snap.insert(1, "event_timestamp", pd.Timestamp("2026-11-01", tz="UTC"))
    snap.insert(2, "created", pd.Timestamp("2026-11-01", tz="UTC"))
    src = Path(home) / "online_source" / "part-0.parquet"
    src.parent.mkdir(parents=True, exist_ok=True)
    snap.to_parquet(src)
    feats = [store.Feature(name=c, dtype="int64" if c in ("tenure_days", "tickets_30d") else "float64") for c in NUMERIC] + \
            [store.Feature(name=c, dtype="string") for c in CATEGORICAL]
    fs = store.FeatureStore(home)
    fs.apply([store.FeatureView(name="serve_test", features=feats, source=str(src.parent), ttl=timedelta(days=3650))])
    fs.materialize()
    fs.online.close()


_TEMPLATE = {}

def template_home():
    "One registry with the three versions per test process (built once, shared by every serve test module)."
    if "home" not in _TEMPLATE:
        import atexit, tempfile
        home = Path(tempfile.mkdtemp(prefix="churnops-serve-template-"))
        atexit.register(shutil.rmtree, home, True)
        _TEMPLATE["home"], _TEMPLATE["versions"] = home, build_template(home)
    return _TEMPLATE["home"], _TEMPLATE["versions"]


def copy_home(template: Path, dest: Path) -> Path:
    "A fresh home sharing the template's registry (the SQLite DB is copied; artifacts are read from the template)."
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy2(template / "mlflow.db", dest / "mlflow.db")
    if (template / "online.db").exists(): shutil.copy2(template / "online.db", dest / "online.db")
    if (template / "features").exists(): shutil.copytree(template / "features", dest / "features")
    return dest


def record(i=0, customer_id=None, **over):
    df, _ = churn_frame(n=50, seed=5)
    r = df.iloc[i % 50].to_dict()
    r = {k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()}
    if customer_id is not None: r["customer_id"] = customer_id
    r.update(over)
    return r


class Server:
    def __init__(self, proc, port, home, log):
        self.proc, self.port, self.home, self.log = proc, port, home, log
        self.url = f"http://127.0.0.1:{port}"

    def admin_headers(self):
        info = json.loads((Path(self.home) / "serve" / "server.json").read_text())
        return {"Authorization": f"Bearer {info['token']}"}

    def admin(self, method, path, payload=None):
        return httpx.request(method, self.url + path, json=payload, timeout=60, headers=self.admin_headers())


@contextmanager
def running_server(home, port, extra_env=None, timeout=180, workers=1, args=()):
    "A real `churnops serve` process (`workers` worker processes, more `args`) on 127.0.0.1; waits until /ready; stops it with SIGTERM."
    log = Path(home) / "server.log"
    env = dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true", OMP_NUM_THREADS="1", **(extra_env or {}))
    env.pop("MLFLOW_TRACKING_URI", None)
    proc = subprocess.Popen([sys.executable, "-c", "import sys; from churnops.cli import main; sys.exit(main())",
                             "serve", "--home", str(home), "--port", str(port), "--workers", str(workers), *args], stdout=open(log, "w"), stderr=subprocess.STDOUT, env=env)
    srv = Server(proc, port, home, log)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None: raise RuntimeError(f"server exited {proc.returncode}: {log.read_text()[-3000:]}")
            try:
                if httpx.get(srv.url + "/ready", timeout=2).status_code == 200: break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline: raise TimeoutError(f"server not ready: {log.read_text()[-3000:]}")
            time.sleep(0.05)
        yield srv
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try: proc.wait(20)
            except subprocess.TimeoutExpired: proc.kill(); proc.wait()


class LoadLoop:
    "`threads` clients posting records as fast as they can until stopped; records every status and exception."
    def __init__(self, url, threads=4, customers=200, max_seconds=120, max_requests=None):
        self.url, self.threads, self.customers, self.max_seconds = url, threads, customers, max_seconds
        self.max_requests, self._sent = max_requests, 0
        self.results = []          # (status, version, variant, request_id)
        self.failures = []         # descriptions of non-200 answers and transport errors
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._ts = []

    def _run(self, k):
        deadline = time.monotonic() + self.max_seconds
        with httpx.Client(timeout=10) as c:
            i = k
            while not self._stop.is_set() and time.monotonic() < deadline:
                if self.max_requests is not None:
                    with self._lock:
                        if self._sent >= self.max_requests: break
                        self._sent += 1
                try:
                    r = c.post(self.url + "/predict", json=record(i, customer_id=i % self.customers))
                    if r.status_code == 200:
                        j = r.json()
                        with self._lock: self.results.append((200, j["version"], j["variant"], j["request_id"]))
                    else:
                        with self._lock: self.failures.append(f"{r.status_code}: {r.text[:200]}")
                except httpx.HTTPError as e:
                    if self._stop.is_set(): break
                    with self._lock: self.failures.append(f"{type(e).__name__}: {e}")
                i += self.threads

    def __enter__(self):
        self._ts = [threading.Thread(target=self._run, args=(k,), daemon=True) for k in range(self.threads)]
        for t in self._ts: t.start()
        return self

    def wait_for(self, n, timeout=20):
        deadline = time.monotonic() + timeout
        start = len(self.results)
        while len(self.results) - start < n and time.monotonic() < deadline: time.sleep(0.01)

    def join(self, timeout=120):
        "Wait for the threads to finish by themselves (`max_requests` sent or `max_seconds` up)."
        for t in self._ts: t.join(timeout)

    def stop(self):
        self._stop.set()
        for t in self._ts: t.join(15)

    def __exit__(self, *a):
        self.stop()
