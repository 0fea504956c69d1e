# Progress for the long scripts: "step n of m" as each step begins, one summary table
# at the end. Source it: . scripts/lib/steps.sh
#   steps_total 5
#   step "build"; ...; step_done ok "3 targets"
#   steps_table

_step_total=0 _step_n=0 _step_title="" _step_t0=0
_step_rows=()

steps_total() { _step_total=$1; }

# Begins the next step.
step() {
  _step_n=$((_step_n + 1))
  _step_title=$1
  _step_t0=$SECONDS
  echo
  echo "==> step $_step_n of $_step_total: $1"
}

# Ends the current step: result (ok, FAILED, skipped) and a short detail.
step_done() {
  _step_rows+=("$_step_n"$'\t'"$_step_title"$'\t'"$1"$'\t'"$((SECONDS - _step_t0)) s"$'\t'"${2:-}")
}

# The summary: one row per step that ran.
steps_table() {
  echo
  echo "==> summary"
  {
    printf 'step\twhat\tresult\ttime\tdetail\n'
    local row
    for row in "${_step_rows[@]}"; do printf '%s\n' "$row"; done
  } | awk -F'\t' -v total="$_step_total" '
    {
      if (NR > 1) $1 = $1 "/" total
      for (i = 1; i <= NF; i++) { cell[NR, i] = $i; if (length($i) > w[i]) w[i] = length($i) }
      n = NR
    }
    END {
      for (r = 1; r <= n; r++) {
        line = ""
        for (i = 1; i <= 5; i++)
          line = line sprintf(i == 4 ? "%" w[i] "s" : "%-" w[i] "s", cell[r, i]) (i < 5 ? "  " : "")
        sub(/ +$/, "", line)
        print "  " line
      }
    }'
}
