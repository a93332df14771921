#!/bin/bash
# Makes the package bundle bench/device_run.sh carries to the lent GPU machine (Python 3.12, CUDA 13,
# no network there), in parts of at most PART_MB so each fits one device call (64 MiB with the tree):
#   .dev/part0 .. .dev/partN   (git-ignored through .git/info/exclude: echo /.dev/ >> .git/info/exclude)
# The bundle is a plain tar of three xz'd tars of unzipped wheels:
#   core.tar.xz  what vecdb and the benchmarks import that the machine's image lacks or has too old
#                (grpcio, protobuf, pymilvus, faiss-cpu, pydantic, orjson, snowballstemmer, ...) and
#                milvus==2.3.5 (the embedded Milvus the benchmarks compare with)
#   cuvs.tar.xz  cuVS for CUDA 13 and the RAPIDS libraries under it
#   jit.tar.xz   nvJitLink >= 13.3 (libcuvs needs it; the image has 13.0)
# Seen 2026-12-04: 75 + 181 + 33 MB, six parts of 50 MB (2 minutes here); staging took under a second of
# device time a part.
set -eu
PART_MB=${PART_MB:-50}
WORK=${WORK:-/tmp/device-bundle}
DEST=${DEST:-.dev}
PIP=(python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp
     --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64
     --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux_2_12_x86_64
     --platform manylinux2010_x86_64)
CORE=(grpcio==1.85.3 protobuf==7.36.2 pymilvus==3.0.2 faiss-cpu==1.15.1 pydantic==2.14.4 pydantic_core==2.50.5
      annotated-types==0.8.0 typing-inspection==0.4.5 orjson==3.13.0 snowballstemmer==3.1.1
      python-dotenv==1.2.4 cachetools==8.0.2 milvus==2.3.5)
CUVS=(cuvs-cu13==26.10.0 libcuvs-cu13==26.10.0 pylibraft-cu13==26.10.0 libraft-cu13==26.10.0 rmm-cu13==26.10.0
      librmm-cu13==26.10.0 libkvikio-cu13==26.10.0 rapids-logger==0.3.0)
JIT=(nvidia-nvjitlink==13.5.37)

rm -rf "$WORK" && mkdir -p "$WORK/out"
for set in CORE CUVS JIT; do
  name=$(echo $set | tr 'A-Z' 'a-z')
  eval "pkgs=(\"\${${set}[@]}\")"
  mkdir -p "$WORK/$name/wheels" "$WORK/$name/site"
  "${PIP[@]}" -d "$WORK/$name/wheels" "${pkgs[@]}" 2>&1 | grep -v "^WARNING: Location" || true
  for w in "$WORK/$name/wheels"/*.whl; do
    python3 -c "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])" "$w" "$WORK/$name/site"
  done
  # headers and the packages' own test suites are not needed to run
  rm -rf "$WORK/$name/site"/*/include "$WORK/$name/site"/cuvs/tests "$WORK/$name/site"/pylibraft/tests
  tar cf - -C "$WORK/$name/site" . | xz -6 -T0 > "$WORK/out/$name.tar.xz"
done
tar cf "$WORK/bundle.tar" -C "$WORK/out" core.tar.xz cuvs.tar.xz jit.tar.xz
mkdir -p "$DEST" && rm -f "$DEST"/part*
split -b "${PART_MB}M" -d -a 1 "$WORK/bundle.tar" "$DEST/part"
ls -la "$WORK/out" "$DEST"/part*
