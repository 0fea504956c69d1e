#!/usr/bin/env bash
# Reads through a memcached outage under writes: the example service (async cache over
# the meta protocol, near cache off) answers wrk -c32 on GET /users/<random id> while
# another client PUTs a random user every 50 ms; in the middle of the run memcached is
# frozen (SIGSTOP) for 2 s, or killed and restarted 1 s later. Prints wrk's latency
# percentiles and the service's lease counters. Nothing may fail; the tail shows whether
# reads waited out lease_wait behind leases nobody loads under.
#   bench/outage.sh                    freeze, the release build's service
#   OUTAGE=kill bench/outage.sh        kill, then restart
#   USER_SERVICE=path bench/outage.sh  another build (e.g. a previous commit's)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

outage=${OUTAGE:-freeze}
[[ $outage == freeze || $outage == kill ]] || { echo "outage.sh: OUTAGE is freeze or kill" >&2; exit 2; }
bin=${USER_SERVICE:-build/release/examples/user_service/user_service}
if [[ -z "${USER_SERVICE:-}" ]]; then
  [[ -x "$bin" ]] || cmake --preset release >&2
  cmake --build --preset release -j 2 --target user_service >&2
fi
[[ -x "$bin" ]] || { echo "outage.sh: $bin was not built" >&2; exit 1; }

. scripts/lib/ports.sh
. scripts/lib/background.sh cacheaside_outage
start_memcached 21311

port=$(free_port 18380)
"$bin" --host 127.0.0.1 --port "$port" --db "$work/users.db" --seed 100 --threads 1 \
  --near-ms 0 --quiet --memcached "--SERVER=127.0.0.1:$mc_port" >"$work/service.log" 2>&1 &
pids+=($!)
wait_port "$port" "${pids[-1]}" || { cat "$work/service.log" >&2; exit 1; }

cat >"$work/get.lua" <<'EOF'
math.randomseed(os.time())
request = function()
  return wrk.format("GET", "/users/" .. math.random(1, 100))
end
EOF

# The writer: a PUT of a random user every 50 ms.
(
  i=0
  while :; do
    id=$((RANDOM % 100 + 1))
    curl -s -o /dev/null -X PUT -H 'Content-Type: application/json' \
      -d "{\"name\":\"w$i\",\"email\":\"w$i@x\"}" "http://127.0.0.1:$port/users/$id" || true
    i=$((i + 1))
    sleep 0.05
  done
) &
pids+=($!)

wrk -t1 -c32 -d10s --latency -s "$work/get.lua" "http://127.0.0.1:$port" >"$work/wrk.txt" &
wrk_pid=$!
sleep 4
if [[ $outage == freeze ]]; then
  kill -STOP "$mc_pid"
  sleep 2
  kill -CONT "$mc_pid"
else
  kill -KILL "$mc_pid"
  wait "$mc_pid" 2>/dev/null || true
  sleep 1
  start_memcached
fi
wait "$wrk_pid"

echo "outage: $outage (service: $bin)"
grep -E "Latency|50%|75%|90%|99%|requests in|Non-2xx|Socket errors" "$work/wrk.txt"
curl -s "http://127.0.0.1:$port/metrics" | grep -E "^cacheaside_(lease_waits|lease_timeouts|stale_sets_prevented|cache_errors)" || true
