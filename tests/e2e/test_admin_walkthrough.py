"""A newcomer's walk through the admin surface (docs/observability.md): ``vecdb`` started with a wrong
setting says what is wrong in one line and exits non-zero, never with a traceback (a config file that is
missing, not YAML or of the wrong type, an unknown log level, a port out of range, a data directory
that cannot be made, a storage URL of no known scheme); the web UI and the probes of an empty server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request

import pytest

from tests.conftest import start_standalone


def _run(tmp_path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """``python -m vecdb <args>`` (no --log-level: a config's log.level is read) in ``tmp_path``."""
    return subprocess.run([sys.executable, "-m", "vecdb", *args], capture_output=True, text=True, timeout=60,
                          cwd=tmp_path, env={**os.environ, **(env or {})})


@pytest.fixture
def files(tmp_path):
    (tmp_path / "not_yaml.yaml").write_text("proxy: [port\n")
    (tmp_path / "wrong_type.yaml").write_text("http: {port: notanint}\n")
    (tmp_path / "a_list.yaml").write_text("- proxy\n")
    (tmp_path / "loud.yaml").write_text("log: {level: LOUD}\n")
    (tmp_path / "a_file").write_text("x")
    return tmp_path


@pytest.mark.parametrize("args, status, says", [
    (["standalone", "--config", "missing.yaml"], 2, "cannot read --config missing.yaml: No such file"),
    (["standalone", "--config", "not_yaml.yaml"], 2, "--config not_yaml.yaml is not valid YAML"),
    (["standalone", "--config", "wrong_type.yaml"], 2, "http.port: Input should be a valid integer"),
    (["standalone", "--config", "a_list.yaml"], 2, "expected a mapping of sections"),
    (["standalone", "--config", "loud.yaml"], 2, "unknown log level 'LOUD'"),
    (["standalone", "--port", "99999"], 2, "argument --port: invalid port 99999: a number from 0 to 65535"),
    (["standalone", "--http-port", "70000"], 2, "argument --http-port: invalid port 70000"),
    (["cdc", "--port", "99999"], 2, "argument --port: invalid port 99999"),
    (["standalone", "--port", "0", "--http-port", "0", "--data-dir", "a_file"], 1,
     "cannot use data directory"),
    (["standalone", "--port", "0", "--http-port", "0", "--log-store", "bogus://x"], 2,
     "invalid storage.log 'bogus://x'"),
    (["standalone", "--port", "0", "--http-port", "0", "--object-store", "s3://"], 2,
     "invalid storage.objects 's3://'"),
])
def test_a_wrong_setting_is_one_line_and_an_exit_status(files, args, status, says):
    done = _run(files, *args)
    assert done.returncode == status, done.stderr
    assert says in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert "ready on" not in done.stdout + done.stderr


def test_a_wrong_log_level_or_variable_is_a_usage_error(tmp_path):
    done = _run(tmp_path, "--log-level", "BOGUS", "standalone")
    assert done.returncode == 2 and "argument --log-level: 'BOGUS'" in done.stderr, done.stderr
    done = _run(tmp_path, "standalone", "--port", "0", env={"VECDB_PROXY__PORT": "abc"})
    assert done.returncode == 2 and "proxy.port" in done.stderr and "Traceback" not in done.stderr, done.stderr


def _get(port: int, path: str) -> tuple[int, str, str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=60) as resp:
        return resp.status, resp.headers["Content-Type"], resp.read().decode()


def test_an_empty_server_shows_its_page_probes_and_metrics(tmp_path):
    node = start_standalone(str(tmp_path / "data"), http=True)
    try:
        port = node.http_ports[0]
        status, kind, page = _get(port, "/webui/")
        assert status == 200 and kind.startswith("text/html") and "<h2>Database default</h2>" in page
        assert "Traceback" not in page and page.rstrip().endswith("</html>")
        status, kind, body = _get(port, "/webui/api/collections")
        data = json.loads(body)
        assert data["databases"] == [{"name": "default", "collections": []}]
        assert data["server"]["role"] == "standalone" and data["server"]["state"] == "Healthy"
        assert _get(port, "/healthz")[:3:2] == (200, "OK")
        assert "milvus_proxy_req_count" in _get(port, "/metrics")[2]
        # `vecdb inspect ... | head`: the reader gone before the output, no traceback
        for what in (["keys", ""], ["--json", "collections"]):
            proc = subprocess.Popen([sys.executable, "-m", "vecdb", "inspect", "--data-dir", str(tmp_path / "data"),
                                     *what], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            proc.stdout.close()
            err = proc.stderr.read()
            assert proc.wait(60) == 0 and "Traceback" not in err, err
    finally:
        node.stop()
