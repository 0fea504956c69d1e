#!/usr/bin/env bash
# pkg_config.sh <build dir> <scratch dir> <source dir> <version>
# Installs the build to a temp prefix, moves the prefix (the .pc files must not name
# it), then builds the README quick start with the README's pkg-config command, and the
# consumers, from that prefix's pkg-config files alone.
set -euo pipefail
build=$1 work=$2 src=$3 version=$4
. "$src/tests/packaging/consumers.sh"

rm -rf "$work"
mkdir -p "$work"
cmake --install "$build" --prefix "$work/installed" >/dev/null
mv "$work/installed" "$work/moved"
export PKG_CONFIG_PATH="$work/moved/share/pkgconfig"

for m in cacheaside cacheaside-memcached cacheaside-meta cacheaside-json; do
  [[ -f $PKG_CONFIG_PATH/$m.pc ]] || { echo "not installed: $m.pc" >&2; exit 1; }
  got=$(pkg-config --modversion "$m")
  [[ $got == "$version" ]] || { echo "$m: version $got, expected $version" >&2; exit 1; }
  pkg-config --print-errors --exists "$m"
done
inc=$(pkg-config --cflags-only-I cacheaside-memcached | sed -E 's/^-I([^ ]+).*/\1/')
[[ -d $inc && $(cd "$inc" && pwd -P) == "$(cd "$work/moved/include" && pwd -P)" ]] ||
  { echo "cflags do not follow the moved prefix: $(pkg-config --cflags cacheaside-memcached)" >&2; exit 1; }
libs=$(pkg-config --libs cacheaside-memcached cacheaside-json)
for want in -lmemcached -lmemcachedutil -pthread; do
  [[ " $libs " == *" $want "* ]] || { echo "libs lack $want: $libs" >&2; exit 1; }
done
# The minimum versions are asked for, so an older libmemcached is refused here too.
pkg-config --print-requires cacheaside-memcached | grep -qx "libmemcached >= 1.1.4"
if pkg-config --exists "cacheaside > $version"; then
  echo "pkg-config accepts a newer cacheaside than installed" >&2
  exit 1
fi

build_readme_quickstart "$work/readme"
build_and_run_core_and_meta "$work/consumers"
echo "pkg-config: 4 modules from a moved prefix; the README quick start, the core alone and"
echo "the meta store built with their flags alone"
