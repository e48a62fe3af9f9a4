set terminal pngcairo size 640,480 noenhanced
set datafile separator ','
set key off
set cbrange [0:1]
set palette defined (0 '#c0392b', 0.5 '#f1c40f', 1 '#27ae60')
set xlabel 'context (tokens)'
set ylabel 'needle depth (% of the document)'
set xtics ("4096" 0, "8000" 1)
set ytics ("0" 0, "25" 1, "50" 2, "75" 3, "100" 4)
set xrange [-0.5:1.5]
set yrange [4.5:-0.5]
set output 'needle_heat_full_B0.png'
set title "needle retrieval, full cache (SmolLM2, end-of-prompt compression)"
plot "< grep '^full,0,' needle_grid.csv" using 5:6:(0.5):(0.5):8 with boxxyerror fs solid 1.0 lc palette, '' using 5:6:(sprintf('%.2f (%d)', $8, int($7))) with labels font ',10'
set output 'needle_heat_streamingllm_B128.png'
set title "needle retrieval, streamingllm, B = 128 (SmolLM2, end-of-prompt compression)"
plot "< grep '^streamingllm,128,' needle_grid.csv" using 5:6:(0.5):(0.5):8 with boxxyerror fs solid 1.0 lc palette, '' using 5:6:(sprintf('%.2f (%d)', $8, int($7))) with labels font ',10'
set output 'needle_heat_h2o_B128.png'
set title "needle retrieval, h2o, B = 128 (SmolLM2, end-of-prompt compression)"
plot "< grep '^h2o,128,' needle_grid.csv" using 5:6:(0.5):(0.5):8 with boxxyerror fs solid 1.0 lc palette, '' using 5:6:(sprintf('%.2f (%d)', $8, int($7))) with labels font ',10'
set output 'needle_heat_snapkv_B128.png'
set title "needle retrieval, snapkv, B = 128 (SmolLM2, end-of-prompt compression)"
plot "< grep '^snapkv,128,' needle_grid.csv" using 5:6:(0.5):(0.5):8 with boxxyerror fs solid 1.0 lc palette, '' using 5:6:(sprintf('%.2f (%d)', $8, int($7))) with labels font ',10'
set output 'needle_heat_pyramidkv_B128.png'
set title "needle retrieval, pyramidkv, B = 128 (SmolLM2, end-of-prompt compression)"
plot "< grep '^pyramidkv,128,' needle_grid.csv" using 5:6:(0.5):(0.5):8 with boxxyerror fs solid 1.0 lc palette, '' using 5:6:(sprintf('%.2f (%d)', $8, int($7))) with labels font ',10'
set output 'needle_heat_tova_B128.png'
set title "needle retrieval, tova, B = 128 (SmolLM2, end-of-prompt compression)"
plot "< grep '^tova,128,' needle_grid.csv" using 5:6:(0.5):(0.5):8 with boxxyerror fs solid 1.0 lc palette, '' using 5:6:(sprintf('%.2f (%d)', $8, int($7))) with labels font ',10'
set output 'needle_heat_simlayerkv_B128.png'
set title "needle retrieval, simlayerkv, B = 128 (SmolLM2, end-of-prompt compression)"
plot "< grep '^simlayerkv,128,' needle_grid.csv" using 5:6:(0.5):(0.5):8 with boxxyerror fs solid 1.0 lc palette, '' using 5:6:(sprintf('%.2f (%d)', $8, int($7))) with labels font ',10'
set output 'needle_heat_roco_B128.png'
set title "needle retrieval, roco, B = 128 (SmolLM2, end-of-prompt compression)"
plot "< grep '^roco,128,' needle_grid.csv" using 5:6:(0.5):(0.5):8 with boxxyerror fs solid 1.0 lc palette, '' using 5:6:(sprintf('%.2f (%d)', $8, int($7))) with labels font ',10'
set output 'needle_heat_ems_B128.png'
set title "needle retrieval, ems, B = 128 (SmolLM2, end-of-prompt compression)"
plot "< grep '^ems,128,' needle_grid.csv" using 5:6:(0.5):(0.5):8 with boxxyerror fs solid 1.0 lc palette, '' using 5:6:(sprintf('%.2f (%d)', $8, int($7))) with labels font ',10'
set output 'needle_heat_ems+int4_B128.png'
set title "needle retrieval, ems+int4, B = 128 (SmolLM2, end-of-prompt compression)"
plot "< grep '^ems+int4,128,' needle_grid.csv" using 5:6:(0.5):(0.5):8 with boxxyerror fs solid 1.0 lc palette, '' using 5:6:(sprintf('%.2f (%d)', $8, int($7))) with labels font ',10'
set output 'needle_heat_streamingllm-s1_B128.png'
set title "needle retrieval, streamingllm-s1, B = 128 (SmolLM2, end-of-prompt compression)"
plot "< grep '^streamingllm-s1,128,' needle_grid.csv" using 5:6:(0.5):(0.5):8 with boxxyerror fs solid 1.0 lc palette, '' using 5:6:(sprintf('%.2f (%d)', $8, int($7))) with labels font ',10'
set output 'needle_heat_h2o-w96_B128.png'
set title "needle retrieval, h2o-w96, B = 128 (SmolLM2, end-of-prompt compression)"
plot "< grep '^h2o-w96,128,' needle_grid.csv" using 5:6:(0.5):(0.5):8 with boxxyerror fs solid 1.0 lc palette, '' using 5:6:(sprintf('%.2f (%d)', $8, int($7))) with labels font ',10'
set output 'needle_heat_snapkv-k11_B128.png'
set title "needle retrieval, snapkv-k11, B = 128 (SmolLM2, end-of-prompt compression)"
plot "< grep '^snapkv-k11,128,' needle_grid.csv" using 5:6:(0.5):(0.5):8 with boxxyerror fs solid 1.0 lc palette, '' using 5:6:(sprintf('%.2f (%d)', $8, int($7))) with labels font ',10'
set output 'needle_heat_pyramidkv-k11_B128.png'
set title "needle retrieval, pyramidkv-k11, B = 128 (SmolLM2, end-of-prompt compression)"
plot "< grep '^pyramidkv-k11,128,' needle_grid.csv" using 5:6:(0.5):(0.5):8 with boxxyerror fs solid 1.0 lc palette, '' using 5:6:(sprintf('%.2f (%d)', $8, int($7))) with labels font ',10'
set output 'needle_heat_roco-s4_B128.png'
set title "needle retrieval, roco-s4, B = 128 (SmolLM2, end-of-prompt compression)"
plot "< grep '^roco-s4,128,' needle_grid.csv" using 5:6:(0.5):(0.5):8 with boxxyerror fs solid 1.0 lc palette, '' using 5:6:(sprintf('%.2f (%d)', $8, int($7))) with labels font ',10'
set output 'needle_heat_simlayerkv-d080_B128.png'
set title "needle retrieval, simlayerkv-d080, B = 128 (SmolLM2, end-of-prompt compression)"
plot "< grep '^simlayerkv-d080,128,' needle_grid.csv" using 5:6:(0.5):(0.5):8 with boxxyerror fs solid 1.0 lc palette, '' using 5:6:(sprintf('%.2f (%d)', $8, int($7))) with labels font ',10'
