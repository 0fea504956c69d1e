# Consumers built with pkg-config alone, shared by pkg_config.sh and deb.sh.
# Needs: src (the source tree), work (a scratch directory), PKG_CONFIG_PATH set.

# The README's pkg-config command, on the README's quick start (its first C++ block):
# linked exactly as documented. Not run: it talks to 127.0.0.1:11211, a server no test
# started.
build_readme_quickstart() {
  local dir=$1 cmd
  mkdir -p "$dir"
  awk '/^```cpp$/ {on = 1; next} on && /^```$/ {exit} on' "$src/README.md" >"$dir/app.cpp"
  [[ -s $dir/app.cpp ]] || { echo "README.md has no \`\`\`cpp block" >&2; return 1; }
  cmd=$(grep -E '^c\+\+ .*\$\(pkg-config --cflags --libs [a-z -]+\)' "$src/README.md" | head -n 1)
  [[ -n $cmd ]] || { echo "README.md shows no 'c++ ... \$(pkg-config --cflags --libs ...)' line" >&2; return 1; }
  echo "+ $cmd"
  (cd "$dir" && eval "$cmd")
  [[ -x $dir/app ]] || { echo "the README's command made no ./app" >&2; return 1; }
}

# The example program with the memcached and json modules' flags, run (no server: every
# get answers from the loader).
build_and_run_quickstart() {
  local dir=$1 out
  mkdir -p "$dir"
  # shellcheck disable=SC2046
  c++ -std=c++17 "$src/examples/quickstart.cpp" -o "$dir/quickstart" \
    $(pkg-config --cflags --libs cacheaside-memcached cacheaside-json)
  out=$("$dir/quickstart" --SERVER=127.0.0.1:1)
  grep -q "user_1: Ada" <<<"$out" && grep -q "users_all: 2 users" <<<"$out" ||
    { echo "quickstart printed:" >&2; echo "$out" >&2; return 1; }
}

# The core alone and the meta store, each with its own module's flags only, then run.
build_and_run_core_and_meta() {
  local dir=$1
  mkdir -p "$dir"
  # shellcheck disable=SC2046
  c++ -std=c++17 "$src/tests/consumers/core_only.cpp" -o "$dir/core_only" \
    $(pkg-config --cflags --libs cacheaside)
  "$dir/core_only"
  # shellcheck disable=SC2046
  c++ -std=c++17 "$src/tests/consumers/meta_consumer.cpp" -o "$dir/meta" \
    $(pkg-config --cflags --libs cacheaside-meta)
  "$dir/meta"
}
