#!/usr/bin/env bash
# plain_include.sh <scratch dir> <source dir>
# The README's plain-inclusion line (`g++ ... -I <clone>/include ...`) on the README's
# quick start, with <clone> the source tree: builds as written, nothing installed.
set -euo pipefail
work=$1 src=$2
rm -rf "$work"
mkdir -p "$work"
awk '/^```cpp$/ {on = 1; next} on && /^```$/ {exit} on' "$src/README.md" >"$work/quick.cpp"
[[ -s $work/quick.cpp ]] || { echo "README.md has no \`\`\`cpp block" >&2; exit 1; }
cmd=$(grep -E '^g\+\+ .*-I <clone>/include .*quick\.cpp' "$src/README.md" | head -n 1)
[[ -n $cmd ]] || { echo "README.md shows no 'g++ ... -I <clone>/include quick.cpp ...' line" >&2; exit 1; }
cmd=${cmd//<clone>/$src}
echo "+ $cmd"
(cd "$work" && eval "$cmd")
[[ -x $work/quick ]] || { echo "the README's line made no ./quick" >&2; exit 1; }
echo "plain inclusion: the README quick start builds with the README's line"
