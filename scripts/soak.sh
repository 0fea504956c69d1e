#!/usr/bin/env bash
# Soak: the example service with its own memcached under a mixed load (hits, the list,
# misses over a wide id range, PUTs that invalidate, bad requests), sampled every few
# seconds: RSS, open descriptors, threads, req/s, p50/p99, 5xx answers, cache counters.
# Writes a CSV, prints a line per sample and a summary table, and fails when, after a
# warm-up, memory or descriptors trend upward (the slope of a least-squares line, not a
# single reading) beyond the tolerances below, or when any request got a 5xx.
#
#   scripts/soak.sh                        10 minutes, request log on (to /dev/null)
#   scripts/soak.sh --quiet                flags after the options go to user_service
#   DURATION=60 scripts/soak.sh            seconds
#   RESTART_MEMCACHED=1 scripts/soak.sh    kill and restart memcached halfway; then RSS and
#                                          descriptors must come back to their level and no
#                                          5xx may follow once it settles (one sample)
#   INTERVAL=5                             seconds per sample (one wrk run each)
#   OUT=dir                                where the CSV and logs go (default: a new temp dir)
#   USER_SERVICE=path                      a built user_service (default: the release preset)
#   WARMUP=secs                            not judged (default: the first quarter)
#   RSS_SLOPE_KB_MIN=256 FD_SLOPE_MIN=0.5  tolerances after the warm-up
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

duration=${DURATION:-600}
interval=${INTERVAL:-5}
rss_tol=${RSS_SLOPE_KB_MIN:-256}
fd_tol=${FD_SLOPE_MIN:-0.5}
restart=${RESTART_MEMCACHED:-0}
warmup=${WARMUP:-$((duration / 4))}
[[ "$duration" =~ ^[0-9]+$ && "$interval" =~ ^[0-9]+$ && $interval -ge 1 ]] ||
  { echo "soak.sh: DURATION and INTERVAL are whole seconds" >&2; exit 2; }
samples=$((duration / interval))
((samples >= 4)) || { echo "soak.sh: DURATION must allow 4 samples of INTERVAL" >&2; exit 2; }

scripts/deps.sh >&2
bin=${USER_SERVICE:-build/release/examples/user_service/user_service}
if [[ -z "${USER_SERVICE:-}" ]]; then
  [[ -x "$bin" ]] || cmake --preset release >&2
  cmake --build --preset release -j 2 --target user_service >&2
fi
[[ -x "$bin" ]] || { echo "soak.sh: $bin was not built" >&2; exit 1; }

out=${OUT:-$(mktemp -d /tmp/cacheaside_soak.XXXXXX)}
mkdir -p "$out"
csv="$out/soak.csv"

. scripts/lib/ports.sh

mc_pid="" svc_pid=""
cleanup() {
  [[ -n "$svc_pid" ]] && kill "$svc_pid" 2>/dev/null || true
  [[ -n "$mc_pid" ]] && kill "$mc_pid" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mc_port=$(free_port 22311)
start_memcached() {
  local args=(-l 127.0.0.1 -p "$mc_port" -U 0 -m 64 -t 2)
  ((EUID == 0)) && args+=(-u nobody)
  memcached "${args[@]}" >>"$out/memcached.log" 2>&1 &
  mc_pid=$!
  wait_port "$mc_port" "$mc_pid" || { echo "soak.sh: memcached did not start" >&2; exit 1; }
}
start_memcached

http_port=$(free_port 18311)
"$bin" --host 127.0.0.1 --port "$http_port" --db "$out/users.db" --seed 100 \
  --memcached "--SERVER=127.0.0.1:$mc_port" "$@" >/dev/null 2>"$out/service.err" &
svc_pid=$!
wait_port "$http_port" "$svc_pid" || { cat "$out/service.err" >&2; exit 1; }
url="http://127.0.0.1:$http_port"

# The service's TCP connections still open on its side (from /proc/net/tcp: every state
# but LISTEN and TIME_WAIT, which holds no descriptor; CLOSE_WAIT is one wrk has closed).
served_connections() {
  awk -v port="$(printf '%04X' "$http_port")" \
    'NR > 1 && $4 != "0A" && $4 != "06" && substr($2, index($2, ":") + 1) == port {n++} END {print n + 0}' \
    /proc/net/tcp
}

metric() {  # the sum over caches of cacheaside_<name>_total in the metrics text $2
  awk -v n="cacheaside_$1_total{" 'index($0, n) == 1 {s += $2} END {printf "%d", s}' <<<"$2"
}
to_us() {  # wrk's "177.00us" / "1.06ms" / "1.20s" in µs
  awk -v v="$1" 'BEGIN { n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
    m = (u == "us") ? 1 : (u == "ms") ? 1000 : (u == "s") ? 1e6 : 0
    if (m == 0) print "nan"; else printf "%.0f", n * m }'
}

mode="log"
[[ " $* " == *" --quiet "* ]] && mode="quiet"
echo "soak: $mode, ${duration}s in ${samples} samples of ${interval}s, service pid $svc_pid," \
  "memcached :$mc_port$( ((restart)) && echo ', restarted halfway'), files in $out" >&2
echo "t_s,rss_kb,fds,threads,req_s,p50_us,p99_us,requests,errors_5xx,hits,misses,loads,cache_errors" >"$csv"
restart_at=$((samples / 2))
for ((i = 1; i <= samples; i++)); do
  if ((restart && i == restart_at)); then
    kill "$mc_pid"
    wait "$mc_pid" 2>/dev/null || true
    start_memcached
    echo "soak: memcached restarted before sample $i" >&2
  fi
  w=$(wrk -t1 -c8 -d"${interval}s" --latency -s scripts/soak/mixed.lua "$url" 2>&1) || true
  # Descriptors are counted once the service has closed wrk's connections (a request
  # still being answered holds its socket; that is not a leak), for at most 5 s.
  for ((k = 0; k < 50 && $(served_connections) > 0; k++)); do sleep 0.1; done
  kill -0 "$svc_pid" 2>/dev/null || { echo "soak.sh: the service died" >&2; cat "$out/service.err" >&2; exit 1; }
  rps=$(awk '/^Requests\/sec:/ {printf "%.0f", $2}' <<<"$w")
  reqs=$(awk '/requests in/ {print $1}' <<<"$w")
  p50=$(to_us "$(awk '$1 == "50%" {print $2}' <<<"$w")")
  p99=$(to_us "$(awk '$1 == "99%" {print $2}' <<<"$w")")
  e5=$(awk '/^soak_5xx/ {print $2}' <<<"$w")
  [[ -n "$rps" && -n "$reqs" && -n "$e5" ]] || { echo "$w" >&2; echo "soak.sh: no figures from wrk" >&2; exit 1; }
  rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$svc_pid/status")
  thr=$(awk '/^Threads:/ {print $2}' "/proc/$svc_pid/status")
  fds=$(find "/proc/$svc_pid/fd" -mindepth 1 -maxdepth 1 | wc -l)
  m=$(curl -s --max-time 5 "$url/metrics" || true)
  row="$((i * interval)),$rss,$fds,$thr,$rps,$p50,$p99,$reqs,$e5,$(metric hits "$m"),$(metric misses "$m"),$(metric loads "$m"),$(metric cache_errors "$m")"
  echo "$row" >>"$csv"
  printf 'soak %4ds  rss %6d kB  fds %3d  threads %2d  %6d req/s  p50 %5d us  p99 %6d us  5xx %d\n' \
    "$((i * interval))" "$rss" "$fds" "$thr" "$rps" "$p50" "$p99" "$e5" >&2
done

# Verdict: least-squares slopes after the warm-up (at least 2 samples).
awk -F, -v rss_tol="$rss_tol" -v fd_tol="$fd_tol" -v restart="$restart" -v warm_s="$warmup" \
    -v restart_at="$restart_at" -v mode="$mode" -v csv="$csv" '
  NR == 1 { next }
  { n++; t[n] = $1; rss[n] = $2; fd[n] = $3; thr[n] = $4; rps[n] = $5; p99[n] = $7
    req += $8; e5[n] = $9 }
  function slope(v, from, to,    i, k, st, sv, stt, stv, mt) {
    k = 0; st = sv = stt = stv = 0
    for (i = from; i <= to; i++) { k++; st += t[i] / 60; sv += v[i]; stt += (t[i] / 60) ^ 2; stv += (t[i] / 60) * v[i] }
    mt = st / k
    return (stt - k * mt * mt) == 0 ? 0 : (stv - k * mt * (sv / k)) / (stt - k * mt * mt)
  }
  END {
    w = 0; for (i = 1; i <= n; i++) if (t[i] <= warm_s) w = i
    if (w < 2) w = 2
    fail = ""
    if (restart) {
      # Before the restart, and from one sample after it: each stretch must be flat, and
      # the end must come back to the level before.
      b1 = w + 1; e1 = restart_at - 1; b2 = restart_at + 1; e2 = n
      rs = slope(rss, b1, e1); fs = slope(fd, b1, e1)
      rs2 = slope(rss, b2, e2); fs2 = slope(fd, b2, e2); if (rs2 > rs) rs = rs2; if (fs2 > fs) fs = fs2
      if (fd[n] > fd[e1] + 2) fail = fail sprintf(" descriptors %d after vs %d before the restart;", fd[n], fd[e1])
      if (rss[n] > rss[e1] * 1.10 + 1024) fail = fail sprintf(" RSS %d kB after vs %d kB before the restart;", rss[n], rss[e1])
      for (i = b2; i <= n; i++) late5 += e5[i]
      if (late5 > 0) fail = fail sprintf(" %d 5xx after the restart settled;", late5)
    } else {
      rs = slope(rss, w + 1, n); fs = slope(fd, w + 1, n)
      for (i = 1; i <= n; i++) all5 += e5[i]
      if (all5 > 0) fail = fail sprintf(" %d 5xx answers;", all5)
    }
    if (rs > rss_tol) fail = fail sprintf(" RSS grows %.0f kB/min (tolerance %s);", rs, rss_tol)
    if (fs > fd_tol) fail = fail sprintf(" descriptors grow %.2f/min (tolerance %s);", fs, fd_tol)
    tot5 = 0; for (i = 1; i <= n; i++) tot5 += e5[i]
    printf "\n| soak | %s%s |\n|---|---|\n", mode, restart ? ", memcached restarted halfway" : ""
    printf "| duration | %d s (%d samples; warm-up %d) |\n", t[n], n, w
    printf "| requests | %d (%d req/s at the end) |\n", req, rps[n]
    printf "| RSS after warm-up -> end | %d kB -> %d kB (slope %.1f kB/min) |\n", rss[w + 1], rss[n], rs
    printf "| p99 after warm-up -> end | %d us -> %d us |\n", p99[w + 1], p99[n]
    printf "| descriptors | %d -> %d (slope %.2f/min) |\n", fd[w + 1], fd[n], fs
    printf "| threads | %d -> %d |\n", thr[w + 1], thr[n]
    printf "| 5xx answers | %d |\n", tot5
    printf "| CSV | %s |\n", csv
    if (fail != "") { printf "\nFAIL:%s\n", fail; exit 1 }
    printf "\nPASS: flat within %s kB/min RSS and %s descriptors/min\n", rss_tol, fd_tol
  }' "$csv"
