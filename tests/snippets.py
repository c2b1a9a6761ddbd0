"""Runs the README's query snippets, verbatim, and checks their numbers against `landfall windows`.

Usage: snippets.py README REPORT_DIR LANDFALL_BIN NOW ENGINE...

The snippets are the README's fenced blocks marked ```python snippet=<name>. The `setup` block
runs first; then `report` and `now` are set to this run's report directory and NOW (RFC 3339),
and each engine's block (duckdb, polars, spark) runs on its own copy of that namespace. Each
must leave three lists of rows behind:
  top_campaigns      (campaign_id, campaign_name, views), the top 5 since now - 1 h
  views_per_network  (window_start, network_id, views), per minute
  avg_duration       (window_start, campaign_id, views, avg_duration), per minute
which must equal what `landfall windows --format json` reports (averages to 1e-9).
"""
import json
import re
import subprocess
import sys
import time
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from decimal import Decimal

readme, report, landfall, now_arg, *engines = sys.argv[1:]
now = datetime.fromisoformat(now_arg.replace("Z", "+00:00"))
since = now - timedelta(hours=1)

blocks = dict(re.findall(r"^```python snippet=(\w+)\n(.*?)^```$", open(readme).read(), re.M | re.S))
for name in ["setup", *engines]:
    assert name in blocks, f"README.md has no ```python snippet={name} block (found {sorted(blocks)})"


def windows(*args):
    out = subprocess.run(
        [landfall, "windows", "--output-dir", report, "--format", "json", *args],
        check=True, capture_output=True, text=True,
    )
    return json.loads(out.stdout)


def utc(ts):
    """A timestamp from any engine, or an RFC 3339 string, as an aware UTC datetime. Naive ones
    (Spark's) are in the local time zone."""
    if isinstance(ts, str):
        ts = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    return ts.astimezone(timezone.utc)


# What landfall says.
every = windows()
recent = windows("--from", since.isoformat())
assert every and recent and len(recent) < len(every), (len(every), len(recent))

views = defaultdict(int)
names = {}
for r in recent:
    views[r["campaign_id"]] += r["total_count"]
    names[r["campaign_id"]] = r["campaign_name"]
want_top = sorted(((c, names[c], v) for c, v in views.items()), key=lambda t: (-t[2], t[0]))[:5]

want_network = defaultdict(int)
for r in every:
    want_network[(utc(r["window_start"]), r["network_id"])] += r["total_count"]

want_avg = {(utc(r["window_start"]), r["campaign_id"]): (r["total_count"], r["avg_duration"]) for r in every}

# The check must be able to tell a merged average from an average of per-file averages.
import duckdb  # noqa: E402

naive = duckdb.sql(
    "select window_start, campaign_id, avg(avg_duration) from read_parquet($f) group by all",
    params={"f": f"{report}/**/*.parquet"},
).fetchall()
differs = sum(abs(a - want_avg[(utc(w), c)][1]) > 1e-6 for w, c, a in naive)
assert differs > 0, "no cell where avg(avg_duration) differs: the dataset cannot catch a wrong merge"

setup = {}
exec(blocks["setup"], setup)
assert {"report", "now"} <= setup.keys(), "the setup block must define report and now"
setup.update(report=report, now=now)

for engine in engines:
    t0 = time.monotonic()
    ns = dict(setup)
    exec(blocks[engine], ns)
    top = [(int(c), n, int(v)) for c, n, v in ns["top_campaigns"]]
    assert top == want_top, f"{engine}: top campaigns in the last hour\n got {top}\nwant {want_top}"

    got_network = {(utc(w), n): int(v) for w, n, v in ns["views_per_network"]}
    assert len(got_network) == len(ns["views_per_network"]), f"{engine}: duplicate (minute, network) rows"
    assert got_network == dict(want_network), f"{engine}: views per network per minute differ: " + str(
        sorted(set(got_network.items()) ^ set(want_network.items()), key=str)[:5]
    )

    got_avg = {(utc(w), int(c)): (int(v), float(a)) for w, c, v, a in ns["avg_duration"]}
    assert got_avg.keys() == want_avg.keys(), f"{engine}: average duration: different (minute, campaign) cells"
    for k, (v, a) in want_avg.items():
        gv, ga = got_avg[k]
        assert gv == v and abs(ga - a) <= 1e-9 * max(1.0, abs(a)), f"{engine}: {k}: got {gv} views, avg {ga}; want {v}, {a}"
    print(
        f"{engine}: top campaigns ({len(top)}), views per network per minute ({len(got_network)} rows) "
        f"and average duration ({len(got_avg)} rows) equal landfall windows, in {time.monotonic() - t0:.1f} s"
    )
print(f"{len(every)} merged rows; avg(avg_duration) would be wrong in {differs} of them")
