"""A real Dask cluster on 127.0.0.1 (`dask scheduler` + two `dask worker` processes): a data build and a training set
built there are identical to the in-process run, and the work ran on the cluster's workers."""
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from churnops import compute, data as D, features as F
from churnops.config import Paths
from churnops.simulate import simulate_world

import conftest

ROOT = Path(__file__).resolve().parents[1]


def _dask(*args: str) -> list[str]:
    "The `dask scheduler` / `dask worker` command line."
    return [sys.executable, "-m", "distributed.cli.dask_" + args[0], *args[1:]]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    "A scheduler and two single-threaded workers, stopped at teardown."
    port, logs = conftest.free_port_number(), tmp_path_factory.mktemp("dask_logs")
    address = f"tcp://127.0.0.1:{port}"
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}   # workers import this churnops
    env.pop(compute.SCHEDULER_ENV, None)
    with conftest.server_process(_dask("scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"), port,
                                 logs / "scheduler.log", env=env):
        workers = []
        try:
            for i in range(2):
                with open(logs / f"worker{i}.log", "w") as log:
                    workers.append(subprocess.Popen(_dask("worker", address, "--nthreads", "1", "--no-dashboard"), env=env,
                                                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
            from distributed import Client
            with Client(address, timeout=30) as c: c.wait_for_workers(2, timeout=60)
            yield address
        finally:
            compute.close_clients()
            for p in workers: conftest.stop_process_group(p)


def _home(path: Path, sources: Path) -> Path:
    "A home with a copy of the simulated sources, its declaration, and 4 buckets for 100 customers."
    shutil.copytree(sources / "sources", Paths(path).sources)
    shutil.copy(sources / "declaration.yaml", path / "declaration.yaml")
    (path / "churnops.yaml").write_text("compute: {bucket_entities: 25}\n")
    return path


def _build_and_features(home):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        b = D.build(home)
        sb = D.open_build(home)
        dates = F.default_as_of_dates(sb, 30)
        return b, F.frame_hash(F.build_training_set(sb, dates, 30)), len(dates)


def test_cluster_gives_the_in_process_results(cluster, tmp_path, monkeypatch):
    world = tmp_path / "world"
    simulate_world(world, customers=100, days=240, seed=5)
    monkeypatch.delenv(compute.SCHEDULER_ENV, raising=False)
    local, local_hash, n_dates = _build_and_features(_home(tmp_path / "local", world))
    assert n_dates >= 2 and D.open_build(tmp_path / "local").buckets == 4

    monkeypatch.setenv(compute.SCHEDULER_ENV, cluster)
    client = compute.get_client(tmp_path / "remote")
    assert client.scheduler.address == cluster
    before = compute.task_count(client)
    done_before = client.run(lambda dask_worker: dask_worker.state.executed_count)
    remote, remote_hash, _ = _build_and_features(_home(tmp_path / "remote", world))

    assert remote.build_id == local.build_id and remote.hashes == local.hashes
    assert remote_hash == local_hash
    assert compute.task_count(client) > before                     # the scheduler ran the work ...
    done = client.run(lambda dask_worker: dask_worker.state.executed_count)
    ran = {w: done[w] - done_before.get(w, 0) for w in done}
    assert len(ran) == 2 and sum(ran.values()) >= 7 * 4 + 4 and all(n > 0 for n in ran.values()), ran   # ... on both workers


def test_unreachable_scheduler_is_named(tmp_path, monkeypatch):
    address = f"tcp://127.0.0.1:{conftest.free_port_number()}"
    monkeypatch.setenv(compute.SCHEDULER_ENV, address)
    with pytest.raises(compute.ComputeError, match=f"Dask scheduler {address} \\(from \\$CHURNOPS_DASK_SCHEDULER\\) is unreachable"):
        compute.get_client(tmp_path, timeout=2)
