# Draws the benchmark charts (SVG) from the CSV files bench/figures.py writes.
#   gnuplot -e "data='docs/bench'; img='docs/img'; stamp='...'" bench/charts.gp
set datafile separator ','
set key autotitle columnhead
set terminal svg size 760,420 dynamic enhanced font 'Helvetica,12' background rgb 'white'
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set key top left noenhanced
set grid ytics lc rgb '#dddddd'
set xtics noenhanced nomirror
set ytics nomirror
set border 3
set linetype 1 lc rgb '#8c8c8c'
set linetype 2 lc rgb '#3b75af'
set linetype 3 lc rgb '#e1812c'
set linetype 4 lc rgb '#3a923a'
set linetype 5 lc rgb '#c03d3e'
if (!exists('stamp')) stamp = ''

# 1. cacheaside vs raw libmemcached, per store.
set output img.'/bench-stores.svg'
set title "Latency per operation, p50 (log scale; lower is better)\n{/*0.8 ".stamp."}"
set ylabel 'µs'
set logscale y
set yrange [10:*]
plot data.'/stores.csv' using 2:xtic(1), \
     '' using 3, \
     '' using 4, \
     '' using ($0 - 0.25):($2 * 1.12):(sprintf('%.0f', $2)) with labels notitle font ',9', \
     '' using ($0):($3 * 1.12):(sprintf('%.0f', $3)) with labels notitle font ',9', \
     '' using ($0 + 0.25):($4 * 1.12):(sprintf('%.0f', $4)) with labels notitle font ',9'

# 2. Near-cache hit vs a raw libmemcached get.
set output img.'/bench-near.svg'
set title "Near-cache hit vs raw libmemcached get, p50 (log scale)\n{/*0.8 ".stamp."}"
set yrange [0.01:*]
set linetype 2 lc rgb '#3a923a'
plot data.'/near.csv' using 2:xtic(1), \
     '' using 3, \
     '' using ($0 - 0.17):($2 * 1.15):(sprintf('%.1f µs', $2)) with labels notitle font ',9', \
     '' using ($0 + 0.17):($3 * 1.15):(sprintf('%.2f µs', $3)) with labels notitle font ',9'
set linetype 2 lc rgb '#3b75af'

# 3. The example service: requests per second.
set output img.'/service-rps.svg'
set title "Example service under wrk -t1 -c16, req/s (higher is better)\n{/*0.8 ".stamp."}"
set ylabel 'requests / s'
unset logscale y
set yrange [0:*]
set key below horizontal
set linetype 1 lc rgb '#3a923a'
set linetype 2 lc rgb '#3b75af'
set linetype 3 lc rgb '#8c8c8c'
set linetype 4 lc rgb '#cccccc'
set linetype 5 lc rgb '#c03d3e'
plot for [i=2:6] data.'/service_rps.csv' using i:xtic(1) title columnhead(i)

# 4. The example service: latency percentiles, both routes.
set output img.'/service-latency.svg'
set terminal svg size 900,460 dynamic enhanced font 'Helvetica,12' background rgb 'white'
set multiplot layout 1,2 title "Example service latency percentiles under wrk -t1 -c16 (lower is better)\n{/*0.8 ".stamp."}"
set ylabel 'ms'
set key below horizontal font ',10'
set title 'GET /users/5'
plot for [i=2:5] data.'/service_latency_user.csv' using (column(i) / 1000):xtic(1) title columnhead(i)
set title 'GET /users/ (100 users)'
plot for [i=2:5] data.'/service_latency_list.csv' using (column(i) / 1000):xtic(1) title columnhead(i)
unset multiplot
