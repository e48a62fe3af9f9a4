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
set output 'needle_heat_snapkv_B128.png'
set title "needle retrieval, snapkv, B = 128 (SmolLM2, end-of-prompt compression)"
plot "< grep '^snapkv,128,' needle_grid.csv" using 5:6:(0.5):(0.5):8 with boxxyerror fs solid 1.0 lc palette, '' using 5:6:(sprintf('%.2f (%d)', $8, int($7))) with labels font ',10'
set output 'needle_heat_simlayerkv_B128.png'
set title "needle retrieval, simlayerkv, B = 128 (SmolLM2, end-of-prompt compression)"
plot "< grep '^simlayerkv,128,' needle_grid.csv" using 5:6:(0.5):(0.5):8 with boxxyerror fs solid 1.0 lc palette, '' using 5:6:(sprintf('%.2f (%d)', $8, int($7))) with labels font ',10'
set output 'needle_heat_ems_B128.png'
set title "needle retrieval, ems, B = 128 (SmolLM2, end-of-prompt compression)"
plot "< grep '^ems,128,' needle_grid.csv" using 5:6:(0.5):(0.5):8 with boxxyerror fs solid 1.0 lc palette, '' using 5:6:(sprintf('%.2f (%d)', $8, int($7))) with labels font ',10'
set output 'needle_heat_ems+int4_B128.png'
set title "needle retrieval, ems+int4, B = 128 (SmolLM2, end-of-prompt compression)"
plot "< grep '^ems+int4,128,' needle_grid.csv" using 5:6:(0.5):(0.5):8 with boxxyerror fs solid 1.0 lc palette, '' using 5:6:(sprintf('%.2f (%d)', $8, int($7))) with labels font ',10'
set output 'needle_heat_simlayerkv-d080_B128.png'
set title "needle retrieval, simlayerkv-d080, B = 128 (SmolLM2, end-of-prompt compression)"
plot "< grep '^simlayerkv-d080,128,' needle_grid.csv" using 5:6:(0.5):(0.5):8 with boxxyerror fs solid 1.0 lc palette, '' using 5:6:(sprintf('%.2f (%d)', $8, int($7))) with labels font ',10'
set output 'needle_heat_simlayerkv-d090_B128.png'
set title "needle retrieval, simlayerkv-d090, B = 128 (SmolLM2, end-of-prompt compression)"
plot "< grep '^simlayerkv-d090,128,' needle_grid.csv" using 5:6:(0.5):(0.5):8 with boxxyerror fs solid 1.0 lc palette, '' using 5:6:(sprintf('%.2f (%d)', $8, int($7))) with labels font ',10'
set output 'needle_heat_simlayerkv-d095_B128.png'
set title "needle retrieval, simlayerkv-d095, B = 128 (SmolLM2, end-of-prompt compression)"
plot "< grep '^simlayerkv-d095,128,' needle_grid.csv" using 5:6:(0.5):(0.5):8 with boxxyerror fs solid 1.0 lc palette, '' using 5:6:(sprintf('%.2f (%d)', $8, int($7))) with labels font ',10'
set output 'needle_heat_simlayerkv-imp065_B128.png'
set title "needle retrieval, simlayerkv-imp065, B = 128 (SmolLM2, end-of-prompt compression)"
plot "< grep '^simlayerkv-imp065,128,' needle_grid.csv" using 5:6:(0.5):(0.5):8 with boxxyerror fs solid 1.0 lc palette, '' using 5:6:(sprintf('%.2f (%d)', $8, int($7))) with labels font ',10'
set output 'needle_heat_simlayerkv-imp080_B128.png'
set title "needle retrieval, simlayerkv-imp080, B = 128 (SmolLM2, end-of-prompt compression)"
plot "< grep '^simlayerkv-imp080,128,' needle_grid.csv" using 5:6:(0.5):(0.5):8 with boxxyerror fs solid 1.0 lc palette, '' using 5:6:(sprintf('%.2f (%d)', $8, int($7))) with labels font ',10'
set output 'needle_heat_simlayerkv-imp090_B128.png'
set title "needle retrieval, simlayerkv-imp090, B = 128 (SmolLM2, end-of-prompt compression)"
plot "< grep '^simlayerkv-imp090,128,' needle_grid.csv" using 5:6:(0.5):(0.5):8 with boxxyerror fs solid 1.0 lc palette, '' using 5:6:(sprintf('%.2f (%d)', $8, int($7))) with labels font ',10'
set output 'needle_heat_simlayerkv-imp095_B128.png'
set title "needle retrieval, simlayerkv-imp095, B = 128 (SmolLM2, end-of-prompt compression)"
plot "< grep '^simlayerkv-imp095,128,' needle_grid.csv" using 5:6:(0.5):(0.5):8 with boxxyerror fs solid 1.0 lc palette, '' using 5:6:(sprintf('%.2f (%d)', $8, int($7))) with labels font ',10'
set output 'needle_heat_simlayerkv-ems_B128.png'
set title "needle retrieval, simlayerkv-ems, B = 128 (SmolLM2, end-of-prompt compression)"
plot "< grep '^simlayerkv-ems,128,' needle_grid.csv" using 5:6:(0.5):(0.5):8 with boxxyerror fs solid 1.0 lc palette, '' using 5:6:(sprintf('%.2f (%d)', $8, int($7))) with labels font ',10'
set output 'needle_heat_simlayerkv-h2o_B128.png'
set title "needle retrieval, simlayerkv-h2o, B = 128 (SmolLM2, end-of-prompt compression)"
plot "< grep '^simlayerkv-h2o,128,' needle_grid.csv" using 5:6:(0.5):(0.5):8 with boxxyerror fs solid 1.0 lc palette, '' using 5:6:(sprintf('%.2f (%d)', $8, int($7))) with labels font ',10'
set output 'needle_heat_simlayerkv-snapkv_B128.png'
set title "needle retrieval, simlayerkv-snapkv, B = 128 (SmolLM2, end-of-prompt compression)"
plot "< grep '^simlayerkv-snapkv,128,' needle_grid.csv" using 5:6:(0.5):(0.5):8 with boxxyerror fs solid 1.0 lc palette, '' using 5:6:(sprintf('%.2f (%d)', $8, int($7))) with labels font ',10'
set output 'needle_heat_simlayerkv-int8_B128.png'
set title "needle retrieval, simlayerkv-int8, B = 128 (SmolLM2, end-of-prompt compression)"
plot "< grep '^simlayerkv-int8,128,' needle_grid.csv" using 5:6:(0.5):(0.5):8 with boxxyerror fs solid 1.0 lc palette, '' using 5:6:(sprintf('%.2f (%d)', $8, int($7))) with labels font ',10'
set output 'needle_heat_simlayerkv-int4_B128.png'
set title "needle retrieval, simlayerkv-int4, B = 128 (SmolLM2, end-of-prompt compression)"
plot "< grep '^simlayerkv-int4,128,' needle_grid.csv" using 5:6:(0.5):(0.5):8 with boxxyerror fs solid 1.0 lc palette, '' using 5:6:(sprintf('%.2f (%d)', $8, int($7))) with labels font ',10'
set output 'needle_heat_simlayerkv-int2_B128.png'
set title "needle retrieval, simlayerkv-int2, B = 128 (SmolLM2, end-of-prompt compression)"
plot "< grep '^simlayerkv-int2,128,' needle_grid.csv" using 5:6:(0.5):(0.5):8 with boxxyerror fs solid 1.0 lc palette, '' using 5:6:(sprintf('%.2f (%d)', $8, int($7))) with labels font ',10'
set output 'needle_heat_simlayerkv-ems-int4_B128.png'
set title "needle retrieval, simlayerkv-ems-int4, B = 128 (SmolLM2, end-of-prompt compression)"
plot "< grep '^simlayerkv-ems-int4,128,' needle_grid.csv" using 5:6:(0.5):(0.5):8 with boxxyerror fs solid 1.0 lc palette, '' using 5:6:(sprintf('%.2f (%d)', $8, int($7))) with labels font ',10'
