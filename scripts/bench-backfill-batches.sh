#!/bin/sh
# Batch 1 vs batch 400 of pg-add-column-backfill (5000-row batches, 2M rows), old vs keyset SQL.
# Usage: PGHOST=127.0.0.1 PGPORT=5432 PGDB=scratch scripts/bench-backfill-batches.sh
# (creates and drops a table `bf` in that database; needs about 300 MB).
P="psql -X -q -h ${PGHOST:-127.0.0.1} -p ${PGPORT:-5432} -U postgres -d ${PGDB:-postgres}"
$P <<'SQL'
DROP TABLE IF EXISTS bf;
CREATE TABLE bf (id bigint PRIMARY KEY, total_cents int NOT NULL, pad text);
INSERT INTO bf SELECT g, g % 977, repeat('x', 40) FROM generate_series(1, 2000000) g;
ALTER TABLE bf ADD COLUMN total_cents_big bigint;
VACUUM ANALYZE bf;
SQL
old() { printf "%s\n" "BEGIN; \timing on
UPDATE bf SET total_cents_big = total_cents WHERE id IN (SELECT id FROM bf WHERE total_cents_big IS NULL AND total_cents IS NOT NULL ORDER BY id LIMIT 5000 FOR UPDATE SKIP LOCKED);
\timing off
ROLLBACK;"; }
new() { printf "%s\n" "BEGIN; \timing on
WITH batch AS (UPDATE bf SET total_cents_big = total_cents WHERE id IN (SELECT id FROM bf WHERE id > $1 AND total_cents_big IS NULL AND total_cents IS NOT NULL ORDER BY id LIMIT 5000 FOR UPDATE SKIP LOCKED) RETURNING id AS k) SELECT count(*), max(k) FROM batch;
\timing off
ROLLBACK;"; }
run() { for i in 1 2 3; do "$@" | $P | grep Time; done; }
echo "batch 1, old:";    run old
echo "batch 1, keyset:"; run new 0
# Batches 1..399 done: rows 1..1995000 filled.
$P -c "UPDATE bf SET total_cents_big = total_cents WHERE id <= 1995000" -c "VACUUM ANALYZE bf"
echo "batch 400, old:";    run old
echo "batch 400, keyset:"; run new 1995000
$P -c "DROP TABLE bf"
