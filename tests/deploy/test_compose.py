"""deploy/docker-compose.yml (standalone) and deploy/docker-compose.cluster.yml, read as compose reads them
(YAML merge keys, ``${VAR:-default}``), each vecdb service's command and environment then read by vecdb's
own parser: every setting a role needs is set, names a service of the file on a port it listens on, that
service is a dependency the role waits for (healthy), and every health check asks the port it should."""

from __future__ import annotations

import re
import subprocess
from urllib.parse import urlsplit

import pytest

from tests.conftest import free_port
from tests.deploy._deploy import (
    CLUSTER_ROLES,
    COMPOSE_CLUSTER,
    COMPOSE_STANDALONE,
    NATS_CONF,
    compose_env,
    env_settings,
    image_env,
    interpolate,
    load_compose,
    load_yaml,
    role_run,
    run_python_healthcheck,
)
from vecdb.config import unknown_settings

BACKENDS = {"nats", "etcd", "minio"}


def vecdb_services(doc: dict) -> dict[str, dict]:
    return {name: s for name, s in doc["services"].items() if s.get("image") == "vecdb:latest"}


def service_run(service: dict):
    """The role a service runs and its settings: the image's ENV under the service's environment."""
    return role_run(service["command"], {**image_env(), **compose_env(service)})


def healthcheck_port(service: dict) -> int:
    test = " ".join(service["healthcheck"]["test"])
    m = re.search(r"http://127\.0\.0\.1:(\d+)/healthz", test)
    assert m, f"health check does not ask /healthz: {test}"
    return int(m.group(1))


def host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url if "://" in url else "x://" + url)
    assert parts.hostname and parts.port, url
    return parts.hostname, parts.port


def nats_conf() -> dict[str, str]:
    return dict(re.findall(r"^\s*(\w+)\s*:\s*\"?([^\"\n]+?)\"?\s*$", NATS_CONF.read_text(), re.M))


@pytest.fixture(scope="module")
def cluster():
    return load_compose(COMPOSE_CLUSTER)


@pytest.mark.parametrize("path", [COMPOSE_STANDALONE, COMPOSE_CLUSTER], ids=lambda p: p.name)
def test_every_service_has_an_image_and_a_health_check(path):
    doc = load_compose(path)
    for name, service in doc["services"].items():
        assert service.get("image") or service.get("build"), f"{name}: neither image nor build"
        if name not in vecdb_services(doc):  # ours is built from the repository; the others pinned by tag
            repo, _, tag = service["image"].rpartition(":")
            assert repo and tag and tag != "latest", f"{name}: pin the image by tag"
        check = service.get("healthcheck") or {}
        assert check.get("test") and check["test"][0] in ("CMD", "CMD-SHELL"), f"{name}: no health check"
    for name, service in vecdb_services(doc).items():
        assert service["build"] == {"context": "..", "dockerfile": "Dockerfile"}, name
        assert service["restart"] == "unless-stopped"


def test_standalone_compose_serves_on_its_ports_with_data_on_the_volume():
    doc = load_compose(COMPOSE_STANDALONE)
    (service,) = doc["services"].values()
    run = service_run(service)
    assert run.role == "standalone"
    assert run.listen == ("0.0.0.0", 19530)
    assert healthcheck_port(service) == run.settings.http.port == 9091
    assert set(service["ports"]) == {"19530:19530", "9091:9091"}
    volume, target = service["volumes"][0].split(":")
    assert target == run.settings.storage.data_dir and volume in doc["volumes"]


def test_cluster_has_the_backends_two_coords_two_querynodes_a_datanode_and_a_proxy(cluster):
    roles: dict[str, list[str]] = {}
    for name, service in vecdb_services(cluster).items():
        roles.setdefault(service_run(service).role, []).append(name)
    assert {k: len(v) for k, v in roles.items()} == {"coord": 2, "querynode": 2, "datanode": 1, "proxy": 1}
    assert set(roles) == set(CLUSTER_ROLES)
    assert BACKENDS <= set(cluster["services"])


def test_nodes_have_their_own_ids_and_the_default_ports(cluster):
    """Query and data nodes register session/<role>/<node id>: the id is the service's name (two nodes with one id
    would take each other's session), and each listens on its role's default port as the chart's do."""
    for name, service in vecdb_services(cluster).items():
        run = service_run(service)
        if run.role in ("querynode", "datanode"):
            assert run.args.node_id == name, name
            assert run.listen == ("0.0.0.0", {"querynode": 21123, "datanode": 21124}[run.role]), name


def test_every_setting_a_role_needs_names_a_service_it_waits_for(cluster):
    services = cluster["services"]
    minio_env = compose_env(services["minio"])
    for name, service in vecdb_services(cluster).items():
        run = service_run(service)
        storage = run.settings.storage
        urls = {"meta": storage.meta, "log": storage.log}  # the coord writes a flush's seal records
        if run.role != "coord":
            urls.update(objects_endpoint=storage.s3_endpoint)
            assert storage.objects.startswith("s3://") and len(storage.objects) > len("s3://"), name
            assert storage.s3_access_key == minio_env["MINIO_ROOT_USER"], name
            assert storage.s3_secret_key == minio_env["MINIO_ROOT_PASSWORD"], name
        assert storage.meta.startswith("etcd://"), f"{name}: meta store {storage.meta}"
        if "log" in urls:
            assert storage.log.startswith("nats://"), f"{name}: log store {storage.log}"
        for what, url in urls.items():
            host, port = host_port(url)
            assert host in services, f"{name}: {what} {url} names no service"
            assert str(port) in services[host].get("expose", []), f"{name}: {host} does not listen on {port}"
            assert service["depends_on"][host] == {"condition": "service_healthy"}, f"{name} must wait for {host}"
        # it listens everywhere and tells the others its host name, which must be its service's name
        assert run.settings.proxy.host == "0.0.0.0" and service["hostname"] == name
        assert healthcheck_port(service) == run.settings.http.port != 0, name
        assert "/var/lib/vecdb" == storage.data_dir


def test_credentials_set_once_reach_minio_and_every_role(cluster):
    """MINIO_ROOT_USER / MINIO_ROOT_PASSWORD from the shell or .env change both sides alike."""
    env = {"MINIO_ROOT_USER": "someone", "MINIO_ROOT_PASSWORD": "a-long-secret"}
    doc = interpolate(load_yaml(COMPOSE_CLUSTER.read_text()), env)
    assert compose_env(doc["services"]["minio"]) == env
    for name, service in vecdb_services(doc).items():
        storage = service_run(service).settings.storage
        if service_run(service).role != "coord":
            assert (storage.s3_access_key, storage.s3_secret_key) == ("someone", "a-long-secret"), name


def test_start_order_proxy_after_coord_query_and_data_nodes_standby_after_active(cluster):
    services = cluster["services"]
    for name, service in services.items():
        for dep, cond in (service.get("depends_on") or {}).items():
            assert dep in services, f"{name} depends on a missing {dep}"
            assert cond == {"condition": "service_healthy"} and services[dep].get("healthcheck"), (name, dep)
    order: list[str] = []
    while len(order) < len(services):  # a start order exists (no cycle)
        ready = [n for n, s in services.items() if n not in order and set(s.get("depends_on") or {}) <= set(order)]
        assert ready, f"depends_on has a cycle among {set(services) - set(order)}"
        order += sorted(ready)
    roles = {name: service_run(s).role for name, s in vecdb_services(cluster).items()}
    proxy_deps = set(services["proxy"]["depends_on"])
    assert {n for n, r in roles.items() if r in ("querynode", "datanode")} <= proxy_deps
    assert any(roles[n] == "coord" for n in proxy_deps if n in roles)
    assert "coord-1" in services["coord-2"]["depends_on"]
    # nodes wait for the active coord (data nodes get their channels and segment ids from it)
    for name, role in roles.items():
        if role in ("querynode", "datanode"):
            assert "coord-1" in services[name]["depends_on"], name
            assert order.index(name) > order.index("coord-1")
    assert max(order.index(n) for n in roles if n != "proxy") < order.index("proxy")


def test_proxy_publishes_the_milvus_api_and_its_metrics(cluster):
    proxy = cluster["services"]["proxy"]
    run = service_run(proxy)
    published = dict(p.split(":") for p in proxy["ports"])
    assert published == {"19530": str(run.listen[1]), "9091": str(run.settings.http.port)}
    assert run.listen[1] == 19530 and run.settings.http.port == 9091
    others = [n for n, s in cluster["services"].items() if s.get("ports") and n != "proxy"]
    assert not others, f"only the proxy publishes ports: {others}"


def test_nats_runs_the_config_file_with_jetstream_and_vecdb_s_payload_limit(cluster):
    from vecdb.storage import servers

    nats = cluster["services"]["nats"]
    mounts = {m.split(":")[1]: m.split(":")[0] for m in nats["volumes"]}
    conf_path = nats["command"][nats["command"].index("-c") + 1]
    assert (COMPOSE_CLUSTER.parent / mounts[conf_path]).resolve() == NATS_CONF.resolve()
    conf = nats_conf()
    assert int(conf["max_payload"]) == servers.NATS_MAX_PAYLOAD
    assert conf["sync_interval"] == "always" and "jetstream" in NATS_CONF.read_text()
    assert conf["store_dir"] in mounts and mounts[conf["store_dir"]] in cluster["volumes"]
    assert conf["port"] in nats["expose"]
    check = " ".join(nats["healthcheck"]["test"])
    assert f":{conf['http_port']}/healthz?js-enabled-only=true" in check
    # the real nats-server accepts the file
    out = subprocess.run([servers.find_binary("nats-server"), "-c", str(NATS_CONF), "-t"], capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 0 and "is valid" in out.stdout + out.stderr, out.stdout + out.stderr


def test_etcd_and_minio_listen_where_the_roles_look(cluster):
    etcd, minio = cluster["services"]["etcd"], cluster["services"]["minio"]
    args = etcd["command"]
    client = args[args.index("--listen-client-urls") + 1]
    assert host_port(client)[1] == 2379 and "2379" in etcd["expose"]
    assert args[args.index("--max-txn-ops") + 1] == "4096"  # as vecdb.storage.servers starts etcd
    assert args[args.index("--data-dir") + 1] == etcd["volumes"][0].split(":")[1]
    address = minio["command"][minio["command"].index("--address") + 1]
    assert address.lstrip(":") in minio["expose"]
    assert minio["command"][minio["command"].index("server") + 1] == minio["volumes"][0].split(":")[1]


def test_compose_health_check_follows_healthz():
    """A vecdb service's health check command, run as the container would, with its port moved to a free
    one here: 0 while /healthz says 200, non-zero while it says 503."""
    from vecdb.http import start_http

    test = load_compose(COMPOSE_CLUSTER)["services"]["querynode-1"]["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"]
    port = free_port()
    code = test[3].replace(":9091/", f":{port}/")
    state = {"ok": False}
    server = start_http("127.0.0.1", port, lambda: (state["ok"], "OK" if state["ok"] else "session lost"),
                        "querynode", "t")
    try:
        assert run_python_healthcheck(code) != 0
        state["ok"] = True
        assert run_python_healthcheck(code) == 0
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("path", [COMPOSE_STANDALONE, COMPOSE_CLUSTER], ids=lambda p: p.name)
def test_every_vecdb_variable_names_a_setting_vecdb_has(path):
    """vecdb ignores a VECDB_* variable it has no setting for: a misspelt one would be lost silently."""
    for name, service in load_compose(path)["services"].items():
        env = {**image_env(), **compose_env(service)}
        assert not unknown_settings(env_settings(env)), name
    assert unknown_settings(env_settings({"VECDB_STORAGE__SESION_TTL": "2"})) == ["storage.sesion_ttl"]
