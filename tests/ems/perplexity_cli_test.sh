#!/bin/bash
# //tools:perplexity command-line contract: last line "ppl: <value>", the same value for a
# budget larger than the text as for the full cache, a finite value with compression, and a
# non-zero exit with a message for an unknown method or parameter. Skipped (loudly) without
# the model.
set -u
bin="$TEST_SRCDIR/emserve/tools/perplexity"
ws="$(dirname "$(realpath "$TEST_SRCDIR/emserve/WORKSPACE")")"
model="${EMSERVE_TEST_MODEL:-$ws/../shared/models/stories260K.gguf}"
text="$ws/../shared/data/tinystories_sample.txt"
if [ ! -f "$model" ] || [ ! -f "$text" ]; then
    echo "SKIPPED: model or text not found"
    exit 0
fi
fail=0
last() { "$bin" --model "$model" --text-file "$text" --max-tokens 300 --quiet "$@" | tail -n 1; }
full="$(last)"
big="$(last --kv-method ems --kv-budget 1000)"
small="$(last --kv-method ems --kv-budget 16 --kv-quant int4 --kv-param ems.tau=0.5)"
echo "full: $full | ems B=1000: $big | ems B=16 int4: $small"
[[ "$full" =~ ^ppl:\ [0-9]+\.[0-9]+$ ]] || { echo "bad last line '$full'"; fail=1; }
[[ "$small" =~ ^ppl:\ [0-9]+\.[0-9]+$ ]] || { echo "bad last line '$small'"; fail=1; }
[ "$full" = "$big" ] || { echo "budget above the text length changed the result"; fail=1; }
[ "$full" != "$small" ] || { echo "compression changed nothing"; fail=1; }
if "$bin" --model "$model" --text-file "$text" --kv-method bogus 2>/tmp/err.$$; then
    echo "unknown method accepted"; fail=1
fi
grep -q "method" /tmp/err.$$ || { echo "no message for the unknown method"; fail=1; }
if "$bin" --model "$model" --text-file "$text" --kv-param nope=1 2>/tmp/err.$$; then
    echo "unknown parameter accepted"; fail=1
fi
grep -q "nope" /tmp/err.$$ || { echo "message does not name the parameter"; fail=1; }
"$bin" --help | grep -q "ems.tau" || { echo "--help lacks the parameters"; fail=1; }
rm -f /tmp/err.$$
[ $fail = 0 ] && echo PASS
exit $fail
