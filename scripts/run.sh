#!/usr/bin/env bash
# The main job: builds the example user service, starts a private memcached on loopback,
# seeds 100 users into data/users.db and serves http://127.0.0.1:8000 until Ctrl-C,
# which stops memcached too.
#   PORT=8080 scripts/run.sh        another HTTP port
#   scripts/run.sh --threads 1      extra flags go to user_service
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/deps.sh

build=build/run
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DCACHEASIDE_BUILD_TESTS=OFF \
  -DCACHEASIDE_BUILD_BENCH=OFF -DCACHEASIDE_BUILD_EXAMPLES=ON >/dev/null
cmake --build "$build" -j 2 --target user_service

. scripts/lib/ports.sh

# memcached: 11211 unless something already listens there.
mc_port=$(free_port 11211)
http_port=${PORT:-8000}
if port_taken "$http_port"; then
  echo "run.sh: port $http_port is taken; set PORT to another one" >&2
  exit 1
fi

mc_args=(-l 127.0.0.1 -p "$mc_port" -U 0 -m 64)
((EUID == 0)) && mc_args+=(-u nobody)
memcached "${mc_args[@]}" &
mc_pid=$!
svc_pid=
cleanup() {
  [[ -n "$svc_pid" ]] && kill "$svc_pid" 2>/dev/null || true
  kill "$mc_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  echo "stopped user_service and memcached (port $mc_port)"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_port "$mc_port" "$mc_pid" || { echo "run.sh: memcached did not start" >&2; exit 1; }
echo "memcached on 127.0.0.1:$mc_port (pid $mc_pid)"

mkdir -p data
# The cached values are signed (docs/security.md) with a key made here once, readable
# only by this user; never passed on the command line.
if [[ ! -s data/signing.keys ]]; then
  (umask 077 && printf 'k1 %s\n' "$(head -c 32 /dev/urandom | base64 -w0)" >data/signing.keys)
fi
"$build/examples/user_service/user_service" --host 127.0.0.1 --port "$http_port" \
  --db data/users.db --memcached "--SERVER=127.0.0.1:$mc_port" --seed 100 \
  --signing-keys data/signing.keys "$@" &
svc_pid=$!
echo "try: curl http://127.0.0.1:$http_port/users/5   (Ctrl-C stops everything)"
wait "$svc_pid"
