#!/usr/bin/env bash
# The project's test command (the README's and CI's):
#   1. bazel test //...                      (every test, optimised build)
#   2. bazel test --config=asan_ubsan //...  (the whole suite under ASan + UBSan, but the
#      tests tagged smollm2: a 135M-parameter model under ASan takes minutes; its kernels are
#      covered by //tests/kernels there)
#   2b. bazel test --config=tsan //tests/service/... (ThreadSanitizer; tests/tsan.supp)
#   3. bazel build --config=cuda //...       (every .cu compiles and links; skipped without nvcc)
#      kernels/cuda/device-test.sh --build-only (the GPU machine's Bazel-free build)
#      bazel test --config=cuda //tests/cuda/... (CUDA-vs-CPU tests: "skipped: no CUDA device"
#                                                 and pass on a machine without a GPU)
#   4. scripts/check-format.sh, scripts/check-manifests.sh (deploy/: Kubernetes schemas,
#      hadolint, systemd exposure, sandbox trace, the image's runtime stage),
#      scripts/check-deps.sh, scripts/check-status-returns.sh: one count each
#   5. fuzz/run.sh --seconds $FUZZ_SECONDS (default 20): every libFuzzer target (clang, ASan +
#      UBSan) for that long from its committed corpus; each target counts as a test (passed,
#      failed, or skipped without its model); a failed build counts as one failure
#      (EMSERVE_SKIP_FUZZ=1 skips the stage; the //fuzz:*_replay tests of steps 1 and 2 replay
#      the corpora anyway)
# Prints one final line "N passed, M failed, K skipped". A test that passed but printed a line
# starting with "SKIPPED" (any case: the test model or a GPU is absent) counts as skipped, not
# passed; tests print such a line only when they ran nothing (tests/testutil tu_model_path).
set -uo pipefail
cd "$(dirname "$0")/.."
LOG=$(mktemp -d)/bazel
total_pass=0
total_fail=0
total_skip=0
rc_all=0

# Passed tests of the last bazel invocation whose test.log says they skipped (its
# bazel-testlogs is that invocation's configuration).
count_skipped() { # $1 = log file
  local t dir k=0
  for t in $(grep -oE '^//[^ ]+ +(\(cached\) )?PASSED' "$1" | awk '{print $1}'); do
    dir=${t#//}
    dir=${dir/://}
    if grep -qiE '^skipped' "bazel-testlogs/$dir/test.log" 2>/dev/null; then
      k=$((k + 1))
      echo "   skipped: $t ($(grep -iE '^skipped' "bazel-testlogs/$dir/test.log" | head -1))" >&2
    fi
  done
  echo "$k"
}

count() { # $1 = log file
  local p f k
  p=$(grep -cE '^//[^ ]+ +(\(cached\) )?PASSED' "$1")
  f=$(grep -cE '^//[^ ]+ +(\(cached\) )?(FAILED|TIMEOUT|NO STATUS|INCOMPLETE|FLAKY|FAILED TO BUILD)' "$1")
  k=$(count_skipped "$1")
  p=$((p - k))
  total_pass=$((total_pass + p))
  total_fail=$((total_fail + f))
  total_skip=$((total_skip + k))
  echo "   -> $p passed, $f failed, $k skipped"
}

echo "== bazel test //... =="
bazel test --config=ci //... 2>&1 | tee "$LOG.1"
rc=${PIPESTATUS[0]}; [ "$rc" -eq 0 ] || rc_all=$rc
count "$LOG.1"
if [ "$rc" -ne 0 ] && [ "$rc" -ne 3 ]; then total_fail=$((total_fail + 1)); echo "   -> build failed (rc $rc)"; fi

if [ "${EMSERVE_SKIP_SANITIZERS:-0}" != 1 ]; then
  echo "== bazel test --config=asan_ubsan //... =="
  bazel test --config=ci --config=asan_ubsan --test_tag_filters=-smollm2 //... 2>&1 | tee "$LOG.2"
  rc=${PIPESTATUS[0]}; [ "$rc" -eq 0 ] || rc_all=$rc
  count "$LOG.2"
  if [ "$rc" -ne 0 ] && [ "$rc" -ne 3 ]; then total_fail=$((total_fail + 1)); echo "   -> build failed (rc $rc)"; fi
fi

if [ "${EMSERVE_SKIP_SANITIZERS:-0}" != 1 ]; then
  # ThreadSanitizer over the multi-threaded parts: the service (coordinator threads, workers,
  # gloo) and the engine's tensor-parallel test. gRPC, gloo and protobuf-c are not built with
  # TSan; tests/tsan.supp silences only reports whose stacks reach those libraries.
  echo "== bazel test --config=tsan //tests/service/... tp_equivalence_test =="
  bazel test --config=ci --config=tsan --test_tag_filters=-smollm2,-no_tsan \
    --test_env=TSAN_OPTIONS="suppressions=$PWD/tests/tsan.supp second_deadlock_stack=1" \
    //tests/service/... //tests/engine:tp_equivalence_test 2>&1 | tee "$LOG.5"
  rc=${PIPESTATUS[0]}; [ "$rc" -eq 0 ] || rc_all=$rc
  count "$LOG.5"
  if grep -q "WARNING: ThreadSanitizer" bazel-testlogs/tests/service/*/test.log \
      bazel-testlogs/tests/engine/tp_equivalence_test/test.log 2>/dev/null; then
    total_fail=$((total_fail + 1)); rc_all=1
    echo "   -> ThreadSanitizer reports:"; grep -l "WARNING: ThreadSanitizer" bazel-testlogs/tests/*/*/test.log
  fi
fi

echo "== scripts/check-format.sh (clang-format --dry-run --Werror, house .clang-format) =="
if bash scripts/check-format.sh; then
  total_pass=$((total_pass + 1))
else
  total_fail=$((total_fail + 1)); rc_all=1; echo "   -> format check FAILED (fix: scripts/check-format.sh --fix)"
fi

echo "== scripts/check-manifests.sh (k8s schemas, hadolint, systemd exposure < 5, sandbox trace) =="
if bash scripts/check-manifests.sh; then
  total_pass=$((total_pass + 1))
else
  total_fail=$((total_fail + 1)); rc_all=1; echo "   -> deployment check FAILED"
fi

echo "== scripts/check-deps.sh (package graph: no cycle, no upward edge) =="
if bash scripts/check-deps.sh; then
  total_pass=$((total_pass + 1))
else
  total_fail=$((total_fail + 1)); rc_all=1; echo "   -> package graph check FAILED"
fi

echo "== scripts/check-status-returns.sh (no bare -1/-2 returns: em_status or a named value) =="
if bash scripts/check-status-returns.sh; then
  total_pass=$((total_pass + 1))
else
  total_fail=$((total_fail + 1)); rc_all=1; echo "   -> status-return check FAILED"
fi

if [ "${EMSERVE_SKIP_FUZZ:-0}" != 1 ]; then
  echo "== fuzz/run.sh --seconds ${FUZZ_SECONDS:-20} (libFuzzer, clang, ASan + UBSan) =="
  bash fuzz/run.sh --seconds "${FUZZ_SECONDS:-20}" 2>&1 | tee "$LOG.7"
  rc=${PIPESTATUS[0]}
  p=0 f=0 k=0
  line=$(grep -E '^fuzz: [0-9]+ passed, [0-9]+ failed, [0-9]+ skipped' "$LOG.7" | tail -1)
  read -r p f k < <(echo "$line" | grep -oE '[0-9]+' | tr '\n' ' ')
  total_pass=$((total_pass + ${p:-0})); total_skip=$((total_skip + ${k:-0}))
  total_fail=$((total_fail + ${f:-0}))
  if [ "$rc" -ne 0 ]; then
    rc_all=1
    [ "${f:-0}" -gt 0 ] || total_fail=$((total_fail + 1))
    echo "   -> fuzzing FAILED (inputs in .fuzz-build/artifacts/)"
  fi
fi

if [ -x /usr/local/cuda/bin/nvcc ]; then
  echo "== bazel build --config=cuda //... =="
  bazel build --config=ci --config=cuda //... > "$LOG.3" 2>&1
  rc=$?
  tail -20 "$LOG.3"
  if [ "$rc" -eq 0 ]; then
    total_pass=$((total_pass + 1)); echo "   -> cuda build passed"
    echo "== bazel test --config=cuda //tests/cuda/... =="
    bazel test --config=ci --config=cuda //tests/cuda/... 2>&1 | tee "$LOG.4"
    rc=${PIPESTATUS[0]}; [ "$rc" -eq 0 ] || rc_all=$rc
    count "$LOG.4"
  else
    total_fail=$((total_fail + 1)); rc_all=1; echo "   -> cuda build FAILED"
  fi
  # The GPU machine has no Bazel: its script must keep building (nvcc + gcc alone).
  echo "== kernels/cuda/device-test.sh --build-only =="
  if BUILD_DIR="$(mktemp -d)" CUDA_ARCH=90 bash kernels/cuda/device-test.sh --build-only > "$LOG.6" 2>&1; then
    total_pass=$((total_pass + 1)); echo "   -> device script build passed"
  else
    tail -20 "$LOG.6"; total_fail=$((total_fail + 1)); rc_all=1; echo "   -> device script build FAILED"
  fi
else
  echo "== no /usr/local/cuda/bin/nvcc: CUDA build skipped =="
fi

bazel shutdown >/dev/null 2>&1 || true
echo "$total_pass passed, $total_fail failed, $total_skip skipped"
[ "$total_fail" -eq 0 ] && [ "$rc_all" -eq 0 ]
