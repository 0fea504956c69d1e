# Loopback port helpers for the scripts that start memcached and the service.
# Source it: . scripts/lib/ports.sh

# True when something listens on 127.0.0.1:$1.
port_taken() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# The first free port from $1 on (1000 tried).
free_port() {
  local p=$1 i
  for ((i = 0; i < 1000; i++)); do
    port_taken "$p" || { echo "$p"; return 0; }
    p=$((p + 1))
  done
  echo "no free port from $1" >&2
  return 1
}

# Until port $1 listens: 10 s at most, or until process $2 is gone.
wait_port() {
  local i
  for ((i = 0; i < 200; i++)); do
    port_taken "$1" && return 0
    kill -0 "$2" 2>/dev/null || break
    sleep 0.05
  done
  echo "nothing listens on 127.0.0.1:$1" >&2
  return 1
}
