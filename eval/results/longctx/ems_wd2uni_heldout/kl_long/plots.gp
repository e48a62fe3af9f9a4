set terminal pngcairo size 900,600
set datafile separator ','
set key off
set grid
if (system('test -s passkey.csv && echo 1') eq '1') {
set output 'passkey_acc_bytes.png'
set xlabel 'KV cache held, MiB (mean over the answer tokens)'
set title 'SmolLM2 passkey, end-of-prompt compression: accuracy vs KV bytes (bars: 95% bootstrap CI)'
set ylabel 'retrieval accuracy'
set yrange [-0.05:1.1]
plot 'passkey.csv' every ::1 using ($7/1048576):4:6:5 with yerrorbars pt 7, \
     '' every ::1 using ($7/1048576):4:(sprintf('%s B%d', strcol(1), $2)) with labels rotate by 35 left offset 0.5,0.3 font ',8'
}
if (system('test -s kl.csv && echo 1') eq '1') {
set output 'kl_bytes.png'
set autoscale y
set logscale y
set xlabel 'KV cache held, MiB (mean over the streamed tokens)'
set title 'SmolLM2 decode-time KL(full || compressed) on prose vs KV bytes (bars: 95% block-bootstrap CI)'
set ylabel 'mean KL (nats)'
plot 'kl.csv' every ::1 using ($8/1048576):4:6:5 with yerrorbars pt 7, \
     '' every ::1 using ($8/1048576):4:(sprintf('%s B%d', strcol(1), $2)) with labels rotate by 35 left offset 0.5,0.3 font ',8'
}
if (system('test -s kl_long.csv && echo 1') eq '1') {
set output 'kl_long_bytes.png'
set autoscale xy
set logscale xy
set key top right
set xlabel 'KV cache held, MiB (mean over the scored tokens)'
set title 'SmolLM2 KL(full || compressed), long prose, compressed at the prompt end (95% block-bootstrap CI)'
set ylabel 'mean KL (nats)'
plot for [P in system("tail -n +2 kl_long.csv | cut -d, -f1 | sort -un | tr '\\n' ' '")] 'kl_long.csv' every ::1 using ($1 == P + 0 && $5 > 0 ? $12/1048576 : 1/0):5:6:7 with yerrorbars pt 7 title sprintf('prompt %s tokens', P), \
     '' every ::1 using ($5 > 0 ? $12/1048576 : 1/0):5:(sprintf('%s B%d', strcol(2), $3)) with labels rotate by 35 left offset 0.5,0.3 font ',8' notitle
}
