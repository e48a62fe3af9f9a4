#!/usr/bin/env bash
# Error-vocabulary check (issue 9): em_status (common/status.h) is the only way errors travel, so
# no function returns a bare negative integer literal: `return -1;`, `return -2;`,
# `return (-1);`, `return -1 /* why */;`, and no `return x ? 0 : -1;` / `return x ? -1 : 0;`.
# A value that is not an error gets a name (TOK_ID_NONE, an enum) or an out-parameter with a
# found flag. Runs over every tracked .c .h .cu .cuh .cc .cpp file except third_party/ (product
# packages and tests alike). Lists each offending line; exits 1 if any.
#   scripts/check-status-returns.sh [FILE...]   (default: the whole tree)
set -uo pipefail
cd "$(dirname "$0")/.."
if [ $# -gt 0 ]; then
  files=("$@")
else
  mapfile -t files < <(git ls-files -- '*.c' '*.h' '*.cu' '*.cuh' '*.cc' '*.cpp' |
                       grep -v '^third_party/')
fi
literal='\breturn[[:space:]]*\(?[[:space:]]*-[[:space:]]*[0-9]+[[:space:]]*\)?[[:space:]]*(;|/[*/])'
ternary='\breturn\b[^;]*\?[[:space:]]*(0[[:space:]]*:[[:space:]]*-[0-9]+|-[0-9]+[[:space:]]*:[[:space:]]*0)[[:space:]]*;'
hits=$(grep -nHE "$literal|$ternary" -- "${files[@]}" 2>/dev/null)
n=0
[ -n "$hits" ] && n=$(printf '%s\n' "$hits" | wc -l)
[ -n "$hits" ] && printf '%s\n' "$hits"
echo "check-status-returns: ${#files[@]} files, $n bare negative return(s)" \
     "(return an em_status, or name the value)"
[ "$n" -eq 0 ]
