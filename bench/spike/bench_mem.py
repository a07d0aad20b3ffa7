"""Peak RSS of checks 3, 5, 10: SQL on DuckDB over a parquet export vs today's pandas load + checks.
Run each mode in a fresh process: python bench_mem.py duckdb|pandas|spark EXPORT_DIR"""
import resource
import sys
import time

mode, directory = sys.argv[1], sys.argv[2]
limit = sys.argv[3] if len(sys.argv) > 3 else None
t0 = time.perf_counter()
times = {}
if mode == "pandas":
    from grantex_local.analysis import check_after_revocation, check_retention, check_scope, load
    ds = load(directory); times["load"] = time.perf_counter() - t0
    checks = [(check_scope, {}), (check_after_revocation, {}), (check_retention, {})]
    target = ds
else:
    from grantex_local.analysis.engines import from_parquet, open_engine
    from grantex_local.analysis.sqlchecks import (
        sql_check_after_revocation,
        sql_check_retention,
        sql_check_scope,
    )
    eng = open_engine(mode, **({"memory_limit": limit} if limit else {}))
    target = from_parquet(eng, directory); times["open"] = time.perf_counter() - t0
    checks = [(sql_check_scope, {}), (sql_check_after_revocation, {}), (sql_check_retention, {})]
for fn, kw in checks:
    t = time.perf_counter(); r = fn(target, **kw); times[f"check{r.id}"] = time.perf_counter() - t
    print(f"  check {r.id}: {'PASS' if r.passed else 'FAIL'} {len(r.evidence)} rows; {r.summary[:100]}")
print(mode, {k: round(v, 2) for k, v in times.items()}, "total", round(time.perf_counter() - t0, 2),
      "peak RSS MB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024, "children MB", resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024)
