#!/bin/bash
# The lent GPU machine's one prepared run (issue 16; docs/benchmarks.md "16 cores and a GPU").
#
# That machine (one H200, 16 cores, Python 3.12, CUDA 13, CuPy; nothing can be downloaded there) gets
# vecdb's own dependencies, Milvus 2.3.5 and cuVS as one xz bundle of unpacked wheels, carried in parts
# (the device tool carries 64 MiB a call): `bench/device_run.sh stage N` copies part N to /tmp/parts,
# `bench/device_run.sh all` unpacks them and runs, each step within its own time budget, writing under $OUT:
#   1. the GPU index tests on the real GPU, CuPy and cuVS backends (gpu-tests.log);
#   2. bench.gpu_bench: the GPU indexes at 1M x 128 against CPU HNSW (gpu-1m.json);
#   3. bench.standalone_workers: nq=1 QPS for 1, 2, 4, 8, 16 workers against Milvus 2.3.5 (workers.json).
# The bundle (made on a machine with pip, for cp312 manylinux): the wheels of grpcio, protobuf, pymilvus,
# faiss-cpu, pydantic, orjson, snowballstemmer, milvus==2.3.5 (core.tar.xz), and cuvs-cu13 with
# libcuvs, libraft, librmm, rmm, pylibraft, libkvikio, rapids-logger (cuvs.tar.xz), unzipped into one
# folder each, tarred, xz'd, concatenated and split in five (CORE_BYTES: where cuvs.tar.xz starts).
set -u
CORE_BYTES=${CORE_BYTES:-75492160}
CUVS_BYTES=${CUVS_BYTES:-181297320}
SITE=/tmp/site
OUT=${OUT:-/tmp/device-out}
mkdir -p "$OUT" /tmp/parts
export PYTHONUNBUFFERED=1 OMP_WAIT_POLICY=PASSIVE
T0=$(date +%s)
left() { echo $(( ${BUDGET:-560} - ($(date +%s) - T0) )); }

unpack() {
  [ -f $SITE/.core ] && [ -f $SITE/.cuvs ] && return 0
  cat /tmp/parts/part* > /tmp/bundle || return 1
  head -c "$CORE_BYTES" /tmp/bundle > /tmp/core.tar.xz
  tail -c +"$((CORE_BYTES + 1))" /tmp/bundle > /tmp/cuvs.tar.xz
  mkdir -p $SITE
  for t in core cuvs; do
    [ -f $SITE/.$t ] && continue
    [ "$(stat -c %s /tmp/$t.tar.xz)" -ge "$([ $t = core ] && echo "$CORE_BYTES" || echo "$CUVS_BYTES")" ] || continue
    python3 -c "import sys, tarfile; tarfile.open(sys.argv[1], 'r:xz').extractall(sys.argv[2])" \
      /tmp/$t.tar.xz $SITE && touch $SITE/.$t
  done
}

environment() {
  local sp
  sp=$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  # libcuvs finds CUDA's libraries at $ORIGIN/../../nvidia/... (its wheel's RPATH): the image's own
  [ -e $SITE/nvidia ] || ln -s "$sp/nvidia" $SITE/nvidia
  export LD_LIBRARY_PATH="$(ls -d "$sp"/nvidia/*/lib "$sp"/nvidia/cu13/lib 2>/dev/null | tr '\n' ':')${LD_LIBRARY_PATH:-}"
  export PYTHONPATH="$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}"
}

probe() {
  nvidia-smi -L; nproc; free -g | head -2; python3 -V
  python3 -c "import numpy, grpc, google.protobuf, cupy; print('numpy', numpy.__version__, 'grpc', grpc.__version__, \
'protobuf', google.protobuf.__version__, 'cupy', cupy.__version__)"
  python3 -c "import vecdb.cli, vecdb.proxy.server, faiss, pymilvus; print('vecdb imports; faiss', faiss.__version__, 'pymilvus', pymilvus.__version__)"
  python3 -c "from vecdb.index.gpu_cuvs import cuvs_modules, _import_error; print('cuvs', cuvs_modules() is not None, _import_error)"
}

case "${1:-all}" in
  stage)  # stage N: part N, carried in .dev/partN
    cp ".dev/part$2" /tmp/parts/ && ls -la /tmp/parts ;;
  probe)  # the packages, then a 2-worker vecdb and Milvus 2.3.5 started, written to and stopped
    unpack; environment; probe 2>&1 | tee "$OUT/probe.log"
    timeout 150 python3 -m bench.device_smoke 2>&1 | tee "$OUT/smoke.log" ;;
  all)
    unpack; environment
    probe 2>&1 | tee "$OUT/probe.log"
    echo "=== GPU tests ($(left) s left)"
    for b in cupy auto; do
      VECDB_GPU_BACKEND=$b timeout 90 python3 -m pytest -q -p no:cacheprovider -x \
        tests/unit/test_index_gpu.py tests/unit/test_index_gpu_cuvs.py tests/unit/test_index_gpu_batching.py \
        > "$OUT/gpu-tests-$b.log" 2>&1
      echo "backend $b: rc=$? $(tail -1 "$OUT/gpu-tests-$b.log")"
    done
    echo "=== GPU indexes at 1M ($(left) s left)"
    timeout $(( $(left) - ${WORKERS_S:-250} )) python3 -m bench.gpu_bench --n 1000000 --nq 1000 --threads 32 \
      --seconds 2 --budget $(( $(left) - ${WORKERS_S:-250} - 15 )) --out "$OUT/gpu-1m.json" 2>&1 | tee "$OUT/gpu-1m.log"
    echo "=== workers 1-16 against Milvus 2.3.5 ($(left) s left)"
    timeout $(( $(left) - 5 )) python3 -m bench.standalone_workers --n 100000 --nq 1000 --source synthetic \
      --workers 1,2,4,8,16 --milvus --clients 16 --threads 64 --pin --duration 5 --rounds 1 \
      --budget $(( $(left) - 25 )) --out "$OUT/workers.json" 2>&1 | tee "$OUT/workers.log"
    echo "=== done in $(( $(date +%s) - T0 )) s" ;;
esac
