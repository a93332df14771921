# vecdb: one image for every role; its command picks the role (linux/amd64; Dockerfile.arm64 for Arm).
#   docker build -t vecdb .                       the CPU image (the last stage, the default target)
#   docker build --target gpu -t vecdb:gpu .      GPU indexes: CUDA 12 runtime + the `gpu` extra (CuPy)
#   docker run -p 19530:19530 -p 9091:9091 -v vecdb-data:/var/lib/vecdb vecdb        standalone
#   docker run vecdb coord --meta-store etcd://etcd:2379                              any role:
#     vecdb standalone|coord|proxy|querynode|datanode|node, with its flags. docs/deploy.md
# Every role listens on 0.0.0.0 (VECDB_PROXY__HOST: the listen address of whichever role runs) and serves
# /healthz and /metrics on VECDB_HTTP__PORT (9091), which the HEALTHCHECK asks; data under /var/lib/vecdb.

FROM nvidia/cuda:12.6.3-runtime-ubuntu24.04 AS gpu
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 OMP_WAIT_POLICY=PASSIVE \
    VECDB_PROXY__HOST=0.0.0.0 VECDB_HTTP__PORT=9091 VECDB_STORAGE__DATA_DIR=/var/lib/vecdb \
    PATH=/opt/venv/bin:$PATH
WORKDIR /opt/vecdb
# Ubuntu's python3 (3.12) in a virtualenv (PEP 668 forbids pip on the system one). Not pinned to
# Debian/Ubuntu package versions: the base image's tag fixes the release, its security updates apply.
# hadolint ignore=DL3008
RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/* && python3 -m venv /opt/venv
COPY pyproject.toml README.md ./
COPY vecdb ./vecdb
RUN pip install "./[gpu,lindera]" && useradd --system --uid 10001 --user-group --home /var/lib/vecdb vecdb \
    && mkdir -p /var/lib/vecdb && chown vecdb /var/lib/vecdb
USER 10001:10001
VOLUME /var/lib/vecdb
EXPOSE 19530 9091
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('VECDB_HTTP__PORT', '9091'), timeout=2)"]
ENTRYPOINT ["vecdb"]
CMD ["standalone"]

FROM python:3.11.11-slim-bookworm AS cpu
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 OMP_WAIT_POLICY=PASSIVE \
    VECDB_PROXY__HOST=0.0.0.0 VECDB_HTTP__PORT=9091 VECDB_STORAGE__DATA_DIR=/var/lib/vecdb
WORKDIR /opt/vecdb
COPY pyproject.toml README.md ./
COPY vecdb ./vecdb
RUN pip install "./[lindera]" && useradd --system --uid 10001 --user-group --home /var/lib/vecdb vecdb \
    && mkdir -p /var/lib/vecdb && chown vecdb /var/lib/vecdb
USER 10001:10001
VOLUME /var/lib/vecdb
EXPOSE 19530 9091
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('VECDB_HTTP__PORT', '9091'), timeout=2)"]
ENTRYPOINT ["vecdb"]
CMD ["standalone"]
