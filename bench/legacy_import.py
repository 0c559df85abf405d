"""Time `legacy import` of N generated rows (and its idempotent re-run) on a fresh database.

    .venv/bin/python bench/legacy_import.py [ROWS] [DATABASE_URL]
Default: 50000 rows into a temporary SQLite file. For PostgreSQL pass an empty database URL.
"""

import os
import sys
import tempfile
import time

os.environ.setdefault("AUTHLIB_INSECURE_TRANSPORT", "1")

from flask_migrate import upgrade

from app import create_app
from app.extensions import db
from app.services import accounts
from app.services.audit import Actor

rows = int(sys.argv[1]) if len(sys.argv) > 1 else 50000
url = sys.argv[2] if len(sys.argv) > 2 else f"sqlite:///{tempfile.mkdtemp()}/bench.sqlite3"
app = create_app({"SQLALCHEMY_DATABASE_URI": url})
with app.app_context():
    upgrade()
    user = accounts.create_user(db.session, "bench@example.com", Actor.cli())
    for i in range(20):
        accounts.create_workspace(db.session, f"ws{i}", user, Actor.cli())
    db.session.commit()
path = os.path.join(tempfile.mkdtemp(), "keys.csv")
with open(path, "w") as out:
    out.write("workspace,key,label\n")
    for i in range(rows):
        out.write(f"ws{i % 20},legacy-{i:08d}-{os.urandom(8).hex()},integration {i}\n")
runner = app.test_cli_runner()
for attempt in ("import", "re-import"):
    start = time.perf_counter()
    result = runner.invoke(args=["legacy", "import", path])
    elapsed = time.perf_counter() - start
    print(f"{attempt}: {rows} rows in {elapsed:.2f} s ({rows / elapsed:,.0f} rows/s): "
          f"{result.stdout.strip().splitlines()[-1]}")
