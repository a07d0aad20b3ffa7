import datetime as dt
import sys

import pyarrow as pa

from grantex_local.analysis.engines import open_engine

eng = open_engine(sys.argv[1])
eng.register_arrow("t", pa.table({"x": pa.array([1, None, 3], pa.int64()), "s": ["a.b", None, "grantex.x"],
   "ts": pa.array([dt.datetime(2026,3,1,tzinfo=dt.UTC)]*3, pa.timestamp("us", tz="UTC")),
   "j": ['["a","b"]', None, '[]']}))
for q in ["SELECT x FROM t ORDER BY x",
          "SELECT 7 / 2 AS d",
          "SELECT CAST(7 / 2 AS BIGINT) AS d2, FLOOR(7 / 2) AS f",
          "SELECT ts + INTERVAL '30' SECOND AS plus FROM t LIMIT 1",
          "SELECT ts + INTERVAL 30 SECOND AS plus2 FROM t LIMIT 1",
          "SELECT x FROM t WHERE x IS NOT DISTINCT FROM NULL",
          "SELECT substr(s, 1, 8) AS p, length(s) AS n FROM t",
          "SELECT COUNT(*) FROM t WHERE s LIKE 'grantex.%'",
          "SELECT json_array_length(j) AS n FROM t",
          "SELECT DATE_TRUNC('month', ts) AS m FROM t LIMIT 1",
          "SELECT x, LAG(x) OVER (ORDER BY x NULLS FIRST) AS lagx FROM t",
          "SELECT CAST(ts AS DOUBLE) AS e FROM t LIMIT 1",
          "SELECT epoch(ts) AS e FROM t LIMIT 1",
          "SELECT unix_micros(ts) AS e FROM t LIMIT 1",
          ]:
    try:
        print("OK ", q, "->", eng.sql(q).iloc[:, 0].tolist())
    except Exception as e:
        print("ERR", q, "->", str(e).splitlines()[0][:120])
eng.close()
