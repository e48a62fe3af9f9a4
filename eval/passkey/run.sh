#!/usr/bin/env bash
# Passkey retrieval with emserve's engine on SmolLM2 (full cache by default): a 5-digit key
# hidden at depths 10/50/90 % of N tokens of filler (N = 1K, 2K, 4K, 8K), asked for in one plain
# ChatML user turn ("Answer with the number only"), greedy. Prints one line per prompt and a
# summary; KV flags after "--" are passed to tools:generate (e.g. -- --kv-method ems --kv-budget 256).
# Writes eval/results/passkey_<label>.tsv. Usage: eval/passkey/run.sh [LABEL] [-- KV flags...]
set -euo pipefail
cd "$(dirname "$0")/../.."
LABEL=${1:-full}; shift || true
[ "${1:-}" = "--" ] && shift
SIZES=${PASSKEY_SIZES:-"1024 2048 4096 8000"}
DEPTHS=${PASSKEY_DEPTHS:-"0.1 0.5 0.9"}
THREADS=${PASSKEY_THREADS:-2}
bazel build -c opt //tools:generate //tools:tokenize >&2
BIN=$(bazel info -c opt bazel-bin 2>/dev/null)
OUT=eval/results/passkey_$LABEL.tsv
mkdir -p eval/results
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
printf "tokens\tdepth\tkey\tanswer\tretrieved\n" > "$OUT"
ok=0; total=0; i=0
for n in $SIZES; do
  for d in $DEPTHS; do
    i=$((i + 1))
    key=$(( (i * 7919 + 12345) % 90000 + 10000 ))
    python3 eval/passkey/prompt.py --key "$key" --tokens "$n" --depth "$d" \
      --tokenize "$BIN/tools/tokenize" > "$TMP/p.txt"
    ans=$("$BIN/tools/generate" --prompt-file "$TMP/p.txt" -n 12 --temp 0 --threads "$THREADS" \
      "$@" 2>/dev/null | tail -n +2 | tr '\n' ' ' | sed 's/.*<|im_start|>assistant //')
    got=0; case "$ans" in *"$key"*) got=1 ;; esac
    ok=$((ok + got)); total=$((total + 1))
    printf "%s\t%s\t%s\t%s\t%s\n" "$n" "$d" "$key" "$ans" "$got" >> "$OUT"
    echo ">> $(date +%T) $n tokens, depth $d: key $key, answer '$ans' -> $([ $got = 1 ] && echo RETRIEVED || echo missed)" >&2
  done
done
echo "passkey ($LABEL): $ok of $total retrieved"
