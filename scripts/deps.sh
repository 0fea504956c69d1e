#!/usr/bin/env bash
# Installs the Debian packages cacheaside needs to build, test, run the examples and
# benchmark, only those that are missing. Run it, or source it and call cacheaside_deps.

CACHEASIDE_DEB_PACKAGES=(
  build-essential cmake pkg-config
  libmemcached-dev libmemcached-tools memcached
  nlohmann-json3-dev catch2 libsqlite3-dev libbenchmark-dev
  python3 python3-pymemcache python3-fastapi python3-uvicorn wrk sqlite3 curl
  clang libclang-rt-14-dev
  libboost1.81-dev libssl-dev openssl
  postgresql libpq-dev
  doxygen gnuplot-nox
)

cacheaside_deps() {
  if ! command -v dpkg-query >/dev/null 2>&1; then
    echo "deps: not a Debian system; make sure these are installed: ${CACHEASIDE_DEB_PACKAGES[*]}" >&2
    return 0
  fi
  local missing=() pkg
  for pkg in "${CACHEASIDE_DEB_PACKAGES[@]}"; do
    if [[ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null)" != "install ok installed" ]]; then
      missing+=("$pkg")
    fi
  done
  if ((${#missing[@]} == 0)); then
    echo "deps: all ${#CACHEASIDE_DEB_PACKAGES[@]} Debian packages are installed"
    return 0
  fi
  local sudo=()
  if ((EUID != 0)); then
    if ! command -v sudo >/dev/null 2>&1; then
      echo "deps: missing ${missing[*]}; run as root or install sudo" >&2
      return 1
    fi
    sudo=(sudo)
  fi
  echo "deps: installing ${missing[*]}"
  "${sudo[@]}" apt-get update &&
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
      apt-get install -y --no-install-recommends "${missing[@]}"
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  set -euo pipefail
  cacheaside_deps
fi
