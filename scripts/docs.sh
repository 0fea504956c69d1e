#!/usr/bin/env bash
# Builds the API reference of the public headers with doxygen (docs/Doxyfile) into
# build/docs/html (or $1). Fails on any warning: an undocumented public name, a broken
# reference. Installs doxygen when missing.
#   scripts/docs.sh [output dir]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [[ -z ${CACHEASIDE_NO_DEPS:-} ]]; then scripts/deps.sh; fi
out=$(realpath -m "${1:-build/docs}")
mkdir -p "$out"
version=$(awk '/^#define CACHEASIDE_VERSION_(MAJOR|MINOR|PATCH) / {v = v (v ? "." : "") $3} END {print v}' \
  include/cacheaside/version.hpp)
rm -f "$out/warnings.log"
rc=0
CACHEASIDE_VERSION=$version CACHEASIDE_DOCS_OUT=$out doxygen docs/Doxyfile || rc=$?
if [[ -s $out/warnings.log ]]; then
  echo "docs.sh: doxygen warnings (every public name needs a doc comment):" >&2
  cat "$out/warnings.log" >&2
  exit 1
fi
((rc == 0)) || { echo "docs.sh: doxygen failed ($rc)" >&2; exit "$rc"; }
echo "API reference $version: $out/html/index.html ($(find "$out/html" -name '*.html' | wc -l) pages)"
