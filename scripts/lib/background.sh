# The background processes of a script (memcached, services, clients), all stopped on
# exit (a frozen one woken first), and a work directory removed with them.
# Source it after ports.sh: . scripts/lib/background.sh <work dir prefix>
#   pids+=($!)               after starting one
#   start_memcached PORT     a private memcached on the first free port from PORT:
#                            sets mc_port and mc_pid (again on the same port once mc_port is set)

work=$(mktemp -d "/tmp/${1:-cacheaside}.XXXXXX")
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill -CONT "$p" 2>/dev/null || true; kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start_memcached() {
  [[ -n ${mc_port:-} ]] || mc_port=$(free_port "$1")
  local args=(-l 127.0.0.1 -p "$mc_port" -U 0 -t 2 -m 64)
  ((EUID == 0)) && args+=(-u nobody)
  memcached "${args[@]}" >>"$work/memcached.log" 2>&1 &
  mc_pid=$!
  pids+=("$mc_pid")
  wait_port "$mc_port" "$mc_pid"
}
