set terminal pngcairo size 640,480 noenhanced
set datafile separator ','
set key off
set cbrange [0:1]
set palette defined (0 '#c0392b', 0.5 '#f1c40f', 1 '#27ae60')
set xlabel 'context (tokens)'
set ylabel 'needle depth (% of the document)'
set xtics ("1024" 0, "2048" 1)
set ytics ("0" 0, "25" 1, "50" 2, "75" 3, "100" 4)
set xrange [-0.5:1.5]
set yrange [4.5:-0.5]
set output 'needle_heat_full_B0.png'
set title "needle retrieval, full cache (SmolLM2, end-of-prompt compression)"
plot "< grep '^full,0,' needle_grid.csv" using 5:6:(0.5):(0.5):8 with boxxyerror fs solid 1.0 lc palette, '' using 5:6:(sprintf('%.2f (%d)', $8, int($7))) with labels font ',10'
set output 'needle_heat_h2o_B128.png'
set title "needle retrieval, h2o, B = 128 (SmolLM2, end-of-prompt compression)"
plot "< grep '^h2o,128,' needle_grid.csv" using 5:6:(0.5):(0.5):8 with boxxyerror fs solid 1.0 lc palette, '' using 5:6:(sprintf('%.2f (%d)', $8, int($7))) with labels font ',10'
set output 'needle_heat_roco_B128.png'
set title "needle retrieval, roco, B = 128 (SmolLM2, end-of-prompt compression)"
plot "< grep '^roco,128,' needle_grid.csv" using 5:6:(0.5):(0.5):8 with boxxyerror fs solid 1.0 lc palette, '' using 5:6:(sprintf('%.2f (%d)', $8, int($7))) with labels font ',10'
set output 'needle_heat_ems_B128.png'
set title "needle retrieval, ems, B = 128 (SmolLM2, end-of-prompt compression)"
plot "< grep '^ems,128,' needle_grid.csv" using 5:6:(0.5):(0.5):8 with boxxyerror fs solid 1.0 lc palette, '' using 5:6:(sprintf('%.2f (%d)', $8, int($7))) with labels font ',10'
set output 'needle_heat_roco-acc_B128.png'
set title "needle retrieval, roco-acc, B = 128 (SmolLM2, end-of-prompt compression)"
plot "< grep '^roco-acc,128,' needle_grid.csv" using 5:6:(0.5):(0.5):8 with boxxyerror fs solid 1.0 lc palette, '' using 5:6:(sprintf('%.2f (%d)', $8, int($7))) with labels font ',10'
set output 'needle_heat_roco-std0_B128.png'
set title "needle retrieval, roco-std0, B = 128 (SmolLM2, end-of-prompt compression)"
plot "< grep '^roco-std0,128,' needle_grid.csv" using 5:6:(0.5):(0.5):8 with boxxyerror fs solid 1.0 lc palette, '' using 5:6:(sprintf('%.2f (%d)', $8, int($7))) with labels font ',10'
set output 'needle_heat_roco-acc-std0_B128.png'
set title "needle retrieval, roco-acc-std0, B = 128 (SmolLM2, end-of-prompt compression)"
plot "< grep '^roco-acc-std0,128,' needle_grid.csv" using 5:6:(0.5):(0.5):8 with boxxyerror fs solid 1.0 lc palette, '' using 5:6:(sprintf('%.2f (%d)', $8, int($7))) with labels font ',10'
set output 'needle_heat_roco-std16_B128.png'
set title "needle retrieval, roco-std16, B = 128 (SmolLM2, end-of-prompt compression)"
plot "< grep '^roco-std16,128,' needle_grid.csv" using 5:6:(0.5):(0.5):8 with boxxyerror fs solid 1.0 lc palette, '' using 5:6:(sprintf('%.2f (%d)', $8, int($7))) with labels font ',10'
set output 'needle_heat_roco-acc-std16_B128.png'
set title "needle retrieval, roco-acc-std16, B = 128 (SmolLM2, end-of-prompt compression)"
plot "< grep '^roco-acc-std16,128,' needle_grid.csv" using 5:6:(0.5):(0.5):8 with boxxyerror fs solid 1.0 lc palette, '' using 5:6:(sprintf('%.2f (%d)', $8, int($7))) with labels font ',10'
set output 'needle_heat_roco-std32_B128.png'
set title "needle retrieval, roco-std32, B = 128 (SmolLM2, end-of-prompt compression)"
plot "< grep '^roco-std32,128,' needle_grid.csv" using 5:6:(0.5):(0.5):8 with boxxyerror fs solid 1.0 lc palette, '' using 5:6:(sprintf('%.2f (%d)', $8, int($7))) with labels font ',10'
set output 'needle_heat_roco-acc-std32_B128.png'
set title "needle retrieval, roco-acc-std32, B = 128 (SmolLM2, end-of-prompt compression)"
plot "< grep '^roco-acc-std32,128,' needle_grid.csv" using 5:6:(0.5):(0.5):8 with boxxyerror fs solid 1.0 lc palette, '' using 5:6:(sprintf('%.2f (%d)', $8, int($7))) with labels font ',10'
set output 'needle_heat_roco-std64_B128.png'
set title "needle retrieval, roco-std64, B = 128 (SmolLM2, end-of-prompt compression)"
plot "< grep '^roco-std64,128,' needle_grid.csv" using 5:6:(0.5):(0.5):8 with boxxyerror fs solid 1.0 lc palette, '' using 5:6:(sprintf('%.2f (%d)', $8, int($7))) with labels font ',10'
set output 'needle_heat_roco-acc-std64_B128.png'
set title "needle retrieval, roco-acc-std64, B = 128 (SmolLM2, end-of-prompt compression)"
plot "< grep '^roco-acc-std64,128,' needle_grid.csv" using 5:6:(0.5):(0.5):8 with boxxyerror fs solid 1.0 lc palette, '' using 5:6:(sprintf('%.2f (%d)', $8, int($7))) with labels font ',10'
