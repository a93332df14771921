"""deploy/helm/vecdb, linted and rendered by Helm's own library (helm-python-sdk, offline) with the default
values (bundled etcd, NATS and MinIO) and with ci/external-values.yaml (external backends, ServiceMonitor, PDBs);
every rendered object validated against the Kubernetes schemas in strict mode (kubernetes-validate); each
role's container arguments and environment read by vecdb's own parser, with the ConfigMap as its --config:
every backend it is given is a Service of the release on the right port (or the external one of the values),
its probes ask /healthz on the port it serves it on; values.schema.json refuses bad values."""

from __future__ import annotations

import base64
import functools
import json
import re
from pathlib import Path

import helm_python as helm
import jsonschema
import kubernetes_validate
import pytest

from tests.deploy._deploy import (
    CHART,
    CLUSTER_ROLES,
    DOCKERFILES,
    NATS_CONF,
    RoleRun,
    env_settings,
    load_yaml,
    load_yaml_all,
    parse_dockerfile,
    role_run,
    stage_last,
)
from vecdb.config import unknown_settings

EXTERNAL_VALUES = CHART / "ci" / "external-values.yaml"
VALUE_SETS = ["default", "external"]
KUBE_VERSIONS = ["1.25.0", kubernetes_validate.latest_version()]  # the chart's kubeVersion floor, the newest
POD_IP, POD_NAMES = "10.1.2.3", {"metadata.name": "vecdb-pod-0"}
CRD_SCHEMAS = {"ServiceMonitor": Path(__file__).with_name("servicemonitor.schema.json")}


def values_of(name: str) -> dict:
    return {} if name == "default" else load_yaml(EXTERNAL_VALUES.read_text())


@functools.cache
def rendered(name: str) -> tuple[tuple[str, dict], ...]:
    """(template, object) for every object the chart renders with the named values."""
    out = helm.Chart.load(str(CHART)).render(values_of(name))
    objects = []
    for template, text in sorted(out.items()):
        if template.endswith("NOTES.txt"):
            continue
        objects += [(template, doc) for doc in load_yaml_all(text)]
    return tuple(objects)


def objects(name: str) -> dict[tuple[str, str], dict]:
    by_key: dict[tuple[str, str], dict] = {}
    for _, obj in rendered(name):
        key = (obj["kind"], obj["metadata"]["name"])
        assert key not in by_key, f"{key} rendered twice"
        by_key[key] = obj
    return by_key


def of_kind(name: str, kind: str) -> dict[str, dict]:
    return {n: o for (k, n), o in objects(name).items() if k == kind}


def matches(selector: dict, labels: dict) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def pod_templates(name: str) -> list[dict]:
    return [o["spec"]["template"] for (k, _), o in objects(name).items() if k in ("Deployment", "StatefulSet")]


def role_deployments(name: str) -> dict[str, dict]:
    """role -> its Deployment"""
    return {d["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"]: d
            for d in of_kind(name, "Deployment").values()}


def container_env(container: dict, objs: dict) -> dict[str, str]:
    """The container's environment as the kubelet gives it: fieldRefs of a pod, Secrets of the release
    decoded, an external Secret's keys as placeholders naming it."""
    env: dict[str, str] = {}
    for e in container.get("env", []):
        if "value" in e:
            env[e["name"]] = e["value"]
            continue
        source = e["valueFrom"]
        if "fieldRef" in source:
            env[e["name"]] = {"status.podIP": POD_IP, **POD_NAMES}[source["fieldRef"]["fieldPath"]]
        else:
            ref = source["secretKeyRef"]
            secret = objs.get(("Secret", ref["name"]))
            env[e["name"]] = (base64.b64decode(secret["data"][ref["key"]]).decode() if secret
                              else f"<secret {ref['name']}/{ref['key']}>")
    return env


def role_of(deployment: dict, objs: dict, tmp_path: Path) -> tuple[RoleRun, dict]:
    """What the role's container runs: the image's entrypoint (vecdb) with the rendered args, $(VAR)
    expanded as the kubelet does, the ConfigMap mounted where --config points."""
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = container_env(container, objs)
    args = [re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], a) for a in container["args"]]
    config_path = args[args.index("--config") + 1]
    mount = next(m for m in container["volumeMounts"] if config_path.startswith(m["mountPath"] + "/"))
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    config_map = objs[("ConfigMap", volume["configMap"]["name"])]
    local = tmp_path / f"{container['name']}-{Path(config_path).name}"
    local.write_text(config_map["data"][Path(config_path).name])
    args[args.index("--config") + 1] = str(local)
    return role_run(args, {k: v for k, v in env.items() if k.startswith("VECDB_")}), container


def container_port(container: dict, name: str) -> int:
    return next(p["containerPort"] for p in container["ports"] if p["name"] == name)


def service_with_port(objs: dict, host: str, port: int) -> dict:
    """The release's Service called ``host`` that serves ``port``, and the pod template behind it, which has a
    container listening on the port the Service targets."""
    service = objs.get(("Service", host))
    assert service, f"{host} is no Service of the release"
    (sp,) = [p for p in service["spec"]["ports"] if p["port"] == port]
    pods = [t for t in pod_templates_of(objs) if matches(service["spec"]["selector"], t["metadata"]["labels"])]
    assert len(pods) == 1, f"Service {host} selects {len(pods)} pod templates"
    ports = {p["name"]: p["containerPort"] for c in pods[0]["spec"]["containers"] for p in c.get("ports", [])}
    assert sp["targetPort"] in ports and ports[sp["targetPort"]] == port, (host, port, ports)
    return pods[0]


def pod_templates_of(objs: dict) -> list[dict]:
    return [o["spec"]["template"] for (k, _), o in objs.items() if k in ("Deployment", "StatefulSet")]


# --- Helm's own checks ----------------------------------------------------------------------------


@pytest.mark.parametrize("values", VALUE_SETS)
def test_helm_lint_passes(values):
    result = helm.lint(str(CHART), values_of(values), strict=True)
    assert result["errors"] == [], result
    assert all(m["severity"] <= 1 for m in result["messages"]), result["messages"]  # info only (icon)


def test_helm_lint_fails_bad_values():
    result = helm.lint(str(CHART), {"querynode": {"replicas": "two"}})
    assert result["errors"] and any("/querynode/replicas" in e for e in result["errors"]), result


@pytest.mark.parametrize(("bad", "where"), [
    ({"coord": {"replicas": "two"}}, "/coord/replicas"),
    ({"querynode": {"replicas": -1}}, "/querynode/replicas"),
    ({"datanode": {"replicas": "one"}}, "/datanode/replicas"),
    ({"datanode": {"nodeSelector": {"disk": 1}}}, "/datanode/nodeSelector"),
    ({"ports": {"datanode": "21124"}}, "/ports/datanode"),
    ({"logLevel": "LOUD"}, "/logLevel"),
    ({"etcd": {"bundled": False}}, "/etcd"),  # external without an endpoint
    ({"etcd": {"bundled": False, "endpoint": "http://etcd:2379"}}, "/etcd/endpoint"),  # no scheme: etcd://host:port
    ({"nats": {"bundled": False, "url": "etcd:4222"}}, "/nats/url"),
    ({"s3": {"bucket": "Has_Capitals"}}, "/s3/bucket"),
    ({"ports": {"http": 70000}}, "/ports/http"),
    ({"config": {"storage": {"meta": "local"}}}, "propertyName 'meta'"),  # the chart sets the backends
    ({"config": {"storage": {"session_ttl": 1}}}, "/config/storage/session_ttl"),  # vecdb's own minimum is 2
    ({"proxy": {"resources": {"requests": {"memory": "lots"}}}}, "/proxy/resources"),
    ({"querynode": {"extraEnv": [{"value": "x"}]}}, "/querynode/extraEnv"),
    ({"podDisruptionBudget": {"enabled": "yes"}}, "/podDisruptionBudget/enabled"),
    ({"nats": {"image": "nats:latest"}}, "/nats/image"),
    ({"unknownKey": 1}, "unknownKey"),
])
def test_values_schema_refuses_a_bad_value(bad, where):
    with pytest.raises(helm.HelmValuesError) as e:
        helm.Chart.load(str(CHART)).render(bad)
    assert where in str(e.value), str(e.value)


def test_values_schema_takes_good_variants():
    out = helm.Chart.load(str(CHART)).render({
        "podDisruptionBudget": {"enabled": True, "maxUnavailable": "50%"},
        "querynode": {"replicas": 0, "resources": {"requests": {"cpu": 2, "memory": "512Mi"}}},
        "datanode": {"replicas": 0},  # no data node: the proxies persist
        "s3": {"accessKey": "vecdbuser", "secretKey": "vecdb-secret-key"}})
    assert any("PodDisruptionBudget" in text for text in out.values())


# --- Kubernetes' schemas ----------------------------------------------------------------------------


@pytest.mark.parametrize("values", VALUE_SETS)
@pytest.mark.parametrize("kube", KUBE_VERSIONS)
def test_every_rendered_object_is_valid_kubernetes(values, kube):
    kinds = set()
    for template, obj in rendered(values):
        kinds.add(obj["kind"])
        if obj["kind"] in CRD_SCHEMAS:
            jsonschema.validate(obj, json.loads(CRD_SCHEMAS[obj["kind"]].read_text()))
            continue
        try:
            kubernetes_validate.validate(obj, kube, strict=True)
        except kubernetes_validate.ValidationError as e:
            raise AssertionError(f"{template}: {obj['kind']} {obj['metadata']['name']}: {e.message} at "
                                 f"{'/'.join(map(str, e.path))}") from None
    expected = {"ConfigMap", "Deployment", "Service"}
    expected |= {"StatefulSet", "Secret"} if values == "default" else {"ServiceMonitor", "PodDisruptionBudget"}
    assert expected <= kinds, kinds


def test_strict_validation_catches_what_the_chart_must_not_do():
    """The same validation, fed a Deployment of the chart with a misspelt field and a string replica count."""
    deployment = json.loads(json.dumps(role_deployments("default")["proxy"]))
    deployment["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBE_VERSIONS[0], strict=True)
    deployment["spec"]["replicas"] = 1
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBE_VERSIONS[0], strict=True)
    monitor = next(o for _, o in rendered("external") if o["kind"] == "ServiceMonitor")
    monitor = json.loads(json.dumps(monitor))
    monitor["spec"]["endpoints"][0]["intervall"] = "30s"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(monitor, json.loads(CRD_SCHEMAS["ServiceMonitor"].read_text()))


# --- what the roles run ------------------------------------------------------------------------------


@pytest.mark.parametrize("values", VALUE_SETS)
def test_each_role_gets_every_setting_it_needs_from_the_release(values, tmp_path):
    objs, vals = objects(values), values_of(values)
    deployments = role_deployments(values)
    assert set(deployments) == set(CLUSTER_ROLES)
    for role, deployment in deployments.items():
        run, container = role_of(deployment, objs, tmp_path)
        assert run.role == role == container["name"]
        storage = run.settings.storage
        # where it listens and what it tells the others: the pod IP (its name does not resolve); the proxy
        # listens on every address (Service and port-forward)
        assert run.listen == ("0.0.0.0" if role == "proxy" else POD_IP, container_port(container, "grpc"))
        assert run.settings.http.port == container_port(container, "http") == 9091
        # the role's own default port (`vecdb <role>` without --port), as in the compose file
        assert run.listen[1] == {"coord": 19540, "querynode": 21123, "datanode": 21124, "proxy": 19530}[role]
        if role != "coord":
            assert run.args.node_id == POD_NAMES["metadata.name"]
        data = next(m for m in container["volumeMounts"] if m["mountPath"] == storage.data_dir)
        volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
        assert "emptyDir" in volumes[data["name"]]
        assert storage.meta.startswith("etcd://") and storage.log.startswith("nats://")
        assert storage.objects == "s3://" + vals.get("s3", {}).get("bucket", "vecdb") + (
            "/" + vals["s3"]["prefix"] if vals.get("s3", {}).get("prefix") else "")
        if values == "default":
            etcd = service_with_port(objs, *_host_port(storage.meta))
            nats = service_with_port(objs, *_host_port(storage.log))
            minio = service_with_port(objs, *_host_port(storage.s3_endpoint))
            names = [c["name"] for t in (etcd, nats, minio) for c in t["spec"]["containers"]]
            assert names == ["etcd", "nats", "minio"]
            # the keys the role gets are MinIO's root user and password, from the same Secret
            minio_env = container_env(minio["spec"]["containers"][0], objs)
            assert (storage.s3_access_key, storage.s3_secret_key) == (
                minio_env["MINIO_ROOT_USER"], minio_env["MINIO_ROOT_PASSWORD"])
            assert len(storage.s3_secret_key) >= 16
        else:
            assert storage.meta == "etcd://" + vals["etcd"]["endpoint"]
            assert storage.log == vals["nats"]["url"]
            assert (storage.s3_endpoint, storage.s3_region) == (vals["s3"]["endpoint"], vals["s3"]["region"])
            secret = vals["s3"]["existingSecret"]
            assert (storage.s3_access_key, storage.s3_secret_key) == (
                f"<secret {secret}/accessKey>", f"<secret {secret}/secretKey>")
            assert storage.namespace == "prod" and storage.log_replicas == 3
        for key, expected in {"session_ttl": 10.0}.items():
            assert getattr(storage, key) == expected


@pytest.mark.parametrize("values", VALUE_SETS)
def test_config_map_and_env_name_only_settings_vecdb_has(values):
    """vecdb ignores settings it does not have: the ConfigMap's file and the roles' VECDB_* variables must
    name real ones (a renamed setting in vecdb/config.py fails here, not silently in a cluster)."""
    objs = objects(values)
    (config_map,) = [o for (k, n), o in objs.items() if k == "ConfigMap" and n == "release-name-vecdb"]
    assert not unknown_settings(load_yaml(config_map["data"]["vecdb.yaml"]))
    for deployment in role_deployments(values).values():
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert not unknown_settings(env_settings(container_env(container, objs)))


def test_external_values_reach_the_pods():
    dep = role_deployments("external")
    pod = dep["querynode"]["spec"]["template"]["spec"]
    vals = values_of("external")["querynode"]
    assert dep["querynode"]["spec"]["replicas"] == 4 and dep["proxy"]["spec"]["replicas"] == 2
    assert dep["coord"]["spec"]["replicas"] == 2  # active + standby by default
    assert role_deployments("default")["datanode"]["spec"]["replicas"] == 1
    dn_vals, dn_pod = values_of("external")["datanode"], dep["datanode"]["spec"]["template"]["spec"]
    assert dep["datanode"]["spec"]["replicas"] == dn_vals["replicas"] == 2
    assert dn_pod["affinity"] == dn_vals["affinity"]
    assert dn_pod["containers"][0]["resources"] == dn_vals["resources"]
    assert pod["nodeSelector"] == vals["nodeSelector"]
    assert pod["tolerations"] == vals["tolerations"]
    assert pod["affinity"] == vals["affinity"]
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert env["VECDB_QUERYNODE__INDEX_THREADS"] == "4"
    assert dep["querynode"]["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"] == "querynode"
    assert not of_kind("external", "StatefulSet") and not of_kind("external", "Secret")
    assert of_kind("external", "Service")["release-name-vecdb"]["spec"]["type"] == "LoadBalancer"
    assert role_deployments("external")["proxy"]["spec"]["template"]["spec"]["containers"][0]["image"] == \
        "registry.example.com/vecdb:0.1.0"


def test_probes_ask_healthz_on_the_role_s_http_port():
    for values in VALUE_SETS:
        for role, deployment in role_deployments(values).items():
            (container,) = deployment["spec"]["template"]["spec"]["containers"]
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                get = container[probe]["httpGet"]
                assert get["path"] == "/healthz" and container_port(container, get["port"]) == 9091, (role, probe)


def test_pods_run_as_the_image_s_non_root_user_read_only():
    uid, gid = map(int, stage_last(parse_dockerfile(DOCKERFILES[0])[-1], "USER").split(":"))
    for deployment in role_deployments("default").values():
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert (pod["securityContext"]["runAsUser"], pod["securityContext"]["runAsGroup"]) == (uid, gid)
        sc = pod["containers"][0]["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
        writable = {m["mountPath"] for m in pod["containers"][0]["volumeMounts"] if not m.get("readOnly")}
        assert writable == {"/var/lib/vecdb", "/tmp"}


# --- objects that refer to each other -----------------------------------------------------------------


@pytest.mark.parametrize("values", VALUE_SETS)
def test_selectors_and_references_resolve(values):
    objs = objects(values)
    templates = pod_templates(values)
    for (kind, name), obj in objs.items():
        if kind in ("Deployment", "StatefulSet"):
            labels = obj["spec"]["template"]["metadata"]["labels"]
            assert obj["spec"]["selector"]["matchLabels"].items() <= labels.items()
            for volume in obj["spec"]["template"]["spec"].get("volumes", []):
                if "configMap" in volume:
                    assert ("ConfigMap", volume["configMap"]["name"]) in objs, (name, volume)
            if kind == "StatefulSet":
                assert ("Service", obj["spec"]["serviceName"]) in objs
        if kind == "Service":
            selected = [t for t in templates if matches(obj["spec"]["selector"], t["metadata"]["labels"])]
            assert selected, f"Service {name} selects no pod"
        if kind == "PodDisruptionBudget":
            selector = obj["spec"]["selector"]["matchLabels"]
            assert len([t for t in templates if matches(selector, t["metadata"]["labels"])]) == 1, name
        if kind == "ServiceMonitor":
            selector = obj["spec"]["selector"]["matchLabels"]
            services = [s for (k, _), s in objs.items() if k == "Service"]
            (service,) = [s for s in services if matches(selector, s["metadata"]["labels"])]
            assert {p["name"] for p in service["spec"]["ports"]} >= {e["port"] for e in obj["spec"]["endpoints"]}
            roles = {t["metadata"]["labels"].get("app.kubernetes.io/component")
                     for t in templates if matches(service["spec"]["selector"], t["metadata"]["labels"])}
            assert roles == set(CLUSTER_ROLES), roles
    if values == "external":
        assert {n for (k, n) in objs if k == "PodDisruptionBudget"} == {
            f"release-name-vecdb-{r}" for r in CLUSTER_ROLES}


def test_proxy_service_publishes_the_milvus_api_and_metrics():
    service = of_kind("default", "Service")["release-name-vecdb"]
    assert {(p["name"], p["port"], p["targetPort"]) for p in service["spec"]["ports"]} == {
        ("grpc", 19530, "grpc"), ("http", 9091, "http")}
    (proxy,) = [t for t in pod_templates("default") if matches(service["spec"]["selector"], t["metadata"]["labels"])]
    assert container_port(proxy["spec"]["containers"][0], "grpc") == 19530


def test_bundled_nats_has_the_same_config_as_compose():
    def settings(text: str) -> list[str]:
        return [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]

    (cm,) = [o for (k, n), o in objects("default").items() if k == "ConfigMap" and n.endswith("-nats")]
    assert settings(cm["data"]["nats.conf"]) == settings(NATS_CONF.read_text())


def test_s3_credentials_from_values_or_an_existing_secret():
    chart = helm.Chart.load(str(CHART))
    docs = [d for t, text in chart.render({"s3": {"accessKey": "vecdbuser", "secretKey": "s3cr3t-key-value"}}).items()
            if t.endswith("secret-s3.yaml") for d in load_yaml_all(text)]
    assert [base64.b64decode(docs[0]["data"][k]).decode() for k in ("accessKey", "secretKey")] == [
        "vecdbuser", "s3cr3t-key-value"]
    out = chart.render({"s3": {"existingSecret": "mine"}})
    assert not load_yaml_all(out["vecdb/templates/secret-s3.yaml"])
    refs = re.findall(r"secretKeyRef:\s*\{?\s*name: (\S+?),?\s", "\n".join(out.values()))
    assert refs and set(refs) - {"release-name-vecdb-cluster"} == {"mine"}, refs  # and the cluster secret's


def _host_port(url: str) -> tuple[str, int]:
    host, port = url.split("://", 1)[1].rsplit(":", 1)
    return host, int(port)


def test_every_role_gets_the_same_cluster_secret_from_a_secret():
    """Internal RPC is refused without security.cluster_secret (docs/security.md): every role gets the same one,
    from the chart's Secret (random, 48 characters; kept across upgrades by lookup) or clusterSecret.existingSecret."""
    for values in VALUE_SETS:
        objs = objects(values)
        got = set()
        for deployment in role_deployments(values).values():
            (container,) = deployment["spec"]["template"]["spec"]["containers"]
            got.add(container_env(container, objs)["VECDB_SECURITY__CLUSTER_SECRET"])
        (secret,) = got
        if values == "default":
            assert len(secret) == 48 and secret.isalnum()
            assert ("Secret", "release-name-vecdb-cluster") in objs
        else:
            assert secret == "<secret vecdb-cluster-secret/clusterSecret>"
    assert jsonschema.Draft202012Validator(json.loads((CHART / "values.schema.json").read_text())).is_valid(
        {**load_yaml((CHART / "values.yaml").read_text()), "clusterSecret": {"existingSecret": "mine"}})
