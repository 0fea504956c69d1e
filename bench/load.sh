#!/usr/bin/env bash
# Load test of the example service with wrk: GET /users/5 and GET /users/, with the cache
# (near cache + a private memcached on loopback, the default), with memcached alone
# (--near-ms 0) and with --no-cache (straight SQLite), 100 seeded users; beside them, in
# the same run, the lesson's FastAPI service (bench/fastapi_service.py, uvicorn, its own
# memcached, the same database).
#   bench/load.sh                  wrk -t1 -c16 -d10s --latency, one run per cell
#   RUNS=3 bench/load.sh           median of 3 runs per cell (by req/s)
#   DURATION=3s bench/load.sh      shorter runs
#   THREADS=2 bench/load.sh        the service's (and the ceiling's) io threads (default 1:
#                                  wrk takes the other core of this 2-core machine)
#   CONNECTIONS="16 256" bench/load.sh   wrk's connection counts (default 16)
#   PREVIOUS=path bench/load.sh    also a previous build of the service (mode "previous", run
#                                  with a thread per connection, as its cpp-httplib needs)
#   USER_SERVICE=path bench/load.sh   an already built service instead of the release preset
#   CSV=file bench/load.sh         also write the figures (median run per cell) as CSV:
#                                  mode,route,rps,p50_us,p75_us,p90_us,p99_us
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

duration=${DURATION:-10s}
runs=${RUNS:-1}
threads=${THREADS:-1}
conns_list=(${CONNECTIONS:-16})
max_conns=0
for c in "${conns_list[@]}"; do ((c > max_conns)) && max_conns=$c; done
[[ "$runs" =~ ^[1-9][0-9]?$ ]] || { echo "load.sh: RUNS must be 1..99" >&2; exit 2; }

# wrk, memcached, curl and the build tools.
if [[ -x scripts/deps.sh ]]; then scripts/deps.sh >&2; fi

bin=${USER_SERVICE:-build/release/examples/user_service/user_service}
ceiling=${HTTP_CEILING:-build/release/bench/http_ceiling}
if [[ -z "${USER_SERVICE:-}" ]]; then
  # Configure once; the build is a no-op when the binary is up to date.
  [[ -x "$bin" ]] || cmake --preset release >&2
  cmake --build --preset release -j 2 --target user_service http_ceiling >&2
fi
[[ -x "$bin" ]] || { echo "load.sh: $bin was not built" >&2; exit 1; }

. scripts/lib/ports.sh
. scripts/lib/background.sh cacheaside_load
start_memcached 21211

# Both services on one database; the first seeds it (--seed fills only an empty table)
# before it listens, so the second starts on the seeded file.
declare -A port
modes=(cache memcached no-cache)
for mode in "${modes[@]}"; do
  extra=(--memcached "--SERVER=127.0.0.1:$mc_port")
  [[ $mode == memcached ]] && extra+=(--near-ms 0)
  [[ $mode == no-cache ]] && extra=(--no-cache)
  port[$mode]=$(free_port $((18080 + ${#pids[@]})))
  "$bin" --host 127.0.0.1 --port "${port[$mode]}" --db "$work/users.db" --seed 100 \
    --threads "$threads" --quiet "${extra[@]}" >"$work/$mode.log" 2>&1 &
  pids+=($!)
  wait_port "${port[$mode]}" "${pids[-1]}" || { cat "$work/$mode.log" >&2; exit 1; }
done

# A previous build (0.2: cpp-httplib, a thread per keep-alive connection).
if [[ -n ${PREVIOUS:-} ]]; then
  port[previous]=$(free_port $((18080 + ${#pids[@]})))
  "$PREVIOUS" --host 127.0.0.1 --port "${port[previous]}" --db "$work/users.db" --seed 100 \
    --threads $((max_conns + 16)) --quiet --memcached "--SERVER=127.0.0.1:$mc_port" \
    >"$work/previous.log" 2>&1 &
  pids+=($!)
  wait_port "${port[previous]}" "${pids[-1]}" || { cat "$work/previous.log" >&2; exit 1; }
  modes+=(previous)
fi

# The lesson's FastAPI service on Debian's python3-fastapi, python3-uvicorn and
# python3-pymemcache (Debian's python, whatever python3 is first on PATH), with a memcached
# of its own: its values are plain JSON, ours are enveloped. Checked to answer as the
# lesson's does before it is measured.
py=/usr/bin/python3
if "$py" -c 'import fastapi, uvicorn, pymemcache' 2>/dev/null; then
  fa_mc_port=$(free_port 21311)
  fa_mc_args=(-l 127.0.0.1 -p "$fa_mc_port" -U 0 -t 2 -m 64)
  ((EUID == 0)) && fa_mc_args+=(-u nobody)
  memcached "${fa_mc_args[@]}" >>"$work/memcached-fastapi.log" 2>&1 &
  pids+=($!)
  wait_port "$fa_mc_port" "${pids[-1]}"
  port[fastapi]=$(free_port $((18080 + ${#pids[@]})))
  USERS_DB="$work/users.db" MEMCACHED_PORT="$fa_mc_port" "$py" -m uvicorn --app-dir bench \
    fastapi_service:app --host 127.0.0.1 --port "${port[fastapi]}" --log-level warning \
    >"$work/fastapi.log" 2>&1 &
  pids+=($!)
  wait_port "${port[fastapi]}" "${pids[-1]}" || { cat "$work/fastapi.log" >&2; exit 1; }
  for check in '/users/3 200 {"id":3,"name":"user3","email":"user3@example.com"}' \
    '/users/12345 404 {"detail":"Not Found"}'; do
    read -r path want_code want_body <<<"$check"
    for _ in 1 2; do  # a miss, then a hit
      got=$(curl -s -w ' %{http_code}' "http://127.0.0.1:${port[fastapi]}$path")
      [[ $got == "$want_body $want_code" ]] ||
        { echo "load.sh: the FastAPI service answered GET $path with '$got'" >&2; exit 1; }
    done
  done
  modes+=(fastapi)
else
  echo "load.sh: no python3-fastapi, python3-uvicorn or python3-pymemcache: no FastAPI figures" >&2
fi

# The ceiling: the same HTTP stack answering the same bodies with nothing behind it.
if [[ -x "$ceiling" ]]; then
  curl -s "http://127.0.0.1:${port[no-cache]}/users/5" >"$work/user.json"
  curl -s "http://127.0.0.1:${port[no-cache]}/users/" >"$work/list.json"
  port[http-only]=$(free_port $((18080 + ${#pids[@]})))
  "$ceiling" "${port[http-only]}" "$threads" "$work/user.json" "$work/list.json" \
    >"$work/http-only.log" 2>&1 &
  pids+=($!)
  wait_port "${port[http-only]}" "${pids[-1]}"
  modes+=(http-only)
fi

# How many of 16 keep-alive connections, all open at once, the service on port answers
# within a second (GET path, /healthz by default). wrk reports no error for a connection that is never answered.
answered_at_once() {
  local fds=() fd line n=0 i
  for ((i = 0; i < 16; i++)); do
    exec {fd}<>"/dev/tcp/127.0.0.1/$1" || continue
    printf 'GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n' "${2:-/healthz}" >&"$fd"
    fds+=("$fd")
  done
  sleep 1  # one second for all of them, not one each
  for fd in "${fds[@]}"; do
    if read -r -t 0.05 line <&"$fd" && [[ $line == "HTTP/1.1 200"* ]]; then n=$((n + 1)); fi
  done
  for fd in "${fds[@]}"; do exec {fd}<&-; done
  echo "$n"
}

# wrk's latency ("177.00us", "1.06ms", "1.20s") in µs.
to_us() {
  awk -v v="$1" 'BEGIN {
    n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
    if (u == "us") m = 1; else if (u == "ms") m = 1000; else if (u == "s") m = 1e6
    else if (u == "m") m = 6e7; else { print "nan"; exit }
    printf "%.1f", n * m }'
}
pretty_us() {
  awk -v us="$1" 'BEGIN {
    if (us == "nan") print "?"; else if (us < 1000) printf "%.0f µs", us
    else if (us < 1e6) printf "%.2f ms", us / 1000; else printf "%.2f s", us / 1e6 }'
}

declare -A answered
for mode in "${modes[@]}"; do
  path=/healthz
  [[ $mode == fastapi ]] && path=/users/1  # the lesson's service has no /healthz
  answered[$mode]=$(answered_at_once "${port[$mode]}" "$path")
done

routes=(/users/5 /users/)
# results[mode route conns] = lines "rps p50_us p99_us problems p75_us p90_us", one per run.
declare -A results
for ((run = 1; run <= runs; run++)); do
  for conns in "${conns_list[@]}"; do
    for mode in "${modes[@]}"; do
      for route in "${routes[@]}"; do
        url="http://127.0.0.1:${port[$mode]}$route"
        # The first request loads the value into memcached; the cached figures are hits.
        code=$(curl -s -o /dev/null -w '%{http_code}' "$url")
        [[ $code == 200 ]] || { echo "load.sh: GET $url answered $code" >&2; exit 1; }
        out=$(wrk -t1 -c"$conns" -d"$duration" --latency "$url")
        rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
        p50=$(to_us "$(awk '$1 == "50%" {print $2}' <<<"$out")")
        p99=$(to_us "$(awk '$1 == "99%" {print $2}' <<<"$out")")
        p75=$(to_us "$(awk '$1 == "75%" {print $2}' <<<"$out")")
        p90=$(to_us "$(awk '$1 == "90%" {print $2}' <<<"$out")")
        problems=$(awk '/Non-2xx|Socket errors/ {sub(/^ +/, ""); printf "%s; ", $0}' <<<"$out")
        [[ -n "$rps" ]] || { echo "$out" >&2; echo "load.sh: no req/s from wrk" >&2; exit 1; }
        echo "run $run/$runs: -c$conns $mode GET $route $rps req/s, p50 $p50 µs, p99 $p99 µs $problems" >&2
        results["$mode $route $conns"]+="$rps $p50 $p99 ${problems// /_}- $p75 $p90"$'\n'
      done
    done
  done
done

declare -A mode_name=([cache]="cacheaside: near cache + memcached (default)"
  [memcached]="cacheaside: memcached only (\`--near-ms 0\`)" [no-cache]="\`--no-cache\` (SQLite)"
  [http-only]="ceiling: the same HTTP stack, fixed bodies, nothing behind"
  [previous]="previous build (${PREVIOUS_NAME:-0.2}: cpp-httplib, blocking cache)"
  [fastapi]="the lesson's FastAPI service (uvicorn, pymemcache)")
declare -A route_name=(["/users/5"]="\`GET /users/5\`" ["/users/"]="\`GET /users/\` (100 users)")
# The run with the median req/s: "rps p50 p99 problems p75 p90".
median_row() {
  sort -g -k1,1 <<<"${results["$1"]%$'\n'}" | awk -v n="$runs" 'NR == int((n + 1) / 2)'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f×", a / b; else print "–" }'; }
has_mode() { [[ " ${modes[*]} " == *" $1 "* ]]; }
echo
header="| wrk -c | mode | route | req/s | p50 | p99 | vs \`--no-cache\` |"
sep="|---:|---|---|---:|---:|---:|---:|"
has_mode previous && header+=" vs previous |" && sep+="---:|"
has_mode http-only && header+=" vs ceiling |" && sep+="---:|"
has_mode fastapi && header+=" vs FastAPI |" && sep+="---:|"
echo "$header"
echo "$sep"
csv_rows=""
for conns in "${conns_list[@]}"; do
  for mode in "${modes[@]}"; do
    for route in "${routes[@]}"; do
      read -r rps p50 p99 problems p75 p90 < <(median_row "$mode $route $conns")
      problems=${problems%-}
      csv_rows+="$mode,$route,$conns,$rps,$p50,$p75,$p90,$p99"$'\n'
      db=$(median_row "no-cache $route $conns" | awk '{print $1}')
      rps_fmt=$(LC_ALL=C awk -v r="$rps" 'BEGIN {
        s = sprintf("%.0f", r); out = ""
        while (length(s) > 3) { out = "," substr(s, length(s) - 2) out; s = substr(s, 1, length(s) - 3) }
        print s out }')
      note=""
      [[ -n "$problems" ]] && note=" (wrk: ${problems//_/ })"
      row="| $conns | ${mode_name[$mode]} | ${route_name[$route]} | $rps_fmt$note | $(pretty_us "$p50") | $(pretty_us "$p99") | $(ratio "$rps" "$db") |"
      if has_mode previous; then
        row+=" $(ratio "$rps" "$(median_row "previous $route $conns" | awk '{print $1}')") |"
      fi
      if has_mode http-only; then
        row+=" $(ratio "$rps" "$(median_row "http-only $route $conns" | awk '{print $1}')") |"
      fi
      if has_mode fastapi; then
        row+=" $(ratio "$rps" "$(median_row "fastapi $route $conns" | awk '{print $1}')") |"
      fi
      echo "$row"
    done
  done
done
echo
for mode in "${modes[@]}"; do
  if ((${answered[$mode]} < 16)); then
    echo "Only ${answered[$mode]} of 16 keep-alive connections open at once were answered ($mode):"
    echo "wrk's other connections waited all run long."
  fi
done
if ((runs > 1)); then what="median of $runs runs by req/s"; else what="one run"; fi
echo "wrk -t1 -c{${conns_list[*]}} -d$duration --latency, $what; user_service --threads $threads --seed 100;"
echo "memcached -t 2 and the service on this machine ($(nproc) cores)."
if [[ -n ${CSV:-} ]]; then
  {
    echo "mode,route,connections,rps,p50_us,p75_us,p90_us,p99_us"
    printf '%s' "$csv_rows"
  } >"$CSV"
fi
