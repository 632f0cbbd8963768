"""Shared fixtures: real servers on 127.0.0.1 (PostgreSQL, an MLflow tracking server), ports, and a clean environment."""
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.pop("MLFLOW_TRACKING_URI", None)
os.environ.pop("CHURNOPS_HOME", None)

PG_BIN_CANDIDATES = [Path("/usr/lib/postgresql") / v / "bin" for v in ("17", "16", "15", "14")]


def free_port_number() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def free_port() -> int:
    return free_port_number()


def wait_for_port(port: int, timeout: float = 60.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server process exited with {proc.returncode} before port {port} opened")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


def _pg_bin() -> Path | None:
    for b in PG_BIN_CANDIDATES:
        if (b / "initdb").exists() and (b / "pg_ctl").exists():
            return b
    return None


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory):
    """A real PostgreSQL server on 127.0.0.1 for the session; yields a function making a fresh database URL."""
    bin_dir = _pg_bin()
    if bin_dir is None:
        pytest.fail("PostgreSQL server binaries not found: .ci/run installs Debian's postgresql package")
    import tempfile
    base = Path(tempfile.mkdtemp(prefix="churnops-pg-"))  # outside pytest's 0700 root-only temp tree
    data = base / "data"
    port = free_port_number()
    as_root = os.geteuid() == 0
    def run(cmd):
        if as_root:
            shutil.chown(base, "postgres")
            return subprocess.run(["su", "postgres", "-c", cmd], check=True, capture_output=True, text=True)
        return subprocess.run(cmd, shell=True, check=True, capture_output=True, text=True)
    if as_root:
        os.chmod(base, 0o777)
    run(f"{bin_dir}/initdb -D {data} -A trust -U postgres")
    run(f"{bin_dir}/pg_ctl -D {data} -o '-p {port} -k {base} -c listen_addresses=127.0.0.1' -l {base}/log -w start")
    counter = iter(range(10_000))

    def new_database(prefix: str = "db") -> str:
        import sqlalchemy as sa
        name = f"{prefix}_{next(counter)}"
        eng = sa.create_engine(f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres", isolation_level="AUTOCOMMIT")
        with eng.connect() as c:
            c.exec_driver_sql(f'CREATE DATABASE "{name}"')
        eng.dispose()
        return f"postgresql+psycopg://postgres@127.0.0.1:{port}/{name}"

    new_database.port = port
    try:
        yield new_database
    finally:
        subprocess.run(["su", "postgres", "-c", f"{bin_dir}/pg_ctl -D {data} -m fast -w stop"] if as_root
                       else f"{bin_dir}/pg_ctl -D {data} -m fast -w stop", shell=not as_root, capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server) -> str:
    "A fresh, empty PostgreSQL database on the session's server."
    return postgres_server()


def start_mlflow_server(backend_uri: str, artifact_root: Path, port: int, log: Path) -> subprocess.Popen:
    env = dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true")
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend_uri,
           "--default-artifact-root", str(artifact_root), "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    proc = subprocess.Popen(cmd, stdout=open(log, "w"), stderr=subprocess.STDOUT, env=env)
    try:
        wait_for_port(port, timeout=120, proc=proc)
    except Exception:
        proc.kill()
        raise RuntimeError(f"mlflow server did not start: {log.read_text()[-3000:]}")
    return proc


def _serve_mlflow(backend_uri: str, d: Path):
    "Run an `mlflow server` on a free port for as long as the generator is open; yields its URL."
    port = free_port_number()
    proc = start_mlflow_server(backend_uri, d / "artifacts", port, d / "server.log")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """A real `mlflow server` on 127.0.0.1 backed by SQLite; yields its URL."""
    d = tmp_path_factory.mktemp("mlflow_server")
    yield from _serve_mlflow(f"sqlite:///{d}/mlflow.db", d)


@pytest.fixture(scope="session")
def mlflow_server_postgres(tmp_path_factory, postgres_server):
    """A real `mlflow server` backed by the session's PostgreSQL; yields its URL."""
    d = tmp_path_factory.mktemp("mlflow_pg")
    yield from _serve_mlflow(postgres_server("mlflow").replace("postgresql+psycopg://", "postgresql://"), d)


@pytest.fixture
def tracking_env(monkeypatch):
    "Set MLFLOW_TRACKING_URI for a test; returns a setter."
    def set_uri(uri: str):
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return set_uri
