"""Follow-ups of a review of the startup checks (18422b0): a port out of range set by a setting
(``--config`` or ``VECDB_PROXY__PORT``), not a flag, was still taken (gRPC listened on 99999 % 65536);
the debugging backend server's ``--port`` was still unchecked; ``--log-level warn`` (Python's alias,
Milvus's name for the level), accepted before, became a usage error. And of ``vecdb cluster restart``
(e0dfc79): a role restarted without the cluster secret ``up`` was given held another one."""

from __future__ import annotations

import logging
import sys

import pytest

from vecdb import cli, localcluster, logs
from vecdb.config import SettingError, load_settings
from vecdb.storage import backend_server


@pytest.mark.parametrize("var, value, says", [
    ("VECDB_PROXY__PORT", "99999", "proxy.port: Input should be less than or equal to 65535"),
    ("VECDB_PROXY__PORT", "-1", "proxy.port: Input should be greater than or equal to 0"),
    ("VECDB_HTTP__PORT", "70000", "http.port: Input should be less than or equal to 65535"),
    ("VECDB_PROXY__WORKER_PORT", "65536", "proxy.worker_port: Input should be less than or equal to 65535"),
])
def test_a_port_setting_out_of_range_is_a_setting_error(var, value, says):
    with pytest.raises(SettingError, match=says):
        load_settings(env={var: value})


def test_port_settings_in_range_are_taken():
    s = load_settings(env={"VECDB_PROXY__PORT": "65535", "VECDB_HTTP__PORT": "0"})
    assert (s.proxy.port, s.http.port) == (65535, 0)


def test_the_backend_servers_port_flag_is_checked(tmp_path, capsys, monkeypatch):
    def serve(*args, **kwargs):
        raise AssertionError(f"served on port {args[3]}")  # (it would serve until killed)

    monkeypatch.setattr(backend_server, "serve_backends", serve)
    with pytest.raises(SystemExit) as e:
        backend_server.main(["--data-dir", str(tmp_path), "--port", "99999"])
    assert e.value.code == 2 and "invalid port 99999" in capsys.readouterr().err


@pytest.mark.parametrize("given", ["warn", "WARN", "warning"])
def test_warn_is_a_log_level(given):
    level = cli._log_level(given)
    root = logging.getLogger()
    before = root.level
    try:
        logs.set_level(level)
        assert root.level == logging.WARNING
    finally:
        root.setLevel(before)
    with pytest.raises(Exception, match="'loud'"):
        cli._log_level("loud")


# --- vecdb cluster restart (e0dfc79) -------------------------------------------------------------
def _recorded_cluster(data_dir, secret_from_env: bool) -> None:
    """cluster.json and backends.json as ``up`` leaves them (a dead coord; nothing runs)."""
    procs = [localcluster.Proc("s3", "s3", 0, 8333, ["weed"], "s3.log", "", url="http://127.0.0.1:8333"),
             localcluster.Proc("coord", "coord", 0, 19000, [sys.executable, "-m", "vecdb", "coord"], "coord.log", "")]
    localcluster._save_state(str(data_dir), procs, {"data_dir": str(data_dir), "secret_from_env": secret_from_env})
    localcluster._write_json(str(data_dir / localcluster.BACKENDS_FILE),
                             {"s3_access_key": "a", "s3_secret_key": "b", "cluster_secret": "generated"})


@pytest.mark.parametrize("up_had", [True, False])
def test_restart_refuses_another_cluster_secret_than_up_gave(tmp_path, monkeypatch, up_had):
    """``up`` given VECDB_SECURITY__CLUSTER_SECRET uses it, not backends.json's: a ``restart`` without
    it started the role with backends.json's, which the other roles' internal RPC refuses (and the
    other way round)."""
    def launch(*args, **kwargs):
        raise AssertionError("a role was started")

    monkeypatch.setattr(localcluster, "_launch", launch)
    monkeypatch.delenv("VECDB_SECURITY__CLUSTER_SECRET_FILE", raising=False)
    if up_had:
        monkeypatch.delenv("VECDB_SECURITY__CLUSTER_SECRET", raising=False)
    else:
        monkeypatch.setenv("VECDB_SECURITY__CLUSTER_SECRET", "mine")
    _recorded_cluster(tmp_path, secret_from_env=up_had)
    with pytest.raises(localcluster.ClusterError, match="restart with the environment `up` had"):
        localcluster.restart(str(tmp_path), ["coord"])


def test_up_records_where_its_cluster_secret_came_from(monkeypatch):
    monkeypatch.delenv("VECDB_SECURITY__CLUSTER_SECRET_FILE", raising=False)
    monkeypatch.setenv("VECDB_SECURITY__CLUSTER_SECRET", "mine")
    assert localcluster._secret_from_env()
    env = localcluster._role_env("http://s3", {"s3_access_key": "a", "s3_secret_key": "b", "cluster_secret": "gen"})
    assert env["VECDB_SECURITY__CLUSTER_SECRET"] == "mine"  # up's roles get it, not backends.json's
    monkeypatch.delenv("VECDB_SECURITY__CLUSTER_SECRET")
    assert not localcluster._secret_from_env()


def test_cluster_up_refuses_proxy_ports_past_65535_before_starting_anything(tmp_path):
    with pytest.raises(localcluster.ClusterError, match="--port 65535 with 2 proxies goes past port 65535"):
        localcluster.up(str(tmp_path), proxies=2, port=65535)
    assert not (tmp_path / localcluster.STATE_FILE).exists()
