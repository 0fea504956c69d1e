#!/usr/bin/env bash
# deb.sh <build dir> <scratch dir> <source dir> <version>
# Makes the Debian package with cpack, checks its control fields and file list, unpacks
# it into a throwaway root (dpkg -x) and builds consumers against that root only: with
# find_package and with pkg-config.
set -euo pipefail
build=$1 work=$2 src=$3 version=$4
. "$src/tests/packaging/consumers.sh"

rm -rf "$work"
mkdir -p "$work"
(cd "$build" && cpack -G DEB -B "$work/out" >"$work/cpack.log" 2>&1) ||
  { cat "$work/cpack.log" >&2; exit 1; }
deb="$work/out/cacheaside-dev_${version}_all.deb"
[[ -f $deb ]] || { echo "no $deb; made:" >&2; ls "$work/out" >&2; exit 1; }

field() { dpkg-deb -f "$deb" "$1"; }
[[ $(field Package) == cacheaside-dev ]]
[[ $(field Version) == "$version" ]]
[[ $(field Architecture) == all ]] || { echo "Architecture: $(field Architecture)" >&2; exit 1; }
depends=$(field Depends)
for want in "libmemcached-dev (>= 1.1.4)" "nlohmann-json3-dev (>= 3.9)" "pkg-config"; do
  [[ $depends == *"$want"* ]] || { echo "Depends lacks '$want': $depends" >&2; exit 1; }
done

dpkg-deb -c "$deb" | awk '{print $6}' | sed 's|^\./||' >"$work/files"
for f in usr/include/cacheaside/cacheaside.hpp usr/include/cacheaside/detail/miss/read_fsm.hpp \
  usr/include/cacheaside/meta.hpp usr/share/cmake/cacheaside/cacheasideConfig.cmake \
  usr/share/cmake/cacheaside/Findlibmemcached.cmake usr/share/pkgconfig/cacheaside.pc \
  usr/share/pkgconfig/cacheaside-memcached.pc usr/share/pkgconfig/cacheaside-meta.pc \
  usr/share/pkgconfig/cacheaside-json.pc usr/share/doc/cacheaside/LICENSE \
  usr/share/doc/cacheaside/README.md; do
  grep -qx "$f" "$work/files" || { echo "not in the package: $f" >&2; exit 1; }
done
# Header-only: nothing compiled may be in it.
if grep -E '\.(so|a|o)(\.|$)|^usr/bin/' "$work/files"; then
  echo "compiled files in an architecture-independent package" >&2
  exit 1
fi

# The example service's package, when the build has the examples.
service_deb=$(ls "$work"/out/cacheaside-user-service_"${version}"_*.deb 2>/dev/null || true)
if [[ -n $service_deb ]]; then
  sdeps=$(dpkg-deb -f "$service_deb" Depends)
  for want in libsqlite3 libmemcached; do
    [[ $sdeps == *"$want"* ]] || { echo "service Depends lacks $want: $sdeps" >&2; exit 1; }
  done
  dpkg-deb -c "$service_deb" | awk '{print $6}' | sed 's|^\./||' >"$work/service_files"
  for f in usr/bin/cacheaside-user-service usr/lib/systemd/system/cacheaside-user-service.service; do
    grep -qx "$f" "$work/service_files" || { echo "not in the service package: $f" >&2; exit 1; }
  done
  dpkg -x "$service_deb" "$work/service_root"
  rc=0
  "$work/service_root/usr/bin/cacheaside-user-service" --help 2>"$work/service_help" || rc=$?
  [[ $rc == 2 ]] && grep -q "^usage: " "$work/service_help" ||
    { echo "the packaged service did not answer --help (rc $rc):" >&2; cat "$work/service_help" >&2; exit 1; }
  echo "package: $(basename "$service_deb"); Depends: $sdeps"
fi

dpkg -x "$deb" "$work/root"
root=$work/root/usr

# find_package from the unpacked root only.
cmake -S "$src/tests/find_package/consumer" -B "$work/consumer" -DCMAKE_PREFIX_PATH="$root" \
  -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF -DCMAKE_BUILD_TYPE=Release >"$work/consumer.log" 2>&1 ||
  { cat "$work/consumer.log" >&2; exit 1; }
grep -q "^cacheaside_DIR:PATH=$root/" "$work/consumer/CMakeCache.txt" ||
  { echo "find_package did not use the unpacked package:" >&2; grep cacheaside_DIR "$work/consumer/CMakeCache.txt" >&2; exit 1; }
cmake --build "$work/consumer" --target meta_consumer >>"$work/consumer.log" 2>&1 ||
  { cat "$work/consumer.log" >&2; exit 1; }
"$work/consumer/meta_consumer"

# pkg-config from the unpacked root only.
export PKG_CONFIG_PATH="$root/share/pkgconfig"
[[ $(pkg-config --variable=prefix cacheaside) == "$root" ]] ||
  [[ $(cd "$(pkg-config --variable=prefix cacheaside)" && pwd) == "$root" ]] ||
  { echo "pkg-config prefix: $(pkg-config --variable=prefix cacheaside)" >&2; exit 1; }
build_and_run_quickstart "$work/pc"
echo "package: $(basename "$deb"), $(wc -l <"$work/files") entries; Depends: $depends"
echo "find_package and pkg-config consumers built from the unpacked root"
