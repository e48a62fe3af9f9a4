#!/usr/bin/env bash
# //eval:longctx --quick end to end on SmolLM2 (CI size: one 300-token passkey prompt, one
# 128-token KL window, 3 methods at B = 64): it must exit 0, write every table, retrieve the
# key with the full cache, and report compressed methods at a fraction of the full bytes; an
# --ems-variant row is added, the full cache holds every key-digit entry, and an invalid
# variant is refused with a message.
# Prints SKIPPED when SmolLM2 is not installed.
set -euo pipefail
BIN=$1
MODEL=${EMSERVE_MODEL:-${EMSERVE_MODEL_DIR:-/var/cache/emserve/models}/SmolLM2-135M-Instruct.Q4_1.gguf}
if [ ! -f "$MODEL" ]; then echo "SKIPPED: SmolLM2 not installed"; exit 0; fi
OUT=${TEST_TMPDIR:-$(mktemp -d)}/longctx
mkdir -p "$OUT"
"$BIN" --quick --model "$MODEL" --out "$OUT" --ems-variant nopool:ems.pool=1 2> "$OUT/log" ||
  { cat "$OUT/log"; exit 1; }
for f in passkey_cases.csv passkey.csv passkey.md kl_windows.csv kl.csv kl.md; do
  [ -s "$OUT/$f" ] || { echo "FAIL: $f missing"; exit 1; }
done
grep -q '^full,0,1,1.0000,' "$OUT/passkey.csv" || { echo "FAIL: full cache missed the key"; cat "$OUT/passkey.csv"; exit 1; }
# compressed rows hold < 40 % of the full bytes (frac_of_full, column 9)
awk -F, 'NR > 2 && $9 >= 0.4 { bad = 1; print "FAIL: " $0 } END { exit bad }' "$OUT/passkey.csv"
[ "$(wc -l < "$OUT/kl.csv")" -eq 5 ] || { echo "FAIL: kl.csv rows"; cat "$OUT/kl.csv"; exit 1; }
# decode-time steps are unpooled by default: EMS and EMS with ems.pool=1 give the same KL
ems_kl=$(awk -F, '$1 == "ems" { print $4 }' "$OUT/kl.csv")
nopool_kl=$(awk -F, '$1 == "ems-nopool" { print $4 }' "$OUT/kl.csv")
[ -n "$ems_kl" ] && [ "$ems_kl" = "$nopool_kl" ] ||
  { echo "FAIL: decode-time KL differs with ems.pool=1"; cat "$OUT/kl.csv"; exit 1; }
# the --ems-variant row, and the key-digit probes: the full cache holds every digit entry
grep -q '^ems-nopool,64,1,' "$OUT/passkey.csv" || { echo "FAIL: no ems-nopool row"; cat "$OUT/passkey.csv"; exit 1; }
awk -F, 'NR > 1 && $5 == "full" && $(NF-2) != "1.0000" { bad = 1; print "FAIL: " $0 } END { exit bad }' \
  "$OUT/passkey_cases.csv"
"$BIN" --quick --model "$MODEL" --out "$OUT" --ems-variant bad:ems.tau=7 2> "$OUT/log2" &&
  { echo "FAIL: an invalid --ems-variant was accepted"; exit 1; }
grep -q "ems-variant" "$OUT/log2" || { echo "FAIL: no message for the invalid variant"; cat "$OUT/log2"; exit 1; }
echo "ok: longctx --quick"
