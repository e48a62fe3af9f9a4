set datafile separator ','
set terminal pngcairo size 900,600 noenhanced font ',11'
set key outside right
set grid
P = 'streamingllm h2o snapkv pyramidkv tova simlayerkv roco ems ems+int4 h2o+int4'
# rows of one policy must be adjacent for lines: sort by policy, then budget
Q = '< sort -t, -k1,1 -k2,2n quality_pooled.csv'
R = '< sort -t, -k1,1 -k3,3 -k4,4 -k2,2n retrieval.csv'
set xrange [3.8:7.2]
set xtics ("16" 4, "32" 5, "64" 6, "128" 7)
set xlabel 'budget (entries per layer and KV head)'
full_ppl = system("grep '^full,0' quality_pooled.csv | cut -d, -f3") + 0
set output 'quality_ppl.png'
set title 'perplexity, sampled texts pooled (streamed)'
set ylabel 'perplexity'
plot for [m in P] Q using (strcol(1) eq m ? log($2)/log(2) : 1/0):3 smooth unique with linespoints title m, full_ppl with lines dt 2 lc 'black' title 'full'
set output 'quality_ppl_data.png'
set title 'perplexity, TinyStories data sample'
full_ppl0 = system("grep '^full,0' quality_pooled.csv | cut -d, -f4") + 0
plot for [m in P] Q using (strcol(1) eq m ? log($2)/log(2) : 1/0):4 smooth unique with linespoints title m, full_ppl0 with lines dt 2 lc 'black' title 'full'
set output 'quality_kl.png'
set title 'KL(full || compressed) per token, sampled texts'
set ylabel 'KL (nats)'
set logscale y
plot for [m in P] Q using (strcol(1) eq m ? log($2)/log(2) : 1/0):5 smooth unique with linespoints title m
unset logscale y
set output 'quality_top1.png'
set title 'top-1 agreement with the full cache'
set ylabel 'agreement'
plot for [m in P] Q using (strcol(1) eq m ? log($2)/log(2) : 1/0):7 smooth unique with linespoints title m
set output 'memory.png'
set title 'KV bytes kept (mean over the stream) / full cache'
set ylabel 'fraction of full'
set logscale y
plot for [m in P] Q using (strcol(1) eq m ? log($2)/log(2) : 1/0):9 smooth unique with linespoints title m
unset logscale y
set output 'compress_time.png'
set title 'compression time per streamed token'
set ylabel 'microseconds'
set logscale y
plot for [m in P] Q using (strcol(1) eq m ? log($2)/log(2) : 1/0):($10 > 0 ? $10 : 1/0) smooth unique with linespoints title m
unset logscale y
set output 'retrieval_budget.png'
set title 'retrieval accuracy (prompt compressed once at its end)'
set ylabel 'accuracy'
set yrange [0:1.05]
plot for [m in P] R using ((strcol(1) eq m && strcol(3) eq 'prefill' && strcol(4) eq 'all') ? log($2)/log(2) : 1/0):7 smooth unique with linespoints title m
set xtics auto
set autoscale x
set xlabel 'distance between the name and the cue (tokens)'
set output 'retrieval_distance_prefill.png'
set title 'retrieval vs distance, B = 32, compressed at prompt end'
plot for [m in P] 'retrieval.csv' using ((strcol(1) eq m && $2 == 32 && strcol(3) eq 'prefill' && strcol(4) ne 'all') ? $4 : 1/0):7 smooth unique with linespoints title m
set output 'retrieval_distance_stream.png'
set title 'retrieval vs distance, B = 32, compressed while streaming'
plot for [m in P] 'retrieval.csv' using ((strcol(1) eq m && $2 == 32 && strcol(3) eq 'stream' && strcol(4) ne 'all') ? $4 : 1/0):7 smooth unique with linespoints title m
set autoscale y
set xtics 1
set xlabel 'layer'
set ylabel 'relative error'
set output 'fidelity_b32.png'
set title 'attention output relative error per layer, B = 32'
plot for [m in P] 'fidelity.csv' using ((strcol(1) eq m && $2 == 32) ? $3 : 1/0):4 smooth unique with linespoints title m
set output 'fidelity_b64.png'
set title 'attention output relative error per layer, B = 64'
plot for [m in P] 'fidelity.csv' using ((strcol(1) eq m && $2 == 64) ? $3 : 1/0):4 smooth unique with linespoints title m
