#!/usr/bin/env bash
# Several instances of the example service on one database, over a cluster of three
# memcached nodes (ketama: each key on one node, the same node for every instance);
# each instance has its near cache (--near-ms 100) kept coherent through memcached.
# Ctrl-C stops everything.
#   scripts/cluster.sh                   2 instances on 8000, 8001; memcached from 11311
#   INSTANCES=3 PORT=9000 scripts/cluster.sh
#   NODES=5 scripts/cluster.sh           more memcached nodes
#   TWEMPROXY=1 scripts/cluster.sh       the instances talk to twemproxy (nutcracker), which
#                                        shards over the nodes (apt-get install nutcracker)
#   scripts/cluster.sh --near-ms 0       extra flags go to every instance
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

instances=${INSTANCES:-2}
nodes=${NODES:-3}
first_port=${PORT:-8000}
[[ "$instances" =~ ^[1-9]$ ]] || { echo "cluster.sh: INSTANCES must be 1..9" >&2; exit 2; }
[[ "$nodes" =~ ^[1-9]$ ]] || { echo "cluster.sh: NODES must be 1..9" >&2; exit 2; }

scripts/deps.sh
if [[ -n "${TWEMPROXY:-}" ]] && ! command -v nutcracker >/dev/null; then
  if ((EUID == 0)); then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q nutcracker >&2
  else
    echo "cluster.sh: TWEMPROXY=1 needs nutcracker (apt-get install nutcracker)" >&2
    exit 1
  fi
fi

build=build/run
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DCACHEASIDE_BUILD_TESTS=OFF \
  -DCACHEASIDE_BUILD_BENCH=OFF -DCACHEASIDE_BUILD_EXAMPLES=ON >/dev/null
cmake --build "$build" -j 2 --target user_service

. scripts/lib/ports.sh

work=$(mktemp -d /tmp/cacheaside_cluster.XXXXXX)
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
  echo "stopped $instances instance(s) and $nodes memcached node(s)"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

servers=()
mc_port=11311
for ((n = 0; n < nodes; n++)); do
  mc_port=$(free_port "$mc_port")
  mc_args=(-l 127.0.0.1 -p "$mc_port" -U 0 -m 64)
  ((EUID == 0)) && mc_args+=(-u nobody)
  memcached "${mc_args[@]}" &
  pids+=($!)
  wait_port "$mc_port" "${pids[-1]}"
  echo "memcached node $((n + 1)) on 127.0.0.1:$mc_port (pid ${pids[-1]})"
  servers+=("127.0.0.1:$mc_port")
  mc_port=$((mc_port + 1))
done

config=""
if [[ -n "${TWEMPROXY:-}" ]]; then
  proxy_port=$(free_port 22121)
  {
    echo "cacheaside:"
    echo "  listen: 127.0.0.1:$proxy_port"
    echo "  hash: fnv1a_64"
    echo "  distribution: ketama"
    echo "  auto_eject_hosts: true"
    echo "  server_retry_timeout: 2000"
    echo "  server_failure_limit: 2"
    echo "  servers:"
    for s in "${servers[@]}"; do echo "   - $s:1"; done
  } >"$work/nutcracker.yml"
  nutcracker -c "$work/nutcracker.yml" &
  pids+=($!)
  wait_port "$proxy_port" "${pids[-1]}"
  echo "twemproxy on 127.0.0.1:$proxy_port in front of ${servers[*]}"
  config="--SERVER=127.0.0.1:$proxy_port"
  set -- --protocol classic "$@"  # twemproxy passes no meta commands
else
  for s in "${servers[@]}"; do config+="--SERVER=$s "; done
  config=${config% }
fi

mkdir -p data
for ((i = 0; i < instances; i++)); do
  port=$((first_port + i))
  if port_taken "$port"; then
    echo "cluster.sh: port $port is taken; set PORT to another first port" >&2
    exit 1
  fi
  seed=0
  ((i == 0)) && seed=100  # the first seeds an empty table; the others share it
  "$build/examples/user_service/user_service" --host 127.0.0.1 --port "$port" \
    --db data/users.db --memcached "$config" --seed "$seed" --quiet "$@" &
  pids+=($!)
  wait_port "$port" "${pids[-1]}"
  echo "instance $((i + 1)): http://127.0.0.1:$port"
done
echo "try: curl -X PUT -H 'Content-Type: application/json' -d '{\"name\":\"Ada\",\"email\":\"a@x.org\"}' \\"
echo "       http://127.0.0.1:$first_port/users/5; curl http://127.0.0.1:$((first_port + 1))/users/5"
echo "(every instance sees the PUT within --near-ms, 100 ms by default; Ctrl-C stops everything)"
wait -n "${pids[@]}"
