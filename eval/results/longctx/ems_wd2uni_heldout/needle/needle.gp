set terminal pngcairo size 640,480 noenhanced
set datafile separator ','
set key off
set cbrange [0:1]
set palette defined (0 '#c0392b', 0.5 '#f1c40f', 1 '#27ae60')
set xlabel 'context (tokens)'
set ylabel 'needle depth (% of the document)'
set xtics ("1024" 0, "2048" 1, "4096" 2, "8000" 3)
set ytics ("0" 0, "25" 1, "50" 2, "75" 3, "100" 4)
set xrange [-0.5:3.5]
set yrange [4.5:-0.5]
set output 'needle_heat_full_B0.png'
set title "needle retrieval, full cache (SmolLM2, end-of-prompt compression)"
plot "< grep '^full,0,' needle_grid.csv" using 5:6:(0.5):(0.5):8 with boxxyerror fs solid 1.0 lc palette, '' using 5:6:(sprintf('%.2f (%d)', $8, int($7))) with labels font ',10'
set output 'needle_heat_snapkv_B128.png'
set title "needle retrieval, snapkv, B = 128 (SmolLM2, end-of-prompt compression)"
plot "< grep '^snapkv,128,' needle_grid.csv" using 5:6:(0.5):(0.5):8 with boxxyerror fs solid 1.0 lc palette, '' using 5:6:(sprintf('%.2f (%d)', $8, int($7))) with labels font ',10'
set output 'needle_heat_ems_B128.png'
set title "needle retrieval, ems, B = 128 (SmolLM2, end-of-prompt compression)"
plot "< grep '^ems,128,' needle_grid.csv" using 5:6:(0.5):(0.5):8 with boxxyerror fs solid 1.0 lc palette, '' using 5:6:(sprintf('%.2f (%d)', $8, int($7))) with labels font ',10'
set output 'needle_heat_ems-wd2uni_B128.png'
set title "needle retrieval, ems-wd2uni, B = 128 (SmolLM2, end-of-prompt compression)"
plot "< grep '^ems-wd2uni,128,' needle_grid.csv" using 5:6:(0.5):(0.5):8 with boxxyerror fs solid 1.0 lc palette, '' using 5:6:(sprintf('%.2f (%d)', $8, int($7))) with labels font ',10'
