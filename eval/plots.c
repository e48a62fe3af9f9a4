/* gnuplot scripts for the harness's CSVs (PNG, pngcairo when available). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval/eval.h"

static const char *k_head =
    "set datafile separator ','\n"
    "set terminal pngcairo size 900,600 noenhanced font ',11'\n"
    "set key outside right\nset grid\n"
    "P = 'streamingllm h2o snapkv pyramidkv tova simlayerkv roco ems ems+int4 h2o+int4'\n"
    "# rows of one policy must be adjacent for lines: sort by policy, then budget\n"
    "Q = '< sort -t, -k1,1 -k2,2n quality_pooled.csv'\n"
    "R = '< sort -t, -k1,1 -k3,3 -k4,4 -k2,2n retrieval.csv'\n";

void ev_gnuplot(const char *dir, const char *script)
{
    char path[512], cmd[1100];
    snprintf(path, sizeof path, "%s/plots.gp", dir);
    FILE *f = fopen(path, "w");
    if (!f)
        return;
    fputs(script, f);
    fclose(f);
    snprintf(cmd, sizeof cmd, "cd '%s' && gnuplot plots.gp", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "warning: gnuplot failed (plots.gp kept in %s)\n", dir);
}

void ev_write_plots(const char *dir, int have_b64)
{
    static char s[12000];
    snprintf(
        s, sizeof s,
        "%s"
        "set xrange [3.8:7.2]\nset xtics (\"16\" 4, \"32\" 5, \"64\" 6, \"128\" 7)\nset xlabel "
        "'budget (entries per layer and KV head)'\n"
        "full_ppl = system(\"grep '^full,0' quality_pooled.csv | cut -d, -f3\") + 0\n"
        "set output 'quality_ppl.png'\nset title 'perplexity, sampled texts pooled (streamed)'\n"
        "set ylabel 'perplexity'\n"
        "plot for [m in P] Q using (strcol(1) eq m ? log($2)/log(2) : 1/0):3 "
        "smooth unique with linespoints title m, full_ppl with lines dt 2 lc 'black' title 'full'\n"
        "set output 'quality_ppl_data.png'\nset title 'perplexity, TinyStories data sample'\n"
        "full_ppl0 = system(\"grep '^full,0' quality_pooled.csv | cut -d, -f4\") + 0\n"
        "plot for [m in P] Q using (strcol(1) eq m ? log($2)/log(2) : 1/0):4 "
        "smooth unique with linespoints title m, full_ppl0 with lines dt 2 lc 'black' title "
        "'full'\n"
        "set output 'quality_kl.png'\nset title 'KL(full || compressed) per token, sampled texts'\n"
        "set ylabel 'KL (nats)'\nset logscale y\n"
        "plot for [m in P] Q using (strcol(1) eq m ? log($2)/log(2) : 1/0):5 "
        "smooth unique with linespoints title m\nunset logscale y\n"
        "set output 'quality_top1.png'\nset title 'top-1 agreement with the full cache'\n"
        "set ylabel 'agreement'\n"
        "plot for [m in P] Q using (strcol(1) eq m ? log($2)/log(2) : 1/0):7 "
        "smooth unique with linespoints title m\n"
        "set output 'memory.png'\nset title 'KV bytes kept (mean over the stream) / full cache'\n"
        "set ylabel 'fraction of full'\nset logscale y\n"
        "plot for [m in P] Q using (strcol(1) eq m ? log($2)/log(2) : 1/0):9 "
        "smooth unique with linespoints title m\nunset logscale y\n"
        "set output 'compress_time.png'\nset title 'compression time per streamed token'\n"
        "set ylabel 'microseconds'\nset logscale y\n"
        "plot for [m in P] Q using (strcol(1) eq m ? log($2)/log(2) : 1/0):($10 > 0 ? $10 : 1/0) "
        "smooth unique with linespoints title m\nunset logscale y\n"
        "set output 'retrieval_budget.png'\nset title 'retrieval accuracy (prompt compressed once "
        "at its end)'\n"
        "set ylabel 'accuracy'\nset yrange [0:1.05]\n"
        "plot for [m in P] R using ((strcol(1) eq m && strcol(3) eq 'prefill' && strcol(4) eq "
        "'all') ? log($2)/log(2) : 1/0):7 "
        "smooth unique with linespoints title m\n"
        "set xtics auto\nset autoscale x\nset xlabel 'distance between the name and the cue "
        "(tokens)'\n"
        "set output 'retrieval_distance_prefill.png'\nset title 'retrieval vs distance, B = 32, "
        "compressed at prompt end'\n"
        "plot for [m in P] 'retrieval.csv' using ((strcol(1) eq m && $2 == 32 && strcol(3) eq "
        "'prefill' && strcol(4) ne 'all') ? $4 : 1/0):7 "
        "smooth unique with linespoints title m\n"
        "set output 'retrieval_distance_stream.png'\nset title 'retrieval vs distance, B = 32, "
        "compressed while streaming'\n"
        "plot for [m in P] 'retrieval.csv' using ((strcol(1) eq m && $2 == 32 && strcol(3) eq "
        "'stream' && strcol(4) ne 'all') ? $4 : 1/0):7 "
        "smooth unique with linespoints title m\n"
        "set autoscale y\nset xtics 1\nset xlabel 'layer'\nset ylabel 'relative error'\n"
        "set output 'fidelity_b32.png'\nset title 'attention output relative error per layer, B = "
        "32'\n"
        "plot for [m in P] 'fidelity.csv' using ((strcol(1) eq m && $2 == 32) ? $3 : 1/0):4 "
        "smooth unique with linespoints title m\n"
        "%s",
        k_head,
        have_b64 ? "set output 'fidelity_b64.png'\nset title 'attention output relative error "
                   "per layer, B = 64'\nplot for [m in P] 'fidelity.csv' using ((strcol(1) eq "
                   "m && $2 == 64) ? $3 : 1/0):4 smooth unique with linespoints title m\n"
                 : "");
    ev_gnuplot(dir, s);
}
