#!/usr/bin/env bash
# Load test of the example service with wrk: GET /users/5 and GET /users/, with the cache
# and with --no-cache (straight SQLite), against a private memcached on loopback.
#   bench/load.sh                 wrk -t1 -c16 -d10s, as the reference figures were taken
#   DURATION=3s bench/load.sh     shorter
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/deps.sh >/dev/null
build=build/run
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DCACHEASIDE_BUILD_TESTS=OFF \
  -DCACHEASIDE_BUILD_BENCH=OFF -DCACHEASIDE_BUILD_EXAMPLES=ON >/dev/null
cmake --build "$build" -j 2 --target user_service >/dev/null
bin="$build/examples/user_service/user_service"

duration=${DURATION:-10s}
threads=${THREADS:-8}
port_taken() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() {
  local p=$1
  while port_taken "$p"; do p=$((p + 1)); done
  echo "$p"
}
wait_port() {
  for _ in $(seq 100); do port_taken "$1" && return 0; sleep 0.05; done
  echo "load.sh: nothing listens on $1" >&2
  return 1
}

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

mc_port=$(free_port 21211)
mc_args=(-l 127.0.0.1 -p "$mc_port" -U 0 -t 2)
((EUID == 0)) && mc_args+=(-u nobody)
memcached "${mc_args[@]}" &
pids+=($!)
wait_port "$mc_port"

# One service per mode, on the same seeded database.
"$bin" --seed 100 --db "$work/users.db" --port "$(free_port 18080)" --no-cache --quiet >/dev/null &
seed_pid=$!
sleep 1
kill "$seed_pid"
wait "$seed_pid" 2>/dev/null || true

declare -A reference=(["/users/5"]=1600 ["/users/"]=380)
echo "| mode | route | req/s | p50 | p99 | vs FastAPI reference |"
echo "|---|---|---:|---:|---:|---:|"
for mode in cache no-cache; do
  port=$(free_port 18080)
  extra=()
  [[ $mode == no-cache ]] && extra=(--no-cache)
  "$bin" --db "$work/users.db" --port "$port" --threads "$threads" --quiet \
    --memcached "--SERVER=127.0.0.1:$mc_port" "${extra[@]}" >/dev/null &
  pids+=($!)
  wait_port "$port"
  for route in /users/5 /users/; do
    url="http://127.0.0.1:$port$route"
    curl -s "$url" >/dev/null  # warm: the first request fills the cache
    out=$(wrk -t1 -c16 -d"$duration" --latency "$url")
    rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
    p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
    p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
    errors=$(awk '/Non-2xx|Socket errors/ {print}' <<<"$out")
    ratio=$(awk -v r="$rps" -v ref="${reference[$route]}" 'BEGIN {printf "%.1f×", r / ref}')
    printf "| %s | GET %s | %.0f | %s | %s | %s |\n" "$mode" "$route" "$rps" "$p50" "$p99" "$ratio"
    [[ -z "$errors" ]] || echo "  ($errors)"
  done
  kill "${pids[-1]}"
  wait "${pids[-1]}" 2>/dev/null || true
  unset 'pids[-1]'
done
echo
echo "wrk -t1 -c16 -d$duration --latency; service --threads $threads; memcached and the service on this machine ($(nproc) cores)."
echo "Reference: the original FastAPI service with a pooled pymemcache client, same wrk settings: 1,600 req/s (GET /users/5), 380 req/s (GET /users/)."
