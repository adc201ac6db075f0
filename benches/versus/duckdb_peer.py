"""The DuckDB side of `cargo run -p beacon-benches --bin versus`.

Loads the generator's events (a CSV the bench writes) into DuckDB in-process,
derives sessions once at load (visitor runs with no gap over 30 minutes, the
session's source, country and device frozen at its first event), as a DuckDB
user building this dashboard would, then runs each dashboard query RUNS times
and prints one JSON object on stdout: the load time, and per query its times and
its rows (for the bench to check against Beacon's answers).

    python3 duckdb_peer.py EVENTS.csv RUNS THREADS LO_MS HI_MS DB_FILE
"""

import json
import os
import sys
import time

import duckdb

CSV, DB = sys.argv[1], sys.argv[6]
RUNS, THREADS, LO, HI = (int(a) for a in sys.argv[2:6])
GAP = 30 * 60 * 1000
DAY = 86_400_000

con = duckdb.connect(DB)
con.execute(f"SET threads = {THREADS}")
con.execute("SET TimeZone = 'UTC'")

t0 = time.perf_counter()
con.execute(
    f"""
CREATE TEMP TABLE raw AS SELECT * FROM read_csv('{CSV}', header = false, columns = {{
  'id': 'BIGINT', 'visitor': 'VARCHAR', 'ts': 'BIGINT', 'kind': 'VARCHAR', 'path': 'VARCHAR',
  'source': 'VARCHAR', 'country': 'VARCHAR', 'device': 'VARCHAR', 'goal': 'VARCHAR',
  'revenue': 'BIGINT'}})
"""
)
loaded = time.perf_counter()
con.execute(
    f"""
CREATE TABLE events AS
WITH marked AS (
  SELECT *, CASE WHEN ts - lag(ts) OVER (PARTITION BY visitor ORDER BY ts, id) <= {GAP}
                 THEN 0 ELSE 1 END AS fresh
  FROM raw),
numbered AS (
  SELECT *, sum(fresh) OVER (PARTITION BY visitor ORDER BY ts, id ROWS UNBOUNDED PRECEDING) AS sn
  FROM marked)
SELECT id, visitor, ts, kind, path, goal, revenue, sn,
  first_value(source) OVER w AS s_source,
  first_value(country) OVER w AS s_country,
  first_value(device) OVER w AS s_device
FROM numbered
WINDOW w AS (PARTITION BY visitor, sn ORDER BY ts, id ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
"""
)
con.execute(
    """
CREATE TABLE sessions AS
SELECT visitor, sn, min(ts) AS start, max(ts) AS last,
  count(*) FILTER (WHERE kind = 'pageview') AS pageviews,
  count(*) FILTER (WHERE kind IN ('goal', 'purchase', 'custom')) AS actions,
  any_value(s_source) AS s_source
FROM events GROUP BY visitor, sn
"""
)
con.execute("DROP TABLE raw")
con.execute("CHECKPOINT")
done = time.perf_counter()

R = f"ts >= {LO} AND ts < {HI}"
QUERIES = {
    "main stats": f"""
WITH e AS (SELECT count(DISTINCT visitor) AS v, count(*) FILTER (WHERE kind = 'pageview') AS pv
           FROM events WHERE {R}),
s AS (SELECT count(*) AS n, count(*) FILTER (WHERE pageviews = 1 AND actions = 0) AS b,
             sum(last - start) AS d
      FROM sessions WHERE start >= {LO} AND start < {HI})
SELECT v, n, pv, round(100.0 * b / n, 1), round(d / 1000.0 / n) FROM e, s""",
    "daily timeseries": f"""
SELECT strftime(epoch_ms(ts)::DATE, '%Y-%m-%d') AS day, count(DISTINCT visitor),
       count(*) FILTER (WHERE kind = 'pageview')
FROM events WHERE {R} GROUP BY day ORDER BY day""",
    "top 10 pages": f"""
SELECT path, count(DISTINCT visitor) AS v, count(*) FILTER (WHERE kind = 'pageview')
FROM events WHERE {R} GROUP BY path ORDER BY v DESC, path NULLS LAST LIMIT 10""",
    "top 10 sources": f"""
SELECT s_source, count(DISTINCT visitor) AS v FROM events WHERE {R}
GROUP BY s_source ORDER BY v DESC, s_source NULLS LAST LIMIT 10""",
    "top 10 countries": f"""
SELECT s_country, count(DISTINCT visitor) AS v FROM events WHERE {R}
GROUP BY s_country ORDER BY v DESC, s_country NULLS LAST LIMIT 10""",
    "devices": f"""
SELECT s_device, count(DISTINCT visitor) AS v FROM events WHERE {R}
GROUP BY s_device ORDER BY v DESC, s_device NULLS LAST LIMIT 10""",
    "3-step funnel (24h)": f"""
WITH s1 AS (SELECT visitor, ts FROM events WHERE {R} AND kind = 'pageview' AND path = '/p/0'),
s2 AS (SELECT visitor, ts FROM events WHERE {R} AND kind = 'pageview' AND path = '/p/1'),
s3 AS (SELECT visitor, ts FROM events WHERE {R} AND kind = 'goal' AND goal = 'signup'),
a AS (SELECT s1.visitor, s1.ts AS t1, min(s2.ts) AS t2 FROM s1 JOIN s2
      ON s1.visitor = s2.visitor AND s2.ts > s1.ts AND s2.ts <= s1.ts + {DAY}
      GROUP BY s1.visitor, s1.ts),
b AS (SELECT DISTINCT a.visitor FROM a JOIN s3
      ON a.visitor = s3.visitor AND s3.ts > a.t2 AND s3.ts <= a.t1 + {DAY})
SELECT (SELECT count(DISTINCT visitor) FROM s1) UNION ALL
SELECT (SELECT count(DISTINCT visitor) FROM a) UNION ALL
SELECT (SELECT count(*) FROM b)""",
    "revenue by first-touch source (30d window)": f"""
WITH p AS (SELECT id, visitor, ts, revenue FROM events WHERE {R} AND kind = 'purchase'),
f AS (SELECT p.id, any_value(p.visitor) AS visitor, any_value(p.revenue) AS revenue, min(s.start) AS first
      FROM p JOIN sessions s ON s.visitor = p.visitor AND s.start <= p.ts AND s.start >= p.ts - {30 * DAY}
      GROUP BY p.id)
SELECT s.s_source, round(sum(f.revenue) / 100.0, 2) AS r, round(count(*), 2)
FROM f JOIN sessions s ON s.visitor = f.visitor AND s.start = f.first
GROUP BY s.s_source ORDER BY r DESC, s.s_source NULLS LAST LIMIT 10""",
}

out = {
    "version": duckdb.__version__,
    "rows": con.execute("SELECT count(*) FROM events").fetchone()[0],
    "read_ms": (loaded - t0) * 1e3,
    "load_ms": (done - t0) * 1e3,
    "db_bytes": os.path.getsize(DB),
    "queries": {},
}
for name, sql in QUERIES.items():
    times = []
    rows = None
    for run in range(RUNS + 1):
        t = time.perf_counter()
        rows = con.execute(sql).fetchall()
        if run > 0:  # the first is a warm-up
            times.append((time.perf_counter() - t) * 1e3)
    out["queries"][name] = {
        "ms": times,
        "rows": [[float(v) if isinstance(v, (int, float)) else v for v in r] for r in rows],
    }
print(json.dumps(out))
