#!/usr/bin/env bash
# //eval:longctx --quick end to end on SmolLM2 (CI size: one 300-token passkey prompt, one
# 128-token KL window, 3 methods at B = 64): it must exit 0, write every table, retrieve the
# key with the full cache, and report compressed methods at a fraction of the full bytes; an
# --ems-variant row is added, the full cache holds every key-digit entry, and an invalid
# variant is refused with a message.
# Then --quick --task needle --match-bytes (one 320-token needle prompt in GPL-3): tables, grid
# and heat maps written, every method within 5 % of EMS's bytes or flagged; the needle cases
# carry the CPU-time column and leave the key probes empty. Then a --variant of H2O with
# --ref h2o.
# Then --task kl-long on GPL-3 (prompts of 256 and 384 tokens, 32 scored tokens): tables and
# plot written; the full cache is its own reference (KL 0) and its perplexity is finite; at
# B = 64 the compressed rows diverge (KL > 0) holding less than the full bytes; with a budget
# above the text (nothing to compress) every method's logits equal the full cache's (KL 0:
# the fork replays the same positions); descending prefixes are refused. kl-long with
# --match-bytes: TOVA, more than 5 % under EMS's bytes at the same B, comes within 2 % at the
# budget the search finds (B used reported, above B), SimLayerKV off and flagged in bold, and the
# table states the protocol. The same for --task kl (--quick: one 128-token window, B = 64):
# TOVA 11 % under EMS's bytes at the same B, within 2 % when matched.
# Then --quick --task summary --match-bytes on Apache-2.0 (reference = its title block, the rest
# cut to a 320-token prompt): tables with the ROUGE and agreement columns, every score in [0, 1],
# the full row agreeing with itself exactly, every row whose answer equals the full cache's
# agreeing exactly, and --summarize redoing the same table from the CSVs; a missing document is
# refused with its path.
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
N=$OUT/needle
mkdir -p "$N"
"$BIN" --quick --task needle --match-bytes --model "$MODEL" --out "$N" 2> "$N/log" || { cat "$N/log"; exit 1; }
for f in needle_cases.csv needle_prompts.csv needle.csv needle.md needle_grid.csv needle_grid.md needle.gp; do
  [ -s "$N/$f" ] || { echo "FAIL: needle $f missing"; exit 1; }
done
grep -q '^full,0,1,' "$N/needle.csv" || { echo "FAIL: needle.csv has no full-cache row"; cat "$N/needle.csv"; exit 1; }
grep -q 'GPL-3' "$N/needle_prompts.csv" || { echo "FAIL: haystack source not named"; exit 1; }
# matched bytes: bytes_vs_ems (column 10) within 5 %, or the row is flagged in needle.md
awk -F, 'NR > 2 && ($10 < 0.95 || $10 > 1.05) && $1 != "ems+int4" { print $1 }' "$N/needle.csv" | while read -r m; do
  grep -q "^| $m .*\*\*" "$N/needle.md" || { echo "FAIL: $m off EMS's bytes and not flagged"; exit 1; }
done
# the new columns: passkey probes filled, needle probes empty, CPU ms in both
head -1 "$OUT/passkey_cases.csv" | grep -q ',budget_used,exact,key_kept,key_merged,compress_cpu_ms$' ||
  { echo "FAIL: passkey_cases.csv header"; head -1 "$OUT/passkey_cases.csv"; exit 1; }
awk -F, 'NR > 1 && $NF == "" { bad = 1; print "FAIL: no CPU ms: " $0 } END { exit bad }' "$N/needle_cases.csv"
awk -F, 'NR > 1 && $(NF-2) != "" { bad = 1; print "FAIL: needle probe: " $0 } END { exit bad }' "$N/needle_cases.csv"
grep -q 'compression, CPU ms' "$N/needle.md" || { echo "FAIL: needle.md not on CPU time"; exit 1; }
# --variant of a baseline with --ref: its row, the paired column against the named row; a
# variant of an unknown method is refused with a message
V=$OUT/variant
mkdir -p "$V"
"$BIN" --quick --task needle --model "$MODEL" --variant h2o:w32:window=32 --ref h2o --out "$V" 2> "$V/log" ||
  { cat "$V/log"; exit 1; }
grep -q '^h2o-w32,64,1,' "$V/needle.csv" || { echo "FAIL: no h2o-w32 row"; cat "$V/needle.csv"; exit 1; }
grep -q '| h2o - method \[95% CI\] |' "$V/needle.md" || { echo "FAIL: needle.md not against h2o"; head -3 "$V/needle.md"; exit 1; }
# h2o's own row has no paired difference (column 11 empty / nan), EMS's has one
awk -F, '$1 == "h2o" && $11 != "nan" { bad = 1; print "FAIL: h2o vs itself: " $0 } END { exit bad }' "$V/needle.csv"
awk -F, '$1 == "ems" && $11 == "nan" { bad = 1; print "FAIL: ems not paired with h2o: " $0 } END { exit bad }' "$V/needle.csv"
"$BIN" --quick --task needle --model "$MODEL" --variant nosuch:x:window=2 --out "$V" 2> "$V/log2" &&
  { echo "FAIL: a variant of an unknown method was accepted"; exit 1; }
grep -q -- "--variant" "$V/log2" || { echo "FAIL: no message for the bad --variant"; cat "$V/log2"; exit 1; }
K=$OUT/kllong
mkdir -p "$K"
"$BIN" --task kl-long --kl-prefixes 256,384 --kl-score 32 --kl-budgets 64 --methods snapkv \
  --model "$MODEL" --out "$K" 2> "$K/log" || { cat "$K/log"; exit 1; }
for f in kl_long_windows.csv kl_long.csv kl_long.md kl_long_bytes.png; do
  [ -s "$K/$f" ] || { echo "FAIL: kl-long $f missing"; exit 1; }
done
# kl_long.csv: prefix,method,budget,n_scored,kl,...,ppl(9),...,kv_bytes_mean(12)
awk -F, 'NR > 1 && $2 == "full" { n++; if ($5 != 0 || !($9 > 1 && $9 < 1000)) bad = 1; full[$1] = $12 }
         NR > 1 && $2 != "full" { m++; if (!($5 > 0) || !($12 < full[$1])) bad = 1 }
         END { exit bad || n != 2 || m != 4 }' "$K/kl_long.csv" ||
  { echo "FAIL: kl-long rows"; cat "$K/kl_long.csv"; exit 1; }
"$BIN" --task kl-long --kl-prefixes 256 --kl-score 32 --kl-budgets 400 --methods snapkv,h2o \
  --model "$MODEL" --out "$K" 2> "$K/log" || { cat "$K/log"; exit 1; }
awk -F, 'NR > 1 && $6 != "0.000000" { bad = 1; print "FAIL: nothing compressed, yet KL " $0 } END { exit bad }' \
  "$K/kl_long_windows.csv"
[ "$(tail -n +2 "$K/kl_long_windows.csv" | wc -l)" -eq 4 ] || { echo "FAIL: kl-long window rows"; exit 1; }
"$BIN" --task kl-long --kl-prefixes 384,256 --model "$MODEL" --out "$K" 2> "$K/log3" &&
  { echo "FAIL: descending --kl-prefixes accepted"; exit 1; }
grep -q "bad option value" "$K/log3" || { echo "FAIL: no message for bad prefixes"; exit 1; }
M=$OUT/kllong_match
mkdir -p "$M/plain" "$M/matched"
"$BIN" --task kl-long --kl-prefixes 256 --kl-score 32 --kl-budgets 64 --methods tova,simlayerkv \
  --model "$MODEL" --out "$M/plain" 2> "$M/plain/log" || { cat "$M/plain/log"; exit 1; }
"$BIN" --task kl-long --kl-prefixes 256 --kl-score 32 --kl-budgets 64 --methods tova,simlayerkv \
  --match-bytes --model "$MODEL" --out "$M/matched" 2> "$M/matched/log" || { cat "$M/matched/log"; exit 1; }
# kl_long.csv: method(2), bytes_vs_ems(14), budget_used_mean(18)
awk -F, '$2 == "tova" && $14 > 0.95 && $14 < 1.05 { bad = 1 } END { exit bad }' "$M/plain/kl_long.csv" ||
  { echo "FAIL: kl-long TOVA at EMS's B already within 5 % (the matched check proves nothing)"; cat "$M/plain/kl_long.csv"; exit 1; }
awk -F, '$2 == "tova" { n++; if (!($14 >= 0.98 && $14 <= 1.02) || !($18 > 64)) bad = 1 } END { exit bad || n != 1 }' \
  "$M/matched/kl_long.csv" || { echo "FAIL: kl-long --match-bytes: TOVA not within 2 % of EMS's bytes"; cat "$M/matched/kl_long.csv"; exit 1; }
grep -q '^Protocol: matched bytes' "$M/matched/kl_long.md" || { echo "FAIL: kl_long.md protocol"; exit 1; }
grep -q '^Protocol: equal budget' "$M/plain/kl_long.md" || { echo "FAIL: kl_long.md protocol (plain)"; exit 1; }
grep -q '^| 256 | simlayerkv | 64 | [0-9]* | .*| \*\*[0-9.]*\*\* |' "$M/matched/kl_long.md" ||
  { echo "FAIL: SimLayerKV off EMS's bytes and not flagged"; cat "$M/matched/kl_long.md"; exit 1; }
for mb in plain matched; do
  mkdir -p "$M/kl_$mb"
  "$BIN" --quick --task kl --methods tova $([ $mb = matched ] && echo --match-bytes) --model "$MODEL" \
    --out "$M/kl_$mb" 2> "$M/kl_$mb/log" || { cat "$M/kl_$mb/log"; exit 1; }
done
# kl.csv: method(1), bytes_vs_ems(10), budget_used_mean(14)
awk -F, '$1 == "tova" && $10 > 0.95 && $10 < 1.05 { bad = 1 } END { exit bad }' "$M/kl_plain/kl.csv" ||
  { echo "FAIL: kl TOVA at EMS's B already within 5 %"; cat "$M/kl_plain/kl.csv"; exit 1; }
awk -F, '$1 == "tova" { n++; if (!($10 >= 0.98 && $10 <= 1.02) || !($14 > 64)) bad = 1 } END { exit bad || n != 1 }' \
  "$M/kl_matched/kl.csv" || { echo "FAIL: kl --match-bytes: TOVA not within 2 % of EMS's bytes"; cat "$M/kl_matched/kl.csv"; exit 1; }
grep -q '^Protocol: matched bytes' "$M/kl_matched/kl.md" || { echo "FAIL: kl.md protocol"; exit 1; }
S=$OUT/summary
mkdir -p "$S"
SA=(--quick --task summary --summary /usr/share/common-licenses/Apache-2.0 --match-bytes --model "$MODEL" --out "$S")
"$BIN" "${SA[@]}" 2> "$S/log" || { cat "$S/log"; exit 1; }
for f in summary_cases.csv summary_docs.csv summary.csv summary.md; do
  [ -s "$S/$f" ] || { echo "FAIL: summary $f missing"; exit 1; }
done
grep -q '^0,Apache-2.0,.*"Apache License Version 2.0, January 2004 http://www.apache.org/licenses/"$' \
  "$S/summary_docs.csv" || { echo "FAIL: summary_docs.csv"; cat "$S/summary_docs.csv"; exit 1; }
awk -F, 'NR == 2 && !($5 > 200 && $5 <= 320 && $4 < $3) { bad = 1 } END { exit bad }' "$S/summary_docs.csv" ||
  { echo "FAIL: document not cut to the 320-token cap"; cat "$S/summary_docs.csv"; exit 1; }
# summary.csv: accuracy (4) = ROUGE-L vs the reference, rouge1 (19), rouge2 (20), agree_full (21)
head -1 "$S/summary.csv" | grep -q ',exact_hi,rouge1,rouge2,agree_full,agree_lo,agree_hi,agree_ems_minus_this,agree_diff_lo,agree_diff_hi$' ||
  { echo "FAIL: summary.csv header"; head -1 "$S/summary.csv"; exit 1; }
awk -F, 'NR > 1 { n++; for (k = 4; k <= 21; k += (k == 4 ? 15 : 1)) if (!($k >= 0 && $k <= 1)) bad = 1 }
         NR > 1 && $1 == "full" && $21 != "1.0000" { bad = 1 }
         END { exit bad || n != 4 }' "$S/summary.csv" ||
  { echo "FAIL: summary scores outside [0, 1] or full not agreeing with itself"; cat "$S/summary.csv"; exit 1; }
# rows whose answer is the full cache's answer agree exactly
same=$(awk -F, 'NR > 1 { match($0, /".*"/); a[$5] = substr($0, RSTART, RLENGTH) }
                END { for (m in a) if (a[m] == a["full"]) print m }' "$S/summary_cases.csv")
for m in $same; do
  awk -F, -v m="$m" '$1 == m && $21 != "1.0000" { bad = 1 } END { exit bad }' "$S/summary.csv" ||
    { echo "FAIL: $m answered as the full cache but does not agree 1"; cat "$S/summary.csv"; exit 1; }
done
grep -q "ROUGE-L vs the full cache's answer" "$S/summary.md" || { echo "FAIL: summary.md columns"; exit 1; }
cp "$S/summary.csv" "$S/summary.first.csv"
"$BIN" "${SA[@]}" --summarize 2> "$S/log2" || { cat "$S/log2"; exit 1; }
cmp -s "$S/summary.csv" "$S/summary.first.csv" || { echo "FAIL: --summarize gives another summary.csv"; exit 1; }
mkdir -p "$S/missing"
"$BIN" --quick --task summary --summary /nonexistent/usr_01.txt --model "$MODEL" --out "$S/missing" \
  2> "$S/log3" && { echo "FAIL: a missing summary document was accepted"; exit 1; }
grep -q "/nonexistent/usr_01.txt" "$S/log3" || { echo "FAIL: no message for the missing document"; cat "$S/log3"; exit 1; }
echo "ok: longctx --quick"
