# vecdb standalone server (linux/amd64). Build: docker build -t vecdb .
# Run:   docker run -p 19530:19530 -p 9091:9091 -v vecdb-data:/var/lib/vecdb vecdb
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    OMP_WAIT_POLICY=PASSIVE
WORKDIR /opt/vecdb
COPY pyproject.toml README.md ./
COPY vecdb ./vecdb
RUN pip install . && useradd --system --home /var/lib/vecdb vecdb \
    && mkdir -p /var/lib/vecdb && chown vecdb /var/lib/vecdb
USER vecdb
VOLUME /var/lib/vecdb
EXPOSE 19530 9091
HEALTHCHECK --interval=10s --timeout=3s CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9091/healthz')"
ENTRYPOINT ["vecdb", "standalone", "--host", "0.0.0.0", "--data-dir", "/var/lib/vecdb"]
