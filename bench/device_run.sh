#!/bin/bash
# The lent GPU machine's one prepared run (issue 16; docs/benchmarks.md "16 cores and a GPU").
#
# That machine (one H200, 16 cores, Python 3.12, CUDA 13, CuPy; nothing can be downloaded there) gets
# vecdb's own dependencies, Milvus 2.3.5 and cuVS as a bundle of unpacked wheels made here by
# bench/device_bundle.sh and carried in parts (the device tool carries 64 MiB a call):
# `bench/device_run.sh stage N` (carry .dev/partN) copies part N to /tmp/parts; `bench/device_run.sh probe`
# unpacks what has arrived and checks vecdb and Milvus start; `bench/device_run.sh all` runs, each step
# within its own time budget (BUDGET seconds in all), writing under $OUT:
#   1. the GPU index tests on the real GPU, CuPy and cuVS backends (gpu-tests-*.log);
#   2. bench.gpu_bench: the GPU indexes at 1M x 128 against CPU HNSW (gpu-1m.json);
#   3. bench.standalone_workers: nq=1 QPS for 1, 2, 4, 8, 16 workers against Milvus 2.3.5 (workers.json).
# Learned on 2026-12-04: stage every part in calls one right after the other (a machine idle for 30 s
# is given back, and a fresh one has nothing); libcuvs needs its own lib64 folders on LD_LIBRARY_PATH
# and nvJitLink >= 13.3 loaded first (the image's is 13.0: "undefined symbol __nvJitLinkCreate_13_3").
set -u
SITE=/tmp/site
JIT=/tmp/jit
OUT=${OUT:-/tmp/device-out}
mkdir -p "$OUT" /tmp/parts
export PYTHONUNBUFFERED=1 OMP_WAIT_POLICY=PASSIVE
T0=$(date +%s)
left() { echo $(( ${BUDGET:-560} - ($(date +%s) - T0) )); }

untar() {  # untar FILE DIR (the machine's Python, whatever tar it has)
  mkdir -p "$2" && python3 -c "import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])" "$1" "$2"
}

unpack() {
  [ -f $SITE/.core ] && [ -f $SITE/.cuvs ] && [ -f $JIT/.jit ] && return 0
  mkdir -p /tmp/bundle && cat /tmp/parts/part* > /tmp/bundle.tar || return 1
  # a bundle not all staged yet: take the inner files that arrived whole
  python3 - <<'EOF'
import tarfile
try:
    with tarfile.open("/tmp/bundle.tar") as t:
        for m in t:
            try:
                t.extract(m, "/tmp/bundle")
            except Exception as e:
                print("partial bundle:", m.name, e)
except Exception as e:
    print("partial bundle:", e)
EOF
  for t in core cuvs; do
    [ -f $SITE/.$t ] || { untar /tmp/bundle/$t.tar.xz $SITE 2>/dev/null && touch $SITE/.$t; }
  done
  [ -f $JIT/.jit ] || { untar /tmp/bundle/jit.tar.xz $JIT 2>/dev/null && touch $JIT/.jit; }
  ls -a $SITE/.core $SITE/.cuvs $JIT/.jit 2>&1 | tr '\n' ' '; echo
}

environment() {
  local sp
  sp=$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  # libcuvs finds CUDA's libraries at $ORIGIN/../../nvidia/... (its wheel's RPATH): the image's own
  [ -e $SITE/nvidia ] || ln -s "$sp/nvidia" $SITE/nvidia
  export LD_LIBRARY_PATH="$(ls -d $JIT/nvidia/cu13/lib $SITE/*/lib64 "$sp"/nvidia/*/lib "$sp"/nvidia/cu13/lib 2>/dev/null | tr '\n' ':')${LD_LIBRARY_PATH:-}"
  export PYTHONPATH="$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}"
}

gpu() {  # a GPU step: the newer nvJitLink loaded before the image's (libcuvs's RPATH would find that one)
  LD_PRELOAD="$(ls $JIT/nvidia/cu13/lib/libnvJitLink.so.13 2>/dev/null)" "$@"
}

probe() {
  nvidia-smi -L; nproc; free -g | head -2; python3 -V
  python3 -c "import numpy, grpc, google.protobuf, cupy; print('numpy', numpy.__version__, 'grpc', grpc.__version__, \
'protobuf', google.protobuf.__version__, 'cupy', cupy.__version__)"
  python3 -c "import vecdb.cli, vecdb.proxy.server, faiss, pymilvus; print('vecdb imports; faiss', faiss.__version__, 'pymilvus', pymilvus.__version__)"
  gpu python3 -c "from vecdb.index.gpu_cuvs import cuvs_modules, _import_error; print('cuvs', cuvs_modules() is not None, _import_error)"
  lscpu | grep -E "^(Model name|Thread|Core|Socket|CPU\(s\))"
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
      VECDB_GPU_BACKEND=$b gpu timeout 90 python3 -m pytest -q -p no:cacheprovider -x \
        tests/unit/test_index_gpu.py tests/unit/test_index_gpu_cuvs.py tests/unit/test_index_gpu_batching.py \
        > "$OUT/gpu-tests-$b.log" 2>&1
      echo "backend $b: rc=$? $(grep -E "passed|failed|error" "$OUT/gpu-tests-$b.log" | tail -1)"
    done
    echo "=== GPU indexes at 1M ($(left) s left)"
    gpu timeout $(( $(left) - ${WORKERS_S:-250} )) python3 -m bench.gpu_bench --n 1000000 --nq 1000 --threads 32 \
      --seconds 2 --budget $(( $(left) - ${WORKERS_S:-250} - 15 )) --out "$OUT/gpu-1m.json" 2>&1 | tee "$OUT/gpu-1m.log"
    echo "=== workers 1-16 against Milvus 2.3.5 ($(left) s left)"
    timeout $(( $(left) - 5 )) python3 -m bench.standalone_workers --n 100000 --nq 1000 --source synthetic \
      --workers 1,2,4,8,16 --milvus --clients 16 --threads 64 --pin --duration 5 --rounds 1 \
      --budget $(( $(left) - 25 )) --out "$OUT/workers.json" 2>&1 | tee "$OUT/workers.log"
    echo "=== done in $(( $(date +%s) - T0 )) s" ;;
esac
