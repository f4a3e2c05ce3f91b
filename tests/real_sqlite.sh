#!/usr/bin/env bash
# Real program: the sqlite3 shell inserting thousands of rows in one transaction into a fresh database, then
# aggregate and sorted queries; output with LD_PRELOAD=$LIB must equal the output without it. Env: LIB.
set -euo pipefail
LIB=${LIB-}
if ! command -v sqlite3 >/dev/null 2>&1; then
    echo "real_sqlite: sqlite3 not found in PATH; install the sqlite3 shell (CI must provide it)" >&2
    exit 1
fi
scale=${HAK_TEST_SCALE:-100}
rows=$((30000 * scale / 100))
((rows >= 1000)) || rows=1000
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# One INSERT statement per row (thousands of prepared statements), deterministic pseudo-random values.
{
    echo "PRAGMA journal_mode=WAL;"
    echo "CREATE TABLE t(id INTEGER PRIMARY KEY, grp INTEGER, name TEXT, val REAL, blob BLOB);"
    echo "BEGIN;"
    awk -v n="$rows" 'BEGIN {
        s = 12345
        for (i = 1; i <= n; i++) {
            s = (s * 1103515245 + 12345) % 2147483648
            name = sprintf("name-%d-%s", s % 5000, substr("abcdefghijklmnopqrstuvwxyz", 1 + s % 26, 1 + s % 13))
            printf "INSERT INTO t(grp, name, val, blob) VALUES(%d, '\''%s'\'', %d.%02d, zeroblob(%d));\n", s % 37, name, s % 100000, s % 100, s % 3000
        }
    }'
    echo "COMMIT;"
    cat <<'SQL'
CREATE INDEX t_name ON t(name);
UPDATE t SET val = val * 2 WHERE grp % 3 = 0;
DELETE FROM t WHERE grp = 5;
.mode list
SELECT count(*), sum(grp), printf('%.2f', sum(val)), sum(length(blob)), count(DISTINCT name) FROM t;
SELECT grp, count(*), printf('%.2f', avg(val)), min(name), max(name) FROM t GROUP BY grp ORDER BY grp;
SELECT id, name, printf('%.2f', val) FROM t ORDER BY name DESC, id LIMIT 50;
SELECT group_concat(name, ',') FROM (SELECT name FROM t ORDER BY val, id LIMIT 200);
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 20000)
  SELECT count(*), sum(length(printf('%0100d', x))) FROM c;
PRAGMA integrity_check;
SQL
} >"$tmp/script.sql"

run() { # $1 = name, $2 = preload
    rm -f "$tmp/$1.db" "$tmp/$1.db-wal" "$tmp/$1.db-shm"
    env LD_PRELOAD="$2" sqlite3 -batch -bail "$tmp/$1.db" <"$tmp/script.sql" >"$tmp/$1.out" 2>"$tmp/$1.err" || {
        echo "real_sqlite: sqlite3 failed (exit $?) with LD_PRELOAD='$2'; stderr:" >&2
        tail -n 20 "$tmp/$1.err" >&2
        return 1
    }
}
run ref ""
run out "$LIB"
if ! grep -qx ok "$tmp/ref.out"; then
    echo "real_sqlite: reference run has no integrity_check 'ok':" >&2
    tail -n 5 "$tmp/ref.out" >&2
    exit 1
fi
if ! diff -u "$tmp/ref.out" "$tmp/out.out"; then
    echo "real_sqlite: output differs under LD_PRELOAD=$LIB" >&2
    exit 1
fi
echo "real_sqlite: identical output ($rows inserts, $(wc -l <"$tmp/ref.out") lines) with LD_PRELOAD=${LIB:-<none>}"
