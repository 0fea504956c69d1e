#!/usr/bin/env python3
"""Turns benchmark runs into the CSV files the charts are drawn from, and prints the
summary table (standard library only).

  figures.py micro <out dir> <run1.csv> [<run2.csv> ...]   cacheaside_bench --csv runs
  figures.py service <out dir> <load.csv>                  bench/load.sh CSV=... output

Times are medians over the runs of each run's median (p50, p90, p99 alike); ratios are
the median of the per-run ratios, so one slow run moves neither.
"""
import csv
import statistics
import sys
from pathlib import Path

# (label, raw id, MemcachedStore id, MetaStore id): cacheaside vs raw libmemcached.
STORES = [
    ("get hit, 100 B", "get/string_100B/raw", "get/string_100B/cacheaside",
     "get/string_100B/meta"),
    ("get_many(100) hits", "get_many_100/raw_mget", "get_many_100/cacheaside",
     "get_many_100/meta"),
    ("cold get", "cold_get/naive_get_set", "cold_get/leases/classic", "cold_get/leases/meta"),
    ("cold get_many(100)", "cold_get_many_100/naive_mget_sets",
     "cold_get_many_100/leases/classic", "cold_get_many_100/leases/meta"),
]
# (label, raw id, near-hit id).
NEAR = [
    ("100 B string", "get/string_100B/raw", "get/string_100B/cacheaside_near"),
    ("100 users, JSON", "get/user_list_100/raw_get_parse", "get/user_list_100/cacheaside_near"),
]
# The full table (label, cacheaside id, raw id), as in the README.
TABLE = [
    ("`get` hit, 100 B string", "get/string_100B/cacheaside", "get/string_100B/raw"),
    ("`get` **near** hit, 100 B string (`near_ttl`)", "get/string_100B/cacheaside_near",
     "get/string_100B/raw"),
    ("`get` **near** hit, list of 100 JSON users vs `memcached_get` + `json::parse`",
     "get/user_list_100/cacheaside_near", "get/user_list_100/raw_get_parse"),
    ("`get` hit, 1 KB string", "get/string_1KB/cacheaside", "get/string_1KB/raw"),
    ("`get` hit, 1 KB string, signed (`signing_keys`) vs unsigned",
     "get/string_1KB/cacheaside_signed", "get/string_1KB/cacheaside"),
    ("`get` hit, JSON `User` vs `memcached_get` + `json::parse`", "get/json_user/cacheaside",
     "get/json_user/raw_get_parse"),
    ("`get` hit, JSON `User`, `Format::raw`", "get/json_user/cacheaside_rawformat",
     "get/json_user/raw_get_parse"),
    ("`get_many(100)`, all hits, vs `memcached_mget`", "get_many_100/cacheaside",
     "get_many_100/raw_mget"),
    ("`get_many(100)` vs 100 sequential `memcached_get`", "get_many_100/cacheaside",
     "get_many_100/raw_100_gets"),
    ("`get` hit with `Options::group` (generation + value)", "get/string_100B/cacheaside_group",
     "get/string_100B/raw"),
    ("`get` hit with `group` + `group_cache`", "get/string_100B/cacheaside_group_cached",
     "get/string_100B/raw"),
    ("`get` hit, 100 B, `MetaStore` vs `memcached_get`", "get/string_100B/meta",
     "get/string_100B/raw"),
    ("`get_many(100)` hits, `MetaStore` vs `memcached_mget`", "get_many_100/meta",
     "get_many_100/raw_mget"),
    ("cold `get`, leases, `MetaStore` vs naive get + set", "cold_get/leases/meta",
     "cold_get/naive_get_set"),
    ("cold `get`, leases, `MemcachedStore` vs naive get + set", "cold_get/leases/classic",
     "cold_get/naive_get_set"),
    ("cold `get_many(100)`, leases, `MetaStore` vs naive mget + 100 sets",
     "cold_get_many_100/leases/meta", "cold_get_many_100/naive_mget_sets"),
    ("cold `get_many(100)`, leases, `MemcachedStore` vs naive mget + 100 sets",
     "cold_get_many_100/leases/classic", "cold_get_many_100/naive_mget_sets"),
    ("cold `get_many(100)`, leases, `MetaStore` vs `MemcachedStore`",
     "cold_get_many_100/leases/meta", "cold_get_many_100/leases/classic"),
    ("cold `get_many(100)`, leases, `MetaStore` vs its two pipelines sent bare",
     "cold_get_many_100/leases/meta", "cold_get_many_100/meta_pipelines"),
]
MODES = [("cache", "near cache + memcached (default)"), ("memcached", "memcached only"),
         ("no-cache", "--no-cache (SQLite)"), ("http-only", "HTTP stack alone"),
         ("previous", "previous release (0.2)"), ("fastapi", "the lesson's FastAPI service")]
ROUTES = [("/users/5", "GET /users/5"), ("/users/", "GET /users/ (100 users)")]
PERCENTILES = [("p50", "p50_us"), ("p75", "p75_us"), ("p90", "p90_us"), ("p99", "p99_us")]


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def fmt_us(us):
    return f"{us / 1000:.2f} ms" if us >= 1000 else f"{us:.1f} µs"


def micro(out, paths):
    runs = []
    for p in paths:
        runs.append({r["benchmark"]: r for r in read_rows(p) if r["samples"] not in ("", "0")})

    def med(bench, col):
        vals = [float(run[bench][col]) for run in runs if bench in run]
        return statistics.median(vals) if vals else None

    def ratio(ours, raw):
        vals = [float(run[ours]["p50_us"]) / float(run[raw]["p50_us"]) for run in runs
                if ours in run and raw in run]
        return statistics.median(vals) if vals else None

    names = sorted({b for run in runs for b in run})
    with open(out / "micro.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["benchmark", "runs", "p50_us", "p90_us", "p99_us", "allocs_per_op"])
        for b in names:
            w.writerow([b, sum(b in run for run in runs)] +
                       [f"{med(b, c):.3f}" for c in ("p50_us", "p90_us", "p99_us")] +
                       [f"{med(b, 'allocs_per_op'):.2f}"])

    missing = [i for row in STORES for i in row[1:] if med(i, "p50_us") is None]
    missing += [i for row in NEAR for i in row[1:] if med(i, "p50_us") is None]
    if missing:
        sys.exit("figures.py: benchmarks missing from every run: " + ", ".join(sorted(set(missing))))
    with open(out / "stores.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["case", "raw libmemcached", "MemcachedStore", "MetaStore"])
        for label, *ids in STORES:
            w.writerow([label] + [f"{med(i, 'p50_us'):.3f}" for i in ids])
    with open(out / "near.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["case", "raw libmemcached get", "near-cache hit"])
        for label, *ids in NEAR:
            w.writerow([label] + [f"{med(i, 'p50_us'):.3f}" for i in ids])

    with open(out / "table.md", "w") as f:
        f.write("| case | cacheaside | raw | ratio | allocs/op (cacheaside / raw) |\n")
        f.write("|---|---:|---:|---:|---:|\n")
        for label, ours, raw in TABLE:
            if med(ours, "p50_us") is None or med(raw, "p50_us") is None:
                f.write(f"| {label} | not run | | | |\n")
                continue
            f.write(f"| {label} | {fmt_us(med(ours, 'p50_us'))} | {fmt_us(med(raw, 'p50_us'))} | "
                    f"{ratio(ours, raw):.3f}× | {med(ours, 'allocs_per_op'):g} / "
                    f"{med(raw, 'allocs_per_op'):g} |\n")

    print(f"| case (p50, median of {len(runs)} runs) | store | cacheaside | raw | ratio |")
    print("|---|---|---:|---:|---:|")
    for label, raw, classic, meta in STORES:
        for store, ours in (("MemcachedStore", classic), ("MetaStore", meta)):
            print(f"| {label} | {store} | {fmt_us(med(ours, 'p50_us'))} | "
                  f"{fmt_us(med(raw, 'p50_us'))} | {ratio(ours, raw):.3f}× |")
    for label, raw, near in NEAR:
        print(f"| near hit, {label} | near cache | {fmt_us(med(near, 'p50_us'))} | "
              f"{fmt_us(med(raw, 'p50_us'))} | {ratio(near, raw):.3f}× |")


def service(out, path):
    # The charts and this summary are of wrk -c16.
    rows = [r for r in read_rows(path) if r.get("connections", "16") in ("16", "")]
    cell = {(r["mode"], r["route"]): r for r in rows}
    modes = [(m, name) for m, name in MODES if any((m, r) in cell for r, _ in ROUTES)]
    with open(out / "service_rps.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["route"] + [name for _, name in modes])
        for route, rname in ROUTES:
            w.writerow([rname] + [cell.get((m, route), {}).get("rps", "") for m, _ in modes])
    for route, tag in (("/users/5", "user"), ("/users/", "list")):
        with open(out / f"service_latency_{tag}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["percentile"] + [name for _, name in modes])
            for p, col in PERCENTILES:
                w.writerow([p] + [cell.get((m, route), {}).get(col, "") for m, _ in modes])

    print("| route | mode | req/s | p50 | p99 | vs --no-cache | vs FastAPI |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for route, rname in ROUTES:
        db = float(cell[("no-cache", route)]["rps"])
        ref = float(cell[("fastapi", route)]["rps"]) if ("fastapi", route) in cell else 0
        for m, name in modes:
            r = cell.get((m, route))
            if not r:
                continue
            rps = float(r["rps"])
            print(f"| {rname} | {name} | {rps:,.0f} | {fmt_us(float(r['p50_us']))} | "
                  f"{fmt_us(float(r['p99_us']))} | {rps / db:.2f}× | "
                  f"{f'{rps / ref:.1f}×' if ref else '–'} |")


def main():
    if len(sys.argv) < 4 or sys.argv[1] not in ("micro", "service"):
        sys.exit(__doc__)
    out = Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    if sys.argv[1] == "micro":
        micro(out, sys.argv[3:])
    else:
        service(out, sys.argv[3])


if __name__ == "__main__":
    main()
