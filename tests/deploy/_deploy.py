"""What the deployment-file tests share: the files' paths, YAML that refuses duplicate keys, compose's
``${VAR:-default}`` interpolation, and the settings a role command line ends up with, read by vecdb's own
command-line parser (so a flag or variable vecdb does not read, or reads differently, fails the tests)."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
CHART = DEPLOY / "helm" / "vecdb"
COMPOSE_CLUSTER = DEPLOY / "docker-compose.cluster.yml"
COMPOSE_STANDALONE = DEPLOY / "docker-compose.yml"
NATS_CONF = DEPLOY / "nats" / "nats.conf"
DOCKERFILES = [REPO / "Dockerfile", REPO / "Dockerfile.arm64"]
ROLES = ("standalone", "coord", "proxy", "querynode", "datanode", "node")  # every `vecdb <role>` (cli_roles() checks)
CLUSTER_ROLES = ("coord", "proxy", "querynode", "datanode")  # what the compose cluster and the chart run


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML keeps the last of two equal keys; Kubernetes and compose reject or mis-read them."""

    def construct_mapping(self, node, deep=False):
        keys = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            if key in keys:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            keys.add(key)
        return super().construct_mapping(node, deep=deep)


def load_yaml(text: str):
    return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass


def load_yaml_all(text: str) -> list:
    return [d for d in yaml.load_all(text, Loader=_UniqueKeyLoader) if d is not None]  # noqa: S506


_VAR = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")


def interpolate(value, env: dict[str, str] | None = None):
    """Compose's ``${VAR}`` / ``${VAR:-default}`` as `docker compose` resolves them with ``env`` (none: the
    defaults), through lists and mappings; a ``$`` left over fails the test."""
    env = env or {}
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def sub(m: re.Match) -> str:
        if m.group(1) in env:
            return env[m.group(1)]
        assert m.group(2) is not None, f"${{{m.group(1)}}} has no default: compose would leave it empty"
        return m.group(2)

    out = _VAR.sub(sub, value)
    assert "$" not in out, f"unresolved variable in {value!r}"
    return out


def load_compose(path: Path) -> dict:
    doc = interpolate(load_yaml(path.read_text()))
    assert isinstance(doc.get("services"), dict) and doc["services"], f"{path.name}: no services"
    return doc


def compose_env(service: dict) -> dict[str, str]:
    """A service's environment as a dict (compose takes a mapping or a list of NAME=VALUE)."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def parse_dockerfile(path: Path) -> list[dict]:
    """Stages of a Dockerfile: {"name", "image", "platform", "instructions": [(KEYWORD, text)]}."""
    lines, cur = [], ""
    for raw in path.read_text().splitlines():
        if not cur and raw.lstrip().startswith("#"):
            continue
        if raw.rstrip().endswith("\\"):
            cur += raw.rstrip()[:-1] + " "
            continue
        cur += raw
        if cur.strip():
            lines.append(cur.strip())
        cur = ""
    stages: list[dict] = []
    for line in lines:
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            words = rest.split()
            platform = next((w.split("=", 1)[1] for w in words if w.startswith("--platform=")), None)
            words = [w for w in words if not w.startswith("--")]
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append({"name": name, "image": words[0], "platform": platform, "instructions": []})
        else:
            assert stages, f"{path.name}: {keyword} before FROM"
            stages[-1]["instructions"].append((keyword, rest.strip()))
    return stages


def stage_last(stage: dict, keyword: str) -> str:
    found = [text for k, text in stage["instructions"] if k == keyword]
    assert found, f"stage {stage['name']}: no {keyword}"
    return found[-1]


def stage_env(stage: dict) -> dict[str, str]:
    env: dict[str, str] = {}
    for k, text in stage["instructions"]:
        if k == "ENV":
            for item in shlex.split(text):
                key, _, value = item.partition("=")
                env[key] = value
    return env


def healthcheck_code(stage: dict) -> str:
    text = stage_last(stage, "HEALTHCHECK")
    cmd = json.loads(text[text.index("CMD") + 3:].strip())
    assert cmd[:2] == ["python", "-c"], cmd
    return cmd[2]


def image_env() -> dict[str, str]:
    """The VECDB_* variables the image sets (its default target's ENV): every container starts with them."""
    return {k: v for k, v in stage_env(parse_dockerfile(DOCKERFILES[0])[-1]).items() if k.startswith("VECDB_")}


@dataclass
class RoleRun:
    """What ``vecdb <argv>`` would run with: the role, the parsed flags and the settings it would use."""

    role: str
    args: object
    settings: object

    @property
    def listen(self) -> tuple[str, int]:
        """The role's listening host and gRPC port, as cli.py gives them to the role."""
        defaults = {"coord": 19540, "querynode": 21123, "datanode": 21124}
        if self.role in defaults:
            return self.settings.proxy.host, self.args.port if self.args.port is not None else defaults[self.role]
        return self.settings.proxy.host, self.settings.proxy.port


def role_run(argv: list[str], env: dict[str, str]) -> RoleRun:
    """Parse ``vecdb <argv>`` with vecdb's own parser and settings loader in an environment of exactly
    ``env`` (as far as VECDB_* goes); the role is not started. The settings are the ones the role's
    function in cli.py would build (its --http-port rule included)."""
    from vecdb import cli

    seen: dict = {}

    def capture(args) -> int:
        settings = cli._settings(args)
        if args.command == "standalone":
            if args.http_port is not None:
                settings.http.port = args.http_port
        else:
            cli._role_http_port(args, settings)
        seen["run"] = RoleRun(args.command, args, settings)
        return 0

    with pytest.MonkeyPatch.context() as mp:
        for name in ("_standalone", "_coord", "_querynode", "_datanode", "_proxy", "_node"):
            mp.setattr(cli, f"{name}", capture)
        for key in list(os.environ):
            if key.startswith("VECDB_"):
                mp.delenv(key)
        for key in ("OMP_WAIT_POLICY", "OPENBLAS_NUM_THREADS"):  # main() sets these: undone afterwards
            mp.setenv(key, os.environ.get(key, "1" if key == "OPENBLAS_NUM_THREADS" else "PASSIVE"))
        for key, value in env.items():
            mp.setenv(key, value)
        assert cli.main([str(a) for a in argv]) == 0
    assert "run" in seen, f"vecdb {argv} did not reach a role"
    return seen["run"]


def cli_roles() -> set[str]:
    """The roles ``vecdb`` has a command for: its subcommands (from its own ``--help``) but the tools that are
    not a database role: ``cluster`` (starts roles), ``cdc`` (the replication service of docs/cdc.md,
    with its own HTTP API and metadata store) and ``inspect`` (the debug CLI, read-only)."""
    import contextlib
    import io

    from vecdb import cli

    out = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(out):
        for key in ("OMP_WAIT_POLICY", "OPENBLAS_NUM_THREADS"):  # main() sets these: undone afterwards
            mp.setenv(key, os.environ.get(key, "1" if key == "OPENBLAS_NUM_THREADS" else "PASSIVE"))
        with pytest.raises(SystemExit):
            cli.main(["--help"])
    m = re.search(r"\{([\w,-]+)\}", out.getvalue())
    assert m, out.getvalue()
    return set(m.group(1).split(",")) - {"cluster", "cdc", "inspect"}


def env_settings(env: dict[str, str]) -> dict:
    """The VECDB_<SECTION>__<KEY> variables of ``env`` as settings-file sections (as vecdb.config reads them)."""
    data: dict = {}
    for key, value in env.items():
        if key.startswith("VECDB_"):
            assert "__" in key, f"{key}: vecdb reads VECDB_<SECTION>__<KEY>, this one is ignored"
            section, _, name = key[len("VECDB_"):].lower().partition("__")
            data.setdefault(section, {})[name] = value
    return data


def run_python_healthcheck(code: str, timeout: float = 10) -> int:
    """Runs a ``python -c CODE`` health check as the container would; its exit status."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=timeout).returncode
