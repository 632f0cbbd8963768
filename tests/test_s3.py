"""Object storage for real: the lake, MLflow's artifact root and the DVC remote on `s3://`, against moto's standalone
S3-compatible server started on 127.0.0.1. Every client is pointed at it by its documented configuration alone
(AWS_* environment for s3fs/botocore, MLFLOW_S3_ENDPOINT_URL for MLflow, `dvc remote modify NAME endpointurl` for DVC)."""
import hashlib
import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import boto3
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from churnops import data, pipeline, tracking, train
from churnops.cli import main
from churnops.config import Paths
from churnops.simulate import simulate_world

from conftest import free_port_number, serve_mlflow, server_process

pytestmark = pytest.mark.server


KEY, SECRET, REGION = "churnops-test-key", "churnops-test-secret", "us-east-1"


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory):
    "moto's standalone S3 server on a free 127.0.0.1 port for this module; yields its endpoint URL."
    port = free_port_number()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    with server_process([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], port, log, env=env):
        yield f"http://127.0.0.1:{port}"


@pytest.fixture
def s3(s3_server, monkeypatch, tmp_path):
    "The endpoint in this test's environment only (undone afterwards), and a fresh bucket; yields (endpoint, bucket, client)."
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("MLFLOW_S3_ENDPOINT_URL", s3_server)
    # no ~/.aws files or session tokens from the machine may decide where requests go
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    for k in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"): monkeypatch.delenv(k, raising=False)
    bucket = f"churnops-{uuid.uuid4().hex[:10]}"
    client = boto3.client("s3", endpoint_url=s3_server, aws_access_key_id=KEY, aws_secret_access_key=SECRET,
                          region_name=REGION)
    client.create_bucket(Bucket=bucket)
    import s3fs
    s3fs.S3FileSystem.clear_instance_cache()          # fsspec caches filesystems; none may outlive this test's endpoint
    yield s3_server, bucket, client
    s3fs.S3FileSystem.clear_instance_cache()


def keys(client, bucket: str, prefix: str = "") -> list[str]:
    "Every object key under `prefix` in `bucket`, straight from the server."
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(o["Key"] for p in pages for o in p.get("Contents", []))


def upload_folder(client, folder: Path, bucket: str, prefix: str) -> int:
    "Put every file under `folder` at `prefix/<relative path>` with boto3 (not through the code under test)."
    files = [f for f in sorted(folder.rglob("*")) if f.is_file()]
    for f in files: client.upload_file(str(f), bucket, f"{prefix}/{f.relative_to(folder).as_posix()}")
    return len(files)


def tree_digest(root: Path) -> dict[str, str]:
    "relative path → sha256 of every file under `root`."
    return {f.relative_to(root).as_posix(): hashlib.sha256(f.read_bytes()).hexdigest()
            for f in sorted(root.rglob("*")) if f.is_file()}


def manifest(home, table: str, version: str) -> dict:
    return json.loads((Paths(home).data / table / version / "manifest.json").read_text())


# 1. the lake ---------------------------------------------------------------------------------------------------------

def test_lake_on_s3_builds_the_same_sessions_version(s3, tmp_path):
    endpoint, bucket, client = s3
    local = tmp_path / "local"
    simulate_world(local, customers=80, days=14, seed=5)
    remote = tmp_path / "remote"
    shutil.copytree(local, remote)
    n = upload_folder(client, Paths(local).lake, bucket, "lake")
    assert n == 14 and len(keys(client, bucket, "lake/events/")) == 14
    shutil.rmtree(Paths(remote).lake)                 # the S3 build cannot fall back to a local copy
    b_local = data.build(local)
    b_s3 = data.build(remote, lake_url=f"s3://{bucket}/lake")
    assert b_s3.tables["sessions"] == b_local.tables["sessions"]
    assert b_s3.build_id == b_local.build_id
    assert manifest(remote, "sessions", b_s3.tables["sessions"])["sources"]["lake"] == f"s3://{bucket}/lake"
    pd.testing.assert_frame_equal(data.load_table(remote, "sessions"), data.load_table(local, "sessions"))
    # a partition gone from the bucket is named, as for a local lake
    client.delete_object(Bucket=bucket, Key="lake/events/date=2024-01-05/part-0.parquet")
    with pytest.raises(data.SourceError, match="date=2024-01-05"):
        data.build(remote, lake_url=f"s3://{bucket}/lake")


def test_simulate_writes_its_lake_to_s3(s3, tmp_path):
    "The simulator writes straight to the bucket, and the build reads the world's own lake URL from there."
    endpoint, bucket, client = s3
    w = simulate_world(tmp_path / "h", customers=40, days=6, seed=1, lake_url=f"s3://{bucket}/sim")
    assert [k.split("/")[2] for k in keys(client, bucket, "sim/events/")] == [f"date=2024-01-0{d}" for d in range(1, 7)]
    assert not Paths(tmp_path / "h").lake.exists()
    b = data.build(tmp_path / "h")
    assert len(data.load_table(tmp_path / "h", "sessions")) == b.reports["sessions"]["rows_out"] > 0
    assert manifest(tmp_path / "h", "sessions", b.tables["sessions"])["sources"]["lake"] == w.lake_url


def test_cli_build_with_the_endpoint_in_fsspec_config(s3, tmp_path):
    "`churnops data build --lake-url s3://…` in a fresh process, the endpoint given only as fsspec's FSSPEC_S3_* config."
    endpoint, bucket, client = s3
    simulate_world(tmp_path / "h", customers=40, days=5, seed=2)
    upload_folder(client, Paths(tmp_path / "h").lake, bucket, "lake")
    local = data.build(tmp_path / "h")
    shutil.rmtree(Paths(tmp_path / "h").lake)
    env = {k: v for k, v in os.environ.items() if k != "AWS_ENDPOINT_URL"}
    env["FSSPEC_S3_ENDPOINT_URL"] = endpoint
    r = subprocess.run(["churnops", "data", "build", "--home", str(tmp_path / "h"), "--lake-url", f"s3://{bucket}/lake",
                        "--quiet"], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    assert f"build {local.build_id}" in r.stdout


def test_unreachable_s3_endpoint_is_named(s3, tmp_path, monkeypatch):
    endpoint, bucket, client = s3
    simulate_world(tmp_path / "h", customers=30, days=3, seed=2)
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port_number()}")   # nothing listens there
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    with pytest.raises(data.SourceError, match=f"lake s3://{bucket}/lake"):
        data.build(tmp_path / "h", lake_url=f"s3://{bucket}/lake")


# 2. MLflow's artifact root -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["direct", "proxied"])
def test_mlflow_artifacts_on_s3(mode, s3, tmp_path, monkeypatch):
    """direct: `--default-artifact-root s3://… --no-serve-artifacts`, the client writes to the bucket itself;
    proxied: `--artifacts-destination s3://…`, the server does and the client only talks HTTP to it."""
    endpoint, bucket, client = s3
    monkeypatch.delenv("AWS_ENDPOINT_URL")        # MLflow's own MLFLOW_S3_ENDPOINT_URL alone must route it
    root = f"s3://{bucket}/mlartifacts"
    args = (["--default-artifact-root", root, "--no-serve-artifacts"] if mode == "direct"
            else ["--artifacts-destination", root, "--serve-artifacts"])
    (tmp_path / "srv").mkdir()
    with serve_mlflow(f"sqlite:///{tmp_path}/srv/mlflow.db", tmp_path / "srv", *args) as url:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
        if mode == "proxied":                       # the client needs no S3 access at all: take it away
            for k in ("AWS_ENDPOINT_URL", "MLFLOW_S3_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
                monkeypatch.delenv(k, raising=False)
        table = train.make_telco_table(300, seed=3)
        home = tmp_path / "home"
        res = train.train_table(table, "Churn", f"telco-s3-{mode}", home=home, id_column="customerID", trials=1,
                                families=["logreg"], folds=3, quiet=True)
        stored = keys(client, bucket, "mlartifacts/")
        from mlflow.tracking import MlflowClient
        location = MlflowClient().get_experiment_by_name(f"telco-s3-{mode}").artifact_location
        assert location.startswith(root if mode == "direct" else "mlflow-artifacts:"), location
        assert any(k.endswith("/MLmodel") for k in stored), stored
        assert any(k.endswith(".skops") for k in stored), stored
        assert not (home / "mlartifacts").exists() and not Paths(home).mlflow_db.exists()
        pipe, mv = tracking.load_model(home, f"telco-s3-{mode}", res.version)
        assert int(mv.version) == res.version
        p = pipe.predict_proba(train.scoring_frame(table, pipe))[:, 1]
        assert roc_auc_score(table["Churn"].eq("Yes"), p) > 0.7     # a working model came back, not just a file
        # the model file MLflow hands back is byte for byte the object in the bucket
        import mlflow
        got = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"models:/telco-s3-{mode}/{res.version}",
                                                       dst_path=str(tmp_path / "dl")))
        skops_key = next(k for k in stored if k.endswith(".skops"))
        obj = client.get_object(Bucket=bucket, Key=skops_key)["Body"].read()
        assert (got / Path(skops_key).name).read_bytes() == obj


# 3. the DVC remote ---------------------------------------------------------------------------------------------------

def _dvc(home: Path, *args: str) -> str:
    r = subprocess.run(["dvc", *args], cwd=home, capture_output=True, text=True)
    assert r.returncode == 0, f"dvc {' '.join(args)}: {r.stdout[-2000:]}{r.stderr[-2000:]}"
    return r.stdout


def _s3_remote(home: Path, bucket: str, endpoint: str) -> None:
    "An `s3` DVC remote in the bucket, pointed at the endpoint by DVC's own config (credentials from AWS_* env)."
    _dvc(home, "remote", "add", "s3", f"s3://{bucket}/dvcstore")
    _dvc(home, "remote", "modify", "s3", "endpointurl", endpoint)


def _push_wipe_pull(home: Path, client, bucket: str) -> None:
    assert main(["pipeline", "push", "--home", str(home), "--remote", "s3"]) == 0
    assert keys(client, bucket, "dvcstore/files/md5/"), "nothing reached the bucket"
    assert not [p for p in (home / "dvc_remote").rglob("*") if p.is_file()]   # the local default remote got nothing
    shutil.rmtree(home / ".dvc" / "cache")
    for out in ("data", "features"): shutil.rmtree(home / out, ignore_errors=True)
    assert main(["pipeline", "pull", "--home", str(home), "--remote", "s3"]) == 0


def test_dvc_remote_on_s3_push_and_pull(s3, tmp_path, monkeypatch):
    "After the data and features stages ran, their outputs go to the bucket and come back byte-identical."
    endpoint, bucket, client = s3
    monkeypatch.delenv("AWS_ENDPOINT_URL")        # DVC's own `endpointurl` alone must route it
    home = tmp_path / "ws"
    pipeline.init_workspace(home)
    simulate_world(home, customers=60, days=75, seed=4)
    summary = pipeline.run_pipeline(home, stages=["feature_engineering"], quiet=True)
    assert summary["ran"] == ["data_validation", "feature_engineering"]
    before = {out: tree_digest(home / out) for out in ("data", "features")}
    assert any(k.endswith("manifest.json") for k in before["data"]) and before["features"]
    _s3_remote(home, bucket, endpoint)
    _push_wipe_pull(home, client, bucket)
    assert {out: tree_digest(home / out) for out in ("data", "features")} == before
    assert data.load_build(home)["customers"].shape[0] == 60


def test_dvc_pull_after_a_partial_run(s3, tmp_path, monkeypatch):
    endpoint, bucket, client = s3
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    home = tmp_path / "ws"
    pipeline.init_workspace(home)
    simulate_world(home, customers=40, days=10, seed=4)
    assert pipeline.run_pipeline(home, stages=["data_validation"], quiet=True)["ran"] == ["data_validation"]
    before = tree_digest(home / "data")
    _s3_remote(home, bucket, endpoint)
    _push_wipe_pull(home, client, bucket)
    assert tree_digest(home / "data") == before
