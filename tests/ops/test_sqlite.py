"""The embedded default's SQLite engine (oversight/ops/sqlite): concurrent writers wait in line, none fails.

Each case runs in a subprocess on a real file (the suite's own database is in memory, where the engine keeps
Django's behaviour), with SQLite's busy timeout cut to 50 ms so that only the in-process lock can keep writers
from failing: with Django's plain backend the same script fails most of its transactions with "database is
locked" (checked by hand when this was written; see bench/README.md).
"""

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

SCRIPT = """
import json, sys, threading, time
import django
django.setup()
from django.db import connection, connections, transaction
connections.settings["default"]["OPTIONS"]["timeout"] = 0.05
with connection.cursor() as c:
    c.execute("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, who INTEGER, n INTEGER)")
connection.close()
errors, done = [], []

def writer(who):
    try:
        for n in range(30):
            try:
                with transaction.atomic():
                    with connection.cursor() as c:
                        c.execute("SELECT count(*) FROM t")
                        time.sleep(0.003)  # work done while holding the write lock
                        c.execute("INSERT INTO t (who, n) VALUES (%s, %s)", [who, n])
                with connection.cursor() as c:  # a single write outside a transaction (autocommit)
                    c.execute("UPDATE t SET n = n WHERE who = %s AND n = %s", [who, n])
                done.append(1)
            except Exception as exc:
                errors.append(repr(exc))
    finally:
        connection.close()

threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
for t in threads: t.start()
for t in threads: t.join()
with connection.cursor() as c:
    c.execute("SELECT count(*) FROM t")
    rows = c.fetchone()[0]
print(json.dumps({"errors": errors[:5], "n_errors": len(errors), "done": len(done), "rows": rows,
                  "engine": connection.settings_dict["ENGINE"]}))
"""


def run_script(tmp_path, **env) -> dict:
    clean = {"PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "oversight.settings", "DATA_DIR": str(tmp_path), **env}
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=REPO, env=clean, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_concurrent_write_transactions_wait_in_line_instead_of_failing(tmp_path):
    result = run_script(tmp_path, SQLITE_PATH=str(tmp_path / "db.sqlite3"))
    assert result["engine"] == "oversight.ops.sqlite"
    assert result["n_errors"] == 0, result["errors"]
    assert (result["done"], result["rows"]) == (240, 240)


def test_a_database_url_naming_sqlite_gets_the_same_serialised_writes(tmp_path):
    result = run_script(tmp_path, DATABASE_URL=f"sqlite:///{tmp_path / 'by-url.sqlite3'}")
    assert result["engine"] == "oversight.ops.sqlite"
    assert result["n_errors"] == 0, result["errors"]
    assert result["rows"] == 240
