#!/usr/bin/env bash
# The main job: builds the example user service, starts a private memcached on loopback
# (TLS and credentials, made here once in data/), seeds 100 users into data/users.db and
# serves http://127.0.0.1:8000 until Ctrl-C, which stops memcached too.
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

mkdir -p data/tls
# What the service and its memcached share, made once: a CA and a certificate for
# 127.0.0.1 (TLS), credentials (memcached -Y), and the key that signs cached values.
# Secrets are readable by this user only and never passed on a command line.
(
  umask 077
  if [[ ! -s data/tls/server.pem ]]; then
    ossl() { openssl "$@" >/dev/null 2>&1; }
    ossl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
      -subj "/CN=user_service memcached CA" -keyout data/tls/ca.key -out data/tls/ca.pem
    ossl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=127.0.0.1" \
      -keyout data/tls/server.key -out data/tls/server.csr
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >data/tls/server.ext
    ossl x509 -req -in data/tls/server.csr -CA data/tls/ca.pem -CAkey data/tls/ca.key \
      -CAcreateserial -days 3650 -extfile data/tls/server.ext -out data/tls/server.pem
    chmod 644 data/tls/ca.pem data/tls/server.pem  # certificates are public
  fi
  [[ -s data/memcached.auth ]] ||
    printf 'user_service:%s\n' "$(head -c 24 /dev/urandom | base64 -w0 | tr -d '/+=')" \
      >data/memcached.auth
  [[ -s data/signing.keys ]] ||
    printf 'k1 %s\n' "$(head -c 32 /dev/urandom | base64 -w0)" >data/signing.keys
)
mc_args=(-l 127.0.0.1 -p "$mc_port" -U 0 -m 64 -F -X -W -Y data/memcached.auth
  -Z -o "ssl_chain_cert=data/tls/server.pem,ssl_key=data/tls/server.key")
if ((EUID == 0)); then
  # memcached reads its files as the user it runs as.
  mc_args+=(-u nobody)
  chown nobody data/memcached.auth data/tls/server.key
fi
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

"$build/examples/user_service/user_service" --host 127.0.0.1 --port "$http_port" \
  --db data/users.db --memcached "--SERVER=127.0.0.1:$mc_port" --seed 100 \
  --signing-keys data/signing.keys --memcached-auth-file data/memcached.auth \
  --memcached-tls-ca data/tls/ca.pem "$@" &
svc_pid=$!
echo "try: curl http://127.0.0.1:$http_port/users/5   (Ctrl-C stops everything)"
wait "$svc_pid"
