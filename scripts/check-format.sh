#!/usr/bin/env bash
# Format check: clang-format --dry-run --Werror (the checked-in .clang-format, clang-format 14)
# over every tracked .c .h .cu .cuh .cc .cpp file except third_party/ (generated protobuf-c
# code lives in bazel-bin, not in the tree). Lists the files that would change and how many
# lines; exits 1 if any would. Fix with: scripts/check-format.sh --fix (clang-format -i).
#   scripts/check-format.sh [--fix] [FILE...]   (default: the whole tree)
set -uo pipefail
cd "$(dirname "$0")/.."
CF=${CLANG_FORMAT:-clang-format}
command -v "$CF" >/dev/null || { echo "check-format: $CF not found" >&2; exit 2; }
fix=0
if [ "${1:-}" = --fix ]; then fix=1; shift; fi
if [ $# -gt 0 ]; then
  files=("$@")
else
  mapfile -t files < <(git ls-files -- '*.c' '*.h' '*.cu' '*.cuh' '*.cc' '*.cpp' |
                       grep -v '^third_party/')
fi
if [ "$fix" = 1 ]; then
  "$CF" -i --style=file "${files[@]}"
  exit $?
fi
bad=0
lines=0
for f in "${files[@]}"; do
  if ! "$CF" --dry-run --Werror --style=file "$f" >/dev/null 2>&1; then
    n=$("$CF" --style=file "$f" | diff "$f" - | grep -c '^<')
    echo "$f: $n line(s) would change"
    bad=$((bad + 1))
    lines=$((lines + n))
  fi
done
echo "check-format: ${#files[@]} files, $bad would change ($lines lines)"
[ "$bad" -eq 0 ]
