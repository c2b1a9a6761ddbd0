"""External readers of the report directory: DuckDB and pyarrow, with Hive partitioning.

Usage: readers.py REPORT_DIR EXPECTED_TOTAL_COUNT
Checks that window_start is a timestamp and that sum(total_count) is the expected total.
"""
import sys

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

report, expected = sys.argv[1], int(sys.argv[2])

con = duckdb.connect()
rows = con.execute(
    "select typeof(window_start), sum(total_count), count(distinct date) "
    "from read_parquet(?, hive_partitioning = true) group by 1",
    [f"{report}/**/*.parquet"],
).fetchall()
assert len(rows) == 1, rows
kind, total, dates = rows[0]
assert kind.startswith("TIMESTAMP"), f"duckdb: window_start is {kind}"
assert total == expected, f"duckdb: sum(total_count) = {total}, expected {expected}"

table = ds.dataset(report, format="parquet", partitioning="hive").to_table()
field = table.schema.field("window_start")
assert pa.types.is_timestamp(field.type), f"pyarrow: window_start is {field.type}"
total = pc.sum(table["total_count"]).as_py()
assert total == expected, f"pyarrow: sum(total_count) = {total}, expected {expected}"
print(f"duckdb and pyarrow agree: {expected} views, window_start {kind} / {field.type}")
