"""Shared fixtures: real servers on 127.0.0.1 (PostgreSQL, an MLflow tracking server), ports, and a clean environment.

Every server a test starts listens on a free port (`free_port_number`) and keeps its files in a temp dir, so test files can
run in parallel processes (pytest-xdist) without meeting each other; `server_process` starts and stops them all."""
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
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
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


def stop_process_group(proc: subprocess.Popen, sig: int = signal.SIGTERM, grace: float = 10.0) -> None:
    "Send `sig` to `proc` and every process of its session; SIGKILL whatever is left after `grace` seconds."
    if proc.poll() is None:
        try: os.killpg(proc.pid, sig)
        except ProcessLookupError: pass
    try: proc.wait(grace)
    except subprocess.TimeoutExpired: pass
    try: os.killpg(proc.pid, signal.SIGKILL)        # children that outlived the leader, or a leader that ignored `sig`
    except (ProcessLookupError, PermissionError): pass
    proc.wait()


@contextmanager
def server_process(cmd: list[str], port: int, log: Path, env: dict | None = None, timeout: float = 60.0,
                   stop_signal: int = signal.SIGTERM, user: str | None = None):
    """Run `cmd` (output to `log`, as `user` if given) in a session of its own until the block ends; yields the process once
    127.0.0.1:`port` answers. At the end it and its children are stopped with `stop_signal`; if it does not come up, the
    error shows `log`."""
    log = Path(log)
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True, user=user)
    try:
        try:
            wait_for_port(port, timeout=timeout, proc=proc)
        except (RuntimeError, TimeoutError) as e:
            raise RuntimeError(f"{Path(cmd[0]).name} {' '.join(cmd[1:3])} did not start: {e}\n{log.read_text()[-3000:]}") from None
        yield proc
    finally:
        stop_process_group(proc, stop_signal)


def _pg_bin() -> Path | None:
    for b in PG_BIN_CANDIDATES:
        if (b / "initdb").exists() and (b / "pg_ctl").exists():
            return b
    return None


def _wait_for_postgres(port: int, timeout: float = 60.0) -> None:
    "Wait until the server accepts a query (its port opens while it is still starting up)."
    import psycopg
    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres", connect_timeout=5) as c:
                c.execute("SELECT 1")
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline: raise
            time.sleep(0.05)


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
    user = "postgres" if os.geteuid() == 0 else None       # PostgreSQL refuses to run as root
    if user:
        os.chmod(base, 0o777)
        shutil.chown(base, user)
    # a throwaway cluster: nothing is synced to disk (initdb --no-sync, fsync=off), which makes start, CREATE DATABASE and stop fast
    subprocess.run([str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"], user=user, cwd=base,
                   check=True, capture_output=True, text=True)
    server = [str(bin_dir / "postgres"), "-D", str(data), "-p", str(port), "-k", str(base), "-c", "listen_addresses=127.0.0.1",
              "-c", "fsync=off"]
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
        with server_process(server, port, base / "postgres.log", stop_signal=signal.SIGINT, user=user):   # SIGINT: a fast shutdown
            _wait_for_postgres(port)
            yield new_database
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server) -> str:
    "A fresh, empty PostgreSQL database on the session's server."
    return postgres_server()


@contextmanager
def serve_mlflow(backend_uri: str, d: Path, *args: str):
    "An `mlflow server` (one worker) on a free 127.0.0.1 port backed by `backend_uri`, plus `args`, its log in `d`; yields its URL."
    port = free_port_number()
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend_uri,
           "--host", "127.0.0.1", "--port", str(port), "--workers", "1", *args]
    with server_process(cmd, port, d / "server.log", env=dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true"), timeout=120):
        yield f"http://127.0.0.1:{port}"


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """A real `mlflow server` on 127.0.0.1 backed by SQLite; yields its URL."""
    d = tmp_path_factory.mktemp("mlflow_server")
    with serve_mlflow(f"sqlite:///{d}/mlflow.db", d, "--default-artifact-root", str(d / "artifacts")) as url:
        yield url


@pytest.fixture(scope="session")
def mlflow_server_postgres(tmp_path_factory, postgres_server):
    """A real `mlflow server` backed by the session's PostgreSQL; yields its URL."""
    d = tmp_path_factory.mktemp("mlflow_pg")
    backend = postgres_server("mlflow").replace("postgresql+psycopg://", "postgresql://")
    with serve_mlflow(backend, d, "--default-artifact-root", str(d / "artifacts")) as url:
        yield url


@pytest.fixture
def tracking_env(monkeypatch):
    "Set MLFLOW_TRACKING_URI for a test; returns a setter."
    def set_uri(uri: str):
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return set_uri


# Files that take minutes (a real loop, servers under load, training): collected first, so that with `pytest -n 2
# --dist loadfile` they start at once and the short files fill in around them, instead of one long file running alone
# at the end. Order within a file is kept; a file not listed keeps its place after these.
LONG_FILES = ["test_demo.py", "test_s3.py", "test_serve_deploy.py", "test_own_data_loop.py", "test_registry_server.py",
              "test_train_scale.py", "test_store_redis.py", "test_serve_table.py", "test_ab_online.py", "test_predlog.py"]


def pytest_collection_modifyitems(session, config, items):
    rank = {name: i for i, name in enumerate(LONG_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(LONG_FILES)))
