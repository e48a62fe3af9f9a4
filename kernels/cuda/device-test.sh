#!/usr/bin/env bash
# Builds and runs the GPU path without Bazel (the GPU machine has nvcc, gcc, CMake, ninja and
# python's nvidia-nccl-cu13 wheel, but no Bazel, gRPC or internet): the CUDA kernels, their CPU
# references, the test harnesses and the decode benchmark, compiled with nvcc + gcc alone.
# Without a device every program prints "skipped: no CUDA device" and the script passes.
#
# Usage: kernels/cuda/device-test.sh [--build-only] [--no-bench] [--bench-args "..."]
# Env:   BUILD_DIR (default out/cuda), NVCC, CUDA_HOME, CUDA_ARCH (e.g. "90"; default 80+90),
#        NCCL_HOME (dir with include/nccl.h and lib/libnccl.so*), EMSERVE_MODEL, JOBS,
#        BENCH_OUT (default $BUILD_DIR/bench; $OUT/bench when $OUT is set).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
BUILD_ONLY=0 NO_BENCH=0 BENCH_ARGS=""
while [ $# -gt 0 ]; do
    case "$1" in
        --build-only) BUILD_ONLY=1 ;;
        --no-bench) NO_BENCH=1 ;;
        --bench-args) BENCH_ARGS="$2"; shift ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
    shift
done

B=${BUILD_DIR:-out/cuda}  # /out/ is git-ignored
NVCC=${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
CUDA_HOME=${CUDA_HOME:-$(cd "$(dirname "$NVCC")/.." && pwd)}
CUDA_LIB=$CUDA_HOME/lib64
[ -d "$CUDA_LIB" ] || CUDA_LIB=$CUDA_HOME/lib
JOBS=${JOBS:-$(nproc)}
if [ -n "${CUDA_ARCH:-}" ]; then
    GENCODE="-gencode arch=compute_${CUDA_ARCH},code=[sm_${CUDA_ARCH},compute_${CUDA_ARCH}]"
else
    GENCODE="-gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=[sm_90,compute_90]"
fi

# NCCL: the toolkit's copy, else the nvidia-nccl-cu13 wheel (its lib has only libnccl.so.2).
if [ -z "${NCCL_HOME:-}" ]; then
    if [ -f "$CUDA_HOME/include/nccl.h" ]; then
        NCCL_HOME=$CUDA_HOME
    else
        NCCL_HOME=$(python3 -c 'import nvidia.nccl as m; print(list(m.__path__)[0])' 2>/dev/null || true)
    fi
fi
NCCL_INC="" NCCL_LINK=""
if [ -n "${NCCL_HOME:-}" ] && [ -f "$NCCL_HOME/include/nccl.h" ]; then
    NCCL_INC="-I$NCCL_HOME/include"
    for d in "$NCCL_HOME/lib64" "$NCCL_HOME/lib"; do
        so=$(ls "$d"/libnccl.so* 2>/dev/null | head -1 || true)
        if [ -n "$so" ]; then NCCL_LINK="$so -Wl,-rpath,$d"; break; fi
    done
fi
[ -n "$NCCL_LINK" ] || echo "warning: NCCL not found (set NCCL_HOME); coll_nccl_test is not built" >&2

CFLAGS="-std=gnu11 -O2 -Wall -Wextra -Wno-unused-parameter -I. -I$CUDA_HOME/include"
NVFLAGS="-O2 -std=c++17 -Xcompiler -fPIC $GENCODE -I. $NCCL_INC"
mkdir -p "$B"

# ---- sources (keep in sync with kernels/cuda/BUILD, tests/cuda/BUILD, coll/BUILD) ----
CU_KERNELS="kernels/cuda/add.cu kernels/cuda/attn.cu kernels/cuda/cuda_ctx.cu kernels/cuda/embed.cu
    kernels/cuda/ems_select.cu kernels/cuda/ems_step.cu kernels/cuda/kern_cuda.cu kernels/cuda/kvquant.cu kernels/cuda/matmul.cu
    kernels/cuda/matmul_q.cu kernels/cuda/rmsnorm.cu kernels/cuda/rope.cu kernels/cuda/sample.cu kernels/cuda/swiglu.cu"
# The kernel package's C sources whole (argument checks, references), so a new file there never
# breaks this list again.
C_BASE="common/log.c common/status.c $(ls kernels/*.c kernels/ref/*.c | tr '\n' ' ')
    kernels/cuda/ems_step_ref.c kernels/cuda/kvquant_ref.c"
C_OPS_TEST="tests/cuda/cuda_ops_test.c tests/cuda/cases_attn.c tests/cuda/cases_dense.c
    tests/cuda/cases_ems.c tests/cuda/cases_ops.c tests/cuda/harness.c tests/cuda/harness_dev.c
    tests/cuda/perf.c tests/cuda/qcheck.c"
C_REF_TEST="tests/cuda/cuda_ref_test.c tests/cuda/harness.c"
C_NCCL_TEST="tests/cuda/coll_nccl_test.c tests/cuda/harness.c tests/cuda/harness_dev.c"
# End-to-end golden on stories260K through the CUDA kern_ops: model loader + the forward harness.
# The model package whole (the loader, its type table and load-time checks; the tokenizer
# files are not linked by the golden test but compile the same way), so new files never break
# this list again; scripts/test.sh runs --build-only in CI.
C_GOLDEN="tests/cuda/cuda_golden_test.c tests/testutil/goldens.c
    $(ls model/*.c | tr '\n' ' ')"

obj() { echo "$B/$(echo "$1" | tr / _).o"; }
compile() { # file -> object (skipped when the object is newer than the file and every header)
    local src=$1 o; o=$(obj "$1")
    if [ -f "$o" ] && [ "$o" -nt "$src" ] && [ -z "$(find kernels common coll tests/cuda model -name '*.h' -newer "$o" -o -name '*.cuh' -newer "$o" | head -1)" ]; then
        return 0
    fi
    case "$src" in
        *.cu) "$NVCC" $NVFLAGS -c "$src" -o "$o" ;;
        *.c) gcc $CFLAGS -c "$src" -o "$o" ;;
    esac
}
export -f compile obj
export B NVCC NVFLAGS CFLAGS

C_BENCH="bench/gpu_decode_bench_main.c bench/gpu_decode_bench.cu"
ALL="$CU_KERNELS $C_BASE $C_OPS_TEST $C_REF_TEST $C_NCCL_TEST $C_GOLDEN $C_BENCH"
[ -n "$NCCL_LINK" ] && ALL="$ALL coll/coll_nccl.cu"
echo "== compiling with $NVCC ($("$NVCC" --version | tail -1)), $JOBS jobs"
echo $ALL | tr ' ' '\n' | sort -u | grep . | xargs -P "$JOBS" -I{} bash -c 'compile {}'

objs() { for f in "$@"; do obj "$f"; done; }
LIBS="-L$CUDA_LIB -Wl,-rpath,$CUDA_LIB -lcudart -lcublas -lm -lpthread"
link() { # out, sources...
    local out=$1; shift
    g++ -o "$B/$out" $(objs "$@") $LIBS
}
echo "== linking"
link cuda_ref_test $C_REF_TEST $C_BASE
link cuda_ops_test $C_OPS_TEST $C_BASE $CU_KERNELS
link cuda_golden_test $C_GOLDEN $C_BASE $CU_KERNELS
link gpu_decode_bench $C_BENCH $C_BASE $CU_KERNELS
if [ -n "$NCCL_LINK" ]; then
    g++ -o "$B/coll_nccl_test" $(objs $C_NCCL_TEST coll/coll_nccl.cu $C_BASE $CU_KERNELS) $NCCL_LINK $LIBS
fi
[ "$BUILD_ONLY" = 1 ] && { echo "== built into $B"; exit 0; }

if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
fi
FAIL=0
run() { echo "== $*"; "$@" || { echo "FAILED: $*"; FAIL=1; }; }
run "$B/cuda_ref_test"
echo "== $B/cuda_ops_test"
"$B/cuda_ops_test" >"$B/cuda_ops_test.log" 2>&1 || { echo "FAILED: cuda_ops_test"; FAIL=1; }
cat "$B/cuda_ops_test.log"
# A GPU that nvidia-smi lists but the CUDA 13 runtime cannot use (driver too old, no device
# node in the container) would make every test "skip" and pass: treat that as a failure.
if grep -q "skipped: no CUDA device" "$B/cuda_ops_test.log" && nvidia-smi -L 2>/dev/null | grep -q GPU; then
    echo "FAILED: nvidia-smi lists a GPU but the CUDA runtime sees none (driver too old for CUDA 13?)"
    FAIL=1
fi
[ -n "$NCCL_LINK" ] && run "$B/coll_nccl_test"
[ "$NO_BENCH" = 0 ] && run "$B/cuda_ops_test" --perf
MODEL=${EMSERVE_MODEL:-$ROOT/../shared/models/stories260K.gguf}
run "$B/cuda_golden_test" "$MODEL"
if [ "$NO_BENCH" = 0 ]; then
    BO=${BENCH_OUT:-${OUT:+$OUT/bench}}
    BO=${BO:-$B/bench}
    mkdir -p "$BO"
    # shellcheck disable=SC2086
    run "$B/gpu_decode_bench" --out "$BO" $BENCH_ARGS
    if [ -f "$BO/gpu_decode.csv" ]; then
        if command -v gnuplot >/dev/null 2>&1 && gnuplot "$BO/gpu_decode.gp" 2>/dev/null; then
            echo "plot: $BO/gpu_decode.png (gnuplot)"
        elif python3 "$BO/gpu_decode_plot.py" 2>/dev/null; then
            echo "plot: $BO/gpu_decode.png (matplotlib)"
        else
            echo "no gnuplot (pngcairo) or matplotlib here: CSV only ($BO/gpu_decode.csv)"
        fi
    fi
fi
[ "$FAIL" = 0 ] && echo "== device-test: all passed" || echo "== device-test: FAILURES"
exit $FAIL
