#!/usr/bin/env bash
# emserve's engine against llama.cpp's llama-bench on the SAME GGUF, in the same run, on this
# machine: prompt processing pp512 at depth 0 and 4096, decode tg32 at depth 0, 2048 and 8000,
# at 1 and 2 threads, plus emserve with EMS at budget 256 per KV head at depth 8000. Also
# measures read bandwidth (bench:membw) and reports each decode figure against the memory
# bound (bytes read per token / bandwidth). Writes bench/results/vs_llamacpp.{csv,md,png}.
# Usage: bench/llamacpp/run.sh [MODEL.gguf] [REPS]   (default: the installed SmolLM2 Q4_1, 2)
set -euo pipefail
cd "$(dirname "$0")/../.."
MODEL=${1:-${EMSERVE_MODEL:-/var/cache/emserve/models/SmolLM2-135M-Instruct.Q4_1.gguf}}
REPS=${2:-2}
OUT=bench/results
mkdir -p "$OUT"
LBIN=$(bench/llamacpp/build.sh)
bazel build -c opt //bench:bench_engine //bench:membw >&2
BIN=$(bazel info -c opt bazel-bin 2>/dev/null)
CSV=$OUT/vs_llamacpp.csv
RAW=$(mktemp -d)
echo "engine,kv,threads,test,depth,tok_s" > "$CSV"
step() { echo ">> $(date +%T) $*" >&2; }

llama() { # threads args... -> rows in CSV
  local th=$1; shift
  "$LBIN/llama-bench" -m "$MODEL" -t "$th" -r "$REPS" -o csv "$@" 2>/dev/null > "$RAW/l.csv"
  python3 - "$RAW/l.csv" "$th" >> "$CSV" <<'PY'
import csv, sys
for r in csv.DictReader(open(sys.argv[1])):
    test = f"pp{r['n_prompt']}" if int(r["n_gen"]) == 0 else f"tg{r['n_gen']}"
    print(f"llama.cpp,f16 kv,{sys.argv[2]},{test},{r['n_depth']},{float(r['avg_ts']):.2f}")
PY
}
ours() { # threads args...
  local th=$1; shift
  "$BIN/bench/bench_engine" --model "$MODEL" --label emserve --threads "$th" --reps "$REPS" \
    --csv "$RAW/o.csv" "$@" >&2
}
: > "$RAW/o.csv"
for th in 1 2; do
  step "llama.cpp pp512, $th thread(s)"; llama "$th" -p 512 -n 0 -d 0,4096
  step "llama.cpp tg32, $th thread(s)";  llama "$th" -p 0 -n 32 -d 0,2048,8000
  step "emserve pp512, $th thread(s)";   ours "$th" --tests pp --pp 512 --depth 0 --depth 4096
  step "emserve tg32, $th thread(s)";    ours "$th" --tests tg --tg 32 --depth 0 --depth 2048 --depth 8000
  step "emserve q8 activations, $th thread(s)"
  ours "$th" --act-quant q8 --label emserve-q8 --tests pp,tg --pp 512 --tg 32 --depth 0
  step "emserve tg32 EMS B=256, $th thread(s)"
  ours "$th" --tests tg --tg 32 --depth 8000 --kv-method ems --kv-budget 256
done
sed 's/^emserve,full,/emserve,f32 kv,/; s/^emserve-q8,full,/emserve-q8,f32 kv,/' "$RAW/o.csv" >> "$CSV"
step "read bandwidth"
"$BIN/bench/membw" 2 > "$RAW/bw.csv"
cat "$RAW/bw.csv" >&2

PY3=/var/cache/emserve/pyenv/bin/python
"$PY3" -c "import gguf" 2>/dev/null || "$PY3" -m pip install -q gguf numpy >&2
"$PY3" - "$CSV" "$RAW/bw.csv" "$MODEL" > "$OUT/vs_llamacpp.md" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
bw = {int(r["threads"]): float(r["read_GBps"]) for r in csv.DictReader(open(sys.argv[2]))}
sys.path.insert(0, "bench/llamacpp")
from model_bytes import model_bytes
mb = model_bytes(sys.argv[3])
def val(engine, kv, th, test, d):
    for r in rows:
        if r["engine"] == engine and r["kv"].startswith(kv) and r["threads"] == str(th) and r["test"] == test and int(r["depth"]) == d:
            return float(r["tok_s"])
    return None
print(f"Model `{sys.argv[3].split('/')[-1]}`: {mb['weights']/1e6:.1f} MB of weights read per token "
      f"(every matrix incl. the tied output), KV per token of context: emserve f32 "
      f"{mb['kv_f32_per_tok']/1e3:.1f} kB, llama.cpp f16 {mb['kv_f32_per_tok']/2e3:.1f} kB. "
      f"Read bandwidth: " + ", ".join(f"{t} thread(s) {b:.1f} GB/s" for t, b in sorted(bw.items())) + ".\n")
print("emserve runs with f32 activations (its default: the f32 reference's answers); the column "
      "`emserve q8` is the int8-activation mode (llama.cpp's numerics), measured at depth 0.\n")
print("| threads | test | depth | llama.cpp tok/s | emserve tok/s | emserve / llama.cpp | emserve q8 tok/s | q8 / llama.cpp | emserve % of memory bound | llama.cpp % of memory bound |")
print("|---|---|---|---|---|---|---|---|---|---|")
for th in (1, 2):
    for test, depths in (("pp512", (0, 4096)), ("tg32", (0, 2048, 8000))):
        for d in depths:
            l, o = val("llama.cpp", "f16", th, test, d), val("emserve", "f32", th, test, d)
            ratio = f"{o/l:.2f}x" if l and o else "-"
            if test.startswith("tg"):
                ob = bw[th] * 1e9 / (mb["weights"] + mb["kv_f32_per_tok"] * d)
                lb = bw[th] * 1e9 / (mb["weights"] + mb["kv_f32_per_tok"] / 2 * d)
                pct = (f"{100*o/ob:.0f} % (bound {ob:.0f})" if o else "-", f"{100*l/lb:.0f} % (bound {lb:.0f})" if l else "-")
            else:
                pct = ("compute-bound", "compute-bound")
            q = val("emserve-q8", "f32", th, test, d)
            qr = f"{q/l:.2f}x" if l and q else "-"
            print(f"| {th} | {test} | {d} | {l or '-'} | {o or '-'} | {ratio} | {q or '-'} | {qr} | {pct[0]} | {pct[1]} |")
        if test == "tg32":
            e = [r for r in rows if r["engine"] == "emserve" and r["kv"].startswith("ems") and r["threads"] == str(th)]
            for r in e:
                l = val("llama.cpp", "f16", th, "tg32", int(r["depth"]))
                o = float(r["tok_s"])
                ob = bw[th] * 1e9 / (mb["weights"] + mb["kv_f32_per_tok"] * 256)
                print(f"| {th} | tg32, emserve {r['kv']} | {r['depth']} | {l or '-'} | {o} | "
                      f"{(o/l if l else 0):.2f}x | - | - | {100*o/ob:.0f} % (bound {ob:.0f}, 256 entries/head) | - |")
PY
cat "$OUT/vs_llamacpp.md"

GP=$(mktemp)
cat > "$GP" <<GNU
set terminal pngcairo size 960,560 noenhanced
set output '$OUT/vs_llamacpp.png'
set title 'decode tokens/s vs context depth: emserve vs llama.cpp, same GGUF, same run ($(nproc) cores)'
set xlabel 'context depth (tokens)'; set ylabel 'decode tokens/s'; set grid; set key outside right
set datafile separator ','
plot '< grep -E "^llama.cpp,[^,]*,1,tg" $CSV' using 5:6 with linespoints title 'llama.cpp 1t', \
     '< grep -E "^llama.cpp,[^,]*,2,tg" $CSV' using 5:6 with linespoints title 'llama.cpp 2t', \
     '< grep -E "^emserve,f32 kv,1,tg" $CSV' using 5:6 with linespoints title 'emserve 1t', \
     '< grep -E "^emserve,f32 kv,2,tg" $CSV' using 5:6 with linespoints title 'emserve 2t', \
     '< grep -E "^emserve,ems[^,]*,1,tg" $CSV' using 5:6 with points pt 7 ps 1.5 title 'emserve EMS B=256 1t', \
     '< grep -E "^emserve,ems[^,]*,2,tg" $CSV' using 5:6 with points pt 9 ps 1.5 title 'emserve EMS B=256 2t'
GNU
gnuplot "$GP" && echo "wrote $OUT/vs_llamacpp.png" >&2
rm -rf "$GP" "$RAW"
