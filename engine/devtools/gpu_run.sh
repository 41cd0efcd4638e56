#!/usr/bin/env bash
# One prepared run on a CUDA machine (the workplace's H200, which has torch but no GDAL): the GPU bench goals
# (python -m engine bench --only gpu, blending on the GPU and on the host), then the engine's CUDA tests.
# Every step has its own time limit; logs and reports go to $OUT (default /tmp/satgen-gpu).
#
# Here, once (the tree that travels is limited to 64 MiB: wheels 24 MiB, the repository 36, this crop 3):
#   bash ../shared/tools/gpu-wheels.sh            # rasterio (with its GDAL), shapely, ... into .whl
#   make gpu-prep                                 # data/gpu/s2_virginia_768.tif
# There (device tool): command "bash engine/devtools/gpu_run.sh", carry [".whl", "data/gpu"], timeout 540 s.
set -uo pipefail
OUT=${OUT:-/tmp/satgen-gpu}
mkdir -p "$OUT"
PY=${PY:-python3}  # a smoke run of this script here: PY=.venv/bin/python BENCH_ARGS="--quick --device cpu"
if ! "$PY" -c "import rasterio" 2>/dev/null; then  # the GPU machine: GDAL and friends from the carried wheels
    timeout -k 5 60 "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        .whl/*.whl > "$OUT/install.log" 2>&1 || { echo "installing the wheels failed"; cat "$OUT/install.log"; exit 1; }
    export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
INPUT=${INPUT:-data/gpu/s2_virginia_768.tif}
{ timeout -k 5 20 nvidia-smi -L || true; nproc; timeout -k 5 60 "$PY" -c "import torch, rasterio; print(torch.__version__, rasterio.__gdal_version__)"; } \
    > "$OUT/machine.txt" 2>&1
cat "$OUT/machine.txt"
echo "== GPU bench (blending on the GPU, then on the host)"
timeout -k 5 330 "$PY" -W ignore -m engine bench --only gpu --batch-size "${BATCH:-16}" --input "$INPUT" \
    --work /tmp/satgen-bench --out "$OUT/bench_gpu.json" ${BENCH_ARGS:-} > "$OUT/bench.log" 2>&1
bench=$?; echo "bench rc=$bench"; tail -8 "$OUT/bench.log"
echo "== CUDA tests"
timeout -k 5 120 "$PY" -m pytest -p no:cacheprovider -p no:qgis -q -x tests/engine/test_blending.py \
    tests/engine/test_parallel.py tests/engine/test_pipeline.py > "$OUT/tests.log" 2>&1
tests=$?; echo "tests rc=$tests"; tail -3 "$OUT/tests.log"
exit $(( tests ? tests : bench ))
