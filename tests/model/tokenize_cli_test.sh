#!/bin/bash
# //tools:tokenize against llama.cpp: every row of tokenizer_table.tsv, its text written to a
# file byte for byte, through the tool's flags (add_special=0 -> --no-bos, parse_special=0 ->
# --no-special; otherwise the defaults: special tokens recognised, BOS as the model asks), must
# print "ids: <llama.cpp's ids>". stories260K rows always; SmolLM2 rows where the model is found
# ($EMSERVE_MODEL or the default path), else SKIPPED. Also --bos and bad input.
set -u
bin="$TEST_SRCDIR/emserve/tools/tokenize"
table="$TEST_SRCDIR/emserve/tests/model/tokenizer_table.tsv"
ws="$(dirname "$(realpath "$TEST_SRCDIR/emserve/WORKSPACE")")"
stories="${EMSERVE_MODEL:-}"
for d in "$ws" "$ws/.." "$ws/../.." "$ws/../../.."; do   # shared/ beside the checkout or above
    [ -z "$stories" ] && [ -f "$d/shared/models/stories260K.gguf" ] && stories="$d/shared/models/stories260K.gguf"
done
smollm2="${EMSERVE_MODEL:-/var/cache/emserve/models/SmolLM2-135M-Instruct.Q4_1.gguf}"
tmp="${TEST_TMPDIR:-/tmp}/tokenize_cli.$$"
mkdir -p "$tmp"
fail=0
declare -A path=([stories260k]="$stories" [smollm2]="$smollm2")
declare -A checked=([stories260k]=0 [smollm2]=0)
[ -f "$stories" ] || { echo "SKIPPED: stories260K not found"; path[stories260k]=""; }
[ -f "$smollm2" ] || { echo "SKIPPED: SmolLM2 not found (set EMSERVE_MODEL)"; path[smollm2]=""; }
while IFS= read -r line; do
    [[ "$line" == \#* ]] && continue
    # split on tabs, keeping empty fields (0x1f is not white space to read)
    IFS=$'\x1f' read -r model add sp text ids _ <<<"${line//$'\t'/$'\x1f'}"
    m="${path[$model]}"
    [ -n "$m" ] || continue
    printf '%b' "$text" >"$tmp/in"
    flags=()
    [ "$add" = 0 ] && flags+=(--no-bos)
    [ "$sp" = 0 ] && flags+=(--no-special)
    got="$("$bin" --model "$m" --text-file "$tmp/in" "${flags[@]}")"
    want="ids:${ids:+ $ids}"
    if [ "$got" != "$want" ]; then
        echo "$model ${flags[*]} '$text': got '$got' want '$want'"
        fail=1
    fi
    checked[$model]=$((checked[$model] + 1))
done <"$table"
echo "rows checked: stories260k ${checked[stories260k]}, smollm2 ${checked[smollm2]}"
if [ -n "${path[stories260k]}" ]; then
    [ "${checked[stories260k]}" -ge 36 ] || { echo "too few stories260k rows"; fail=1; }
    printf 'Hello world' >"$tmp/in"
    got="$("$bin" --model "$stories" --text-file "$tmp/in" --bos)"
    [ "$got" = "ids: 1 346 306 414 263 304 341" ] || { echo "--bos: '$got'"; fail=1; }
    # common/flags forms: one-letter flags, --flag=value, the environment twin
    got="$(EMSERVE_TOKENIZE_BOS=true "$bin" -m "$stories" --text-file="$tmp/in")"
    [ "$got" = "ids: 1 346 306 414 263 304 341" ] || { echo "-m / env twin: '$got'"; fail=1; }
    if "$bin" -m "$stories" -f "$tmp/in" --bos --no-bos 2>/dev/null; then
        echo "--bos with --no-bos accepted"; fail=1
    fi
    if "$bin" --model "$stories" --text-file "$tmp/missing" 2>"$tmp/err"; then
        echo "missing file accepted"; fail=1
    fi
    grep -q "cannot read" "$tmp/err" || { echo "no message for a missing file"; fail=1; }
    if "$bin" --model "$stories" --text-file "$tmp/in" --bogus 2>/dev/null; then
        echo "unknown option accepted"; fail=1
    fi
fi
if [ -n "${path[smollm2]}" ]; then
    [ "${checked[smollm2]}" -ge 150 ] || { echo "too few smollm2 rows"; fail=1; }
    printf 'hi' >"$tmp/in"
    got="$("$bin" --model "$smollm2" --text-file "$tmp/in" --bos)"
    [ "$got" = "ids: 1 6004" ] || { echo "SmolLM2 --bos: '$got'"; fail=1; }
fi
rm -rf "$tmp"
[ $fail = 0 ] && echo PASS
exit $fail
