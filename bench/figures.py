#!/usr/bin/env python3
"""Turns benchmark runs into the CSV files in docs/bench/, and those files into every
figure the docs show: the charts are drawn from them (bench/charts.gp), the tables by
`docs` below (standard library only).

  figures.py micro <out dir> <run1.csv> [<run2.csv> ...]   cacheaside_bench --csv runs
  figures.py service <out dir> <load.csv>                  bench/load.sh CSV=... output
  figures.py async <out dir> <async.md>                    cacheaside_async_bench output
  figures.py docs <data dir> [--check]                     from <data dir>'s CSV files:
      <data dir>/table.md and the generated regions of README.md, docs/benchmarks.md and
      docs/user-service.md (between `<!-- generated: NAME -->` and
      `<!-- end generated -->`); --check changes nothing and exits 1 if a file is not
      what the CSV files give

Times are medians over the runs of each run's median (p50, p90, p99 alike); ratios are
the median of the per-run ratios (ratios.csv), so one slow run moves neither.
"""
import csv
import re
import statistics
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ["README.md", "docs/benchmarks.md", "docs/user-service.md"]
REGION = re.compile(r"(<!-- generated: ([\w-]+) -->\n)(.*?)(<!-- end generated -->)", re.S)

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


def fmt_latency(us):
    """wrk's latencies: whole microseconds, or milliseconds."""
    return f"{us / 1000:.2f} ms" if us >= 1000 else f"{us:.0f} µs"


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

    with open(out / "ratios.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["benchmark", "baseline", "runs", "ratio"])
        for _, ours, raw in TABLE:
            if ratio(ours, raw) is not None:
                both = sum(ours in run and raw in run for run in runs)
                w.writerow([ours, raw, both, f"{ratio(ours, raw):.4f}"])

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


# ---- the async benchmark's output -----------------------------------------------------

# (case, unit, the start of its row in cacheaside_async_bench's output); the allocation
# rows of the near table follow the row they belong to.
ASYNC_ROWS = [
    ("hit_one", "us", "| hit, one caller at a time"),
    ("inflight_vs_raw_sequential", "hits/s", "| hits, {n} callers in flight on one thread vs raw"),
    ("cold_miss", "us", "| cold miss"),
    ("inflight_vs_blocking_threads", "hits/s", "| {n} hot keys, {n} callers in flight on one "
     "thread vs blocking"),
    ("inflight_vs_raw_threads", "hits/s", "| {n} hot keys, {n} callers in flight on one thread "
     "vs raw"),
    ("inflight_vs_plain_client", "hits/s", "| hits, {n} in flight on one thread vs a plain"),
    ("hit_chained", "us", "| hit, each call from the previous one's handler"),
    ("near_async_get", "ns", "| ns a call |"),
    ("near_try_get_near", "ns", "| `try_get_near`"),
    ("asio_post", "ns", "| of which Asio's post"),
]


def cells(line):
    """A Markdown table row's cells after the first, as numbers ('' when empty)."""
    out = []
    for c in line.strip().strip("|").split("|")[1:]:
        c = c.strip().rstrip("×").replace(",", "")
        out.append(float(c) if c else "")
    return out


def async_rows(text):
    """The async benchmark's printed figures as async.csv rows."""
    lines = text.splitlines()
    inflight = re.search(r"(\d+) callers in flight", text)
    n = inflight.group(1) if inflight else "64"
    rows = []
    for case, unit, start in ASYNC_ROWS:
        start = start.format(n=n)
        at = next((i for i, l in enumerate(lines) if l.startswith(start)), None)
        if at is None:
            sys.exit(f"figures.py: no row '{start}' in the async benchmark's output")
        a, b, r = (cells(lines[at]) + ["", "", ""])[:3]
        rows.append([case, unit, a, b, r])
        if unit == "ns" and case != "asio_post":  # its allocations: the next row
            a, b = cells(lines[at + 1])[:2]
            rows.append([case + "_allocs", "allocs", a, b, ""])
    m = re.search(r"AsyncCacheAside ([\d.]+) \(([\d.]+) called from a handler.*?\) ([\d.]+)", text)
    if not m:
        sys.exit("figures.py: no heap allocation line in the async benchmark's output")
    rows.append(["hit_allocs", "allocs", float(m.group(1)), float(m.group(3)), ""])
    rows.append(["hit_chained_allocs", "allocs", float(m.group(2)), float(m.group(3)), ""])
    m = re.search(r"(\d+) requests in (\d+) writes", text)
    if not m:
        sys.exit("figures.py: no 'requests in writes' line in the async benchmark's output")
    rows.append(["requests_writes", "count", int(m.group(1)), int(m.group(2)), ""])
    return rows


def async_figures(out, path):
    rows = async_rows(Path(path).read_text(encoding="utf-8"))
    with open(out / "async.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["case", "unit", "async", "baseline", "ratio"])
        for row in rows:
            w.writerow([f"{v:g}" if isinstance(v, float) else v for v in row])


# ---- the docs' tables, from the CSV files ----------------------------------------------

class Data:
    """The CSV files of one data directory."""

    def __init__(self, data):
        self.micro = {r["benchmark"]: r for r in read_rows(data / "micro.csv")}
        self.ratios = {(r["benchmark"], r["baseline"]): float(r["ratio"])
                       for r in read_rows(data / "ratios.csv")}
        self.runs = max(int(r["runs"]) for r in self.micro.values())
        self.async_cases = {r["case"]: r for r in read_rows(data / "async.csv")}
        rows = read_rows(data / "service.csv")
        self.service = {(r.get("connections") or "16", r["mode"], r["route"]): r for r in rows}
        self.connections = sorted({c for c, _, _ in self.service}, key=int)

    def has(self, *ids):
        return all(i in self.micro for i in ids)

    def p50(self, bench):
        return float(self.micro[bench]["p50_us"])

    def allocs(self, bench):
        return f"{float(self.micro[bench]['allocs_per_op']):g}"

    def ratio(self, ours, raw):
        if (ours, raw) not in self.ratios:
            sys.exit(f"figures.py: no ratio of {ours} to {raw} in ratios.csv")
        return self.ratios[(ours, raw)]

    def figure(self, case, col="async"):
        return float(self.async_cases[case][col])

    def rps(self, conns, mode, route):
        return float(self.service[(conns, mode, route)]["rps"])

    def vs(self, rps, conns, mode, route, digits):
        """rps as a multiple of a mode's, or '–' when that mode was not run."""
        if (conns, mode, route) not in self.service:
            return "–"
        return x(rps / self.rps(conns, mode, route), digits)


def para(text):
    """A paragraph of generated prose, wrapped as the docs are."""
    glued = re.sub(r"(\d) (B|KB|µs|ms|ns)\b", "\\1\0\\2", text)  # no break in "100 B"
    wrapped = textwrap.fill(glued, 90, break_long_words=False, break_on_hyphens=False)
    return wrapped.replace("\0", " ") + "\n"


def x(r, digits=3):
    return f"{r:.{digits}f}×"


def micro_table(d, rows):
    out = ["| case | cacheaside | baseline | ratio | allocs/op (cacheaside / baseline) |",
           "|---|---:|---:|---:|---:|"]
    for label, ours, raw in rows:
        if d.has(ours, raw):
            out.append(f"| {label} | {fmt_us(d.p50(ours))} | {fmt_us(d.p50(raw))} | "
                       f"{x(d.ratio(ours, raw))} | {d.allocs(ours)} / {d.allocs(raw)} |")
    return "\n".join(out) + "\n"


def is_store_row(row):
    return row[1].startswith("cold") or "/meta" in row[1]


def results(d):
    return micro_table(d, [r for r in TABLE if not is_store_row(r)])


def targets(d):
    hits = [("get/string_100B/cacheaside", "get/string_100B/raw"),
            ("get/string_1KB/cacheaside", "get/string_1KB/raw"),
            ("get/json_user/cacheaside", "get/json_user/raw_get_parse")]
    worst = max(d.ratio(o, r) for o, r in hits)
    many = d.ratio("get_many_100/cacheaside", "get_many_100/raw_mget")

    def verdict(value, limit):
        return "met" if value <= limit else "**not met**"

    return para(f"Median of {d.runs} runs (`docs/bench/micro.csv`, ratios from "
                f"`docs/bench/ratios.csv`); a raw 100 B `memcached_get` took "
                f"{fmt_us(d.p50('get/string_100B/raw'))}. Targets: a hit ≤ 1.05× raw (100 B, "
                f"1 KB, JSON `User`: at most {x(worst)}): {verdict(worst, 1.05)}; "
                f"`get_many(100)` ≤ 1.3× raw `mget` ({x(many)}): {verdict(many, 1.3)}.")


def stores(d):
    bare, naive = "cold_get_many_100/meta_pipelines", "cold_get_many_100/naive_mget_sets"
    meta = "cold_get_many_100/leases/meta"
    per_key = (d.p50(meta) - d.p50(bare)) / 100
    return (micro_table(d, [r for r in TABLE if is_store_row(r)]) + "\n" +
            para(f"The last row is the floor: the same 100 `mg … N` and 100 `ms … C` sent "
                 f"straight through the store, no cache around them, take "
                 f"{fmt_us(d.p50(bare))} (the naive client: {fmt_us(d.p50(naive))}); the "
                 f"library adds about {per_key:.1f} µs per key on top (keys, flights, "
                 f"envelopes)."))


ASYNC_TABLE = [
    ("hit, one caller at a time, vs `memcached_get` (median µs)", "hit_one", "{:.1f}"),
    ("the same, each call from the previous one's handler on the io thread", "hit_chained",
     "{:.1f}"),
    ("64 in flight on one thread vs raw `memcached_get` back to back (hits/s)",
     "inflight_vs_raw_sequential", "{:,.0f}"),
    ("64 in flight vs blocking `CacheAside` (`MetaStore`), 64 threads",
     "inflight_vs_blocking_threads", "{:,.0f}"),
    ("64 in flight vs raw libmemcached, 64 threads", "inflight_vs_raw_threads", "{:,.0f}"),
    ("64 in flight vs a plain client, 64 `mg` at a time on one connection",
     "inflight_vs_plain_client", "{:,.0f}"),
    ("cold miss vs naive get + set (median µs)", "cold_miss", "{:.1f}"),
    ("near hit, `async_get` vs `CacheAside::get` (ns; allocations {} vs {})", "near_async_get",
     "{:,.0f}"),
    ("near hit, `try_get_near` vs `CacheAside::get` (ns; allocations {} vs {})",
     "near_try_get_near", "{:,.0f}"),
]


def async_table(d):
    out = ["| case | `AsyncCacheAside` | baseline | ratio |", "|---|---:|---:|---:|"]
    for label, case, form in ASYNC_TABLE:
        if case + "_allocs" in d.async_cases:
            label = label.format(f"{d.figure(case + '_allocs'):g}",
                                 f"{d.figure(case + '_allocs', 'baseline'):g}")
        ratio = d.figure(case, "ratio")
        out.append(f"| {label} | {form.format(d.figure(case))} | {form.format(d.figure(case, 'baseline'))} "
                   f"| {x(ratio, 3 if d.async_cases[case]['unit'] == 'us' else 2)} |")
    out.append(f"| Asio's post + `run_one` of an empty handler (ns) | "
               f"{d.figure('asio_post'):,.0f} | | |")
    return ("\n".join(out) + "\n\n" + para(
            f"Heap allocations of a memcached hit: {d.figure('hit_allocs'):g} through `async_get` "
            f"({d.figure('hit_chained_allocs'):g} from a handler on the io thread, where Asio "
            f"recycles its handler memory), {d.figure('hit_allocs', 'baseline'):g} through the "
            f"blocking cache; both include the JSON `User`'s parse. Over the run the store sent "
            f"{d.figure('requests_writes'):,.0f} requests in {d.figure('requests_writes', 'baseline'):,.0f} "
            f"writes (queued requests coalesced)."))


SERVICE_MODES = [("cache", "near cache + memcached (default)"),
                 ("memcached", "memcached only (`--near-ms 0`)"), ("no-cache", "`--no-cache`"),
                 ("previous", "0.2 (cpp-httplib, blocking)"),
                 ("fastapi", "the lesson's FastAPI service"),
                 ("http-only", "ceiling (same server, fixed records)")]


def service_table(d):
    out = ["| wrk -c | mode | route | req/s | p50 | p99 | vs `--no-cache` | vs 0.2 | "
           "vs ceiling | vs FastAPI |", "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for c in d.connections:
        for mode, name in SERVICE_MODES:
            for route, _ in ROUTES:
                r = d.service.get((c, mode, route))
                if not r:
                    continue
                rps = float(r["rps"])
                vs = [d.vs(rps, c, m, route, digits) for m, digits in
                      (("no-cache", 2), ("previous", 2), ("http-only", 2), ("fastapi", 1))]
                p50, p99 = (float(r[k]) for k in ("p50_us", "p99_us"))
                out.append(f"| {c} | {name} | `GET {route}` | {rps:,.0f} | "
                           f"{fmt_latency(p50)} | {fmt_latency(p99)} | " + " | ".join(vs) + " |")
    return "\n".join(out) + "\n"


def readme(d):
    r, us = d.ratio, fmt_us

    def svc(route):
        parts = []
        for c in d.connections:
            rps = d.rps(c, "cache", route)
            parts.append(f"{rps:,.0f}, " + ", ".join(
                d.vs(rps, c, m, route, digits) for m, digits in
                (("no-cache", 2), ("previous", 2), ("fastapi", 0), ("http-only", 2))))
        return "; ".join(parts)

    c16, cmax = d.connections[0], d.connections[-1]
    near = "get/string_100B/cacheaside_near"
    rows = [
        ("`get` hit, 100 B, vs `memcached_get`: `MemcachedStore`, `MetaStore`",
         f"{x(r('get/string_100B/cacheaside', 'get/string_100B/raw'))}, "
         f"{x(r('get/string_100B/meta', 'get/string_100B/raw'))}"),
        ("near-cache hit, 100 B, vs `memcached_get`",
         f"{us(d.p50(near))}, {x(r(near, 'get/string_100B/raw'))}"),
        ("near-cache hit, list of 100 JSON users, vs `memcached_get` + `json::parse`",
         x(r("get/user_list_100/cacheaside_near", "get/user_list_100/raw_get_parse"))),
        ("`get_many(100)` hits vs `memcached_mget`; vs 100 sequential `memcached_get`",
         f"{x(r('get_many_100/cacheaside', 'get_many_100/raw_mget'))}; "
         f"{x(r('get_many_100/cacheaside', 'get_many_100/raw_100_gets'))}"),
        ("`get` hit with `Options::group`; with `group_cache` too",
         f"{x(r('get/string_100B/cacheaside_group', 'get/string_100B/raw'))}; "
         f"{x(r('get/string_100B/cacheaside_group_cached', 'get/string_100B/raw'))}"),
        ("cold `get`, leases, vs naive get + set: `MetaStore`, `MemcachedStore`",
         f"{x(r('cold_get/leases/meta', 'cold_get/naive_get_set'))}, "
         f"{x(r('cold_get/leases/classic', 'cold_get/naive_get_set'))}"),
        ("cold `get_many(100)`, `MetaStore` vs naive mget + 100 sets; vs `MemcachedStore`",
         f"{x(r('cold_get_many_100/leases/meta', 'cold_get_many_100/naive_mget_sets'))}; "
         f"{1 / r('cold_get_many_100/leases/meta', 'cold_get_many_100/leases/classic'):.0f}× "
         f"faster"),
        ("`AsyncCacheAside`, 64 callers in flight on one thread, vs blocking `CacheAside` with "
         "64 threads; vs raw libmemcached with 64 threads",
         f"{x(d.figure('inflight_vs_blocking_threads', 'ratio'), 2)}; "
         f"{x(d.figure('inflight_vs_raw_threads', 'ratio'), 2)}"),
        ("the same, vs a plain client writing 64 `mg` at a time on one connection (no cache "
         "logic)", x(d.figure("inflight_vs_plain_client", "ratio"), 2)),
        ("`async_get` hit, one caller at a time, vs `memcached_get` (called from a handler on "
         "the io thread)",
         f"{x(d.figure('hit_one', 'ratio'))} ({x(d.figure('hit_chained', 'ratio'))})"),
        (f"near hit, `AsyncCacheAside` vs `CacheAside` ({d.figure('near_async_get', 'baseline'):,.0f} "
         f"ns): `async_get` (its posted completion alone {d.figure('asio_post'):,.0f} ns); "
         f"`try_get_near`",
         f"{x(d.figure('near_async_get', 'ratio'), 1)}; {x(d.figure('near_try_get_near', 'ratio'), 2)} "
         f"({d.figure('near_try_get_near'):,.0f} ns, "
         f"{'no allocation' if d.figure('near_try_get_near_allocs') == 0 else 'allocations'})"),
        (f"example service (Beast, async), near cache, `GET /users/5`, wrk -c{c16}; -c{cmax}: "
         f"req/s, vs `--no-cache`, vs 0.2's service, vs the lesson's FastAPI service, vs its "
         f"HTTP stack alone", svc("/users/5")),
        (f"example service, near cache, `GET /users/` (100 users), wrk -c{c16}; -c{cmax}",
         svc("/users/")),
    ]
    return ("| case | figure |\n|---|---:|\n" +
            "".join(f"| {case} | {figure} |\n" for case, figure in rows))


REGIONS = {"micro-results": results, "micro-targets": targets, "micro-stores": stores,
           "async": async_table, "service": service_table, "readme-figures": readme}


def regenerate(text, d, used):
    def fill(m):
        name = m.group(2)
        if name not in REGIONS:
            sys.exit(f"figures.py: no generator for the region '{name}'")
        used.add(name)
        return m.group(1) + REGIONS[name](d) + m.group(4)
    return REGION.sub(fill, text)


def docs(data, check):
    d = Data(data)
    wanted = {data / "table.md": micro_table(d, TABLE)}
    used = set()
    for name in DOCS:
        path = ROOT / name
        wanted[path] = regenerate(path.read_text(encoding="utf-8"), d, used)
    if set(REGIONS) - used:
        sys.exit("figures.py: regions nowhere: " + ", ".join(sorted(set(REGIONS) - used)))
    stale = [p for p, text in wanted.items()
             if not p.exists() or p.read_text(encoding="utf-8") != text]
    for p in stale:
        if check:
            print(f"figures.py: {p.relative_to(ROOT) if ROOT in p.parents else p} is not what "
                  f"{data}'s CSV files give: run bench/figures.py docs {data}", file=sys.stderr)
        else:
            p.write_text(wanted[p], encoding="utf-8")
    return 1 if check and stale else 0


def main():
    args = sys.argv[1:]
    if len(args) >= 2 and args[0] == "docs" and args[2:] in ([], ["--check"]):
        sys.exit(docs(Path(args[1]), args[2:] == ["--check"]))
    if len(args) < 3 or args[0] not in ("micro", "service", "async"):
        sys.exit(__doc__)
    out = Path(args[1])
    out.mkdir(parents=True, exist_ok=True)
    if args[0] == "micro":
        micro(out, args[2:])
    elif args[0] == "service":
        service(out, args[2])
    else:
        async_figures(out, args[2])


if __name__ == "__main__":
    main()
