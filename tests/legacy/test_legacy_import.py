"""`legacy import FILE.csv`: digests only, idempotent, all-or-nothing with a line report."""

from __future__ import annotations

import json

import pytest

from tests.support import audit_events


@pytest.fixture
def workspaces(factory):
    return factory.workspace(slug="acme"), factory.workspace(slug="globex")


def write(tmp_path, text, name="keys.csv"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def run(app, *args):
    return app.test_cli_runner().invoke(args=["legacy", "import", *args])


def stored(app):
    from app.extensions import db
    from app.models import LegacyKey, Workspace

    with app.app_context():
        rows = db.session.query(Workspace.slug, LegacyKey.label, LegacyKey.digest).join(
            Workspace, Workspace.id == LegacyKey.workspace_id).order_by(LegacyKey.id).all()
        db.session.rollback()
        return [tuple(r) for r in rows]


GOOD = ("workspace,key,label\n"
        "acme,ak_live_1111,billing cron\n"
        "globex,gx-static-2222,\n"
        "acme,\"ak,with,commas\",\"label, quoted\"\n")


def test_import_stores_digests_only_and_audits(app, workspaces, tmp_path):
    from app.credentials import digest

    result = run(app, write(tmp_path, GOOD))
    assert result.exit_code == 0, result.output
    assert "imported 3 legacy key(s), 0 already present" in result.output
    assert stored(app) == [("acme", "billing cron", digest("ak_live_1111")),
                           ("globex", "", digest("gx-static-2222")),
                           ("acme", "label, quoted", digest("ak,with,commas"))]
    events = audit_events(app, "legacy.imported")
    assert sorted(e.details["count"] for e in events) == [1, 2]
    from app.extensions import db

    with app.app_context():  # no plaintext anywhere in the database
        dump = "\n".join(str(r) for table in ("legacy_keys", "audit_events")
                         for r in db.session.execute(db.text(f"SELECT * FROM {table}")))  # noqa: S608
        db.session.rollback()
    assert "ak_live_1111" not in dump and "gx-static-2222" not in dump


def test_reimport_is_a_no_op(app, workspaces, tmp_path):
    path = write(tmp_path, GOOD)
    assert run(app, path).exit_code == 0
    before, events = stored(app), len(audit_events(app, "legacy.imported"))
    again = run(app, "--json", path)
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout) == {"imported": 0, "unchanged": 3, "per_workspace": {},
                                        "errors": []}
    assert stored(app) == before
    assert len(audit_events(app, "legacy.imported")) == events
    # a file with one new line next to known ones imports just the new one
    more = write(tmp_path, GOOD + "globex,gx-new-3333,new\n", "more.csv")
    result = run(app, more)
    assert "imported 1 legacy key(s), 3 already present" in result.output
    assert len(stored(app)) == 4


def test_all_or_nothing_with_a_report_of_every_failing_line(app, workspaces, tmp_path):
    text = ("workspace,key,label\n"
            "acme,good-key-1,fine\n"          # line 2
            "initech,good-key-2,unknown\n"    # line 3
            "acme,   ,empty key\n"            # line 4
            "globex,good-key-1,duplicate\n"   # line 5
            "acme,good-key-3\n"               # line 6: missing field
            f"acme,good-key-4,{'x' * 201}\n")  # line 7
    result = run(app, write(tmp_path, text))
    assert result.exit_code != 0
    assert "line 3: unknown workspace 'initech'" in result.output
    assert "line 4: empty key" in result.output
    assert "line 5: duplicate key (same key as line 2)" in result.output
    assert "line 6: expected 3 fields, found 2" in result.output
    assert "line 7: label longer than 200 characters" in result.output
    assert "line 2:" not in result.output
    assert "5 line(s) failed" in result.output
    assert "nothing was imported" in result.output
    assert stored(app) == []
    assert audit_events(app, "legacy.imported") == []


def test_malformed_line_is_reported_and_nothing_imported(app, workspaces, tmp_path):
    result = run(app, "--json", write(tmp_path, "workspace,key,label\nacme,k1,a\nacme,k2\n"))
    assert result.exit_code != 0
    payload = json.loads(result.stdout)
    assert payload == {"imported": 0,
                       "errors": [{"line": 3, "error": "expected 3 fields, found 2"}]}
    assert stored(app) == []


def test_key_already_imported_for_another_workspace_is_an_error(app, workspaces, tmp_path):
    assert run(app, write(tmp_path, "workspace,key,label\nacme,shared-key,a\n")).exit_code == 0
    result = run(app, write(tmp_path, "workspace,key,label\nglobex,shared-key,b\n", "b.csv"))
    assert result.exit_code != 0
    assert "line 2: key was already imported for another workspace" in result.output
    assert [r[0] for r in stored(app)] == ["acme"]


@pytest.mark.parametrize("text", ["", "workspace,key\nacme,k\n", "slug,key,label\nacme,k,l\n",
                                  "acme,k1,label\n"])
def test_header_is_required(app, workspaces, tmp_path, text):
    result = run(app, write(tmp_path, text))
    assert result.exit_code != 0
    assert "line 1:" in result.output
    assert stored(app) == []


def test_columns_in_any_order_and_a_bom(app, workspaces, tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes("\ufefflabel,KEY,Workspace\nops,bom-key,acme\n".encode())
    result = run(app, str(path))
    assert result.exit_code == 0, result.output
    assert stored(app)[0][:2] == ("acme", "ops")


def test_not_utf8_is_a_clean_error(app, workspaces, tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes("workspace,key,label\nacme,k\xe9y,x\n".encode("latin-1"))
    result = run(app, str(path))
    assert result.exit_code != 0
    assert "not UTF-8" in result.output
    assert stored(app) == []


def test_thousands_of_rows_in_bulk(app, workspaces, tmp_path):
    lines = ["workspace,key,label"] + [f"{'acme' if i % 2 else 'globex'},bulk-key-{i:06d},k{i}"
                                       for i in range(3500)]
    path = write(tmp_path, "\n".join(lines) + "\n")
    result = run(app, path)
    assert result.exit_code == 0, result.output
    assert "imported 3500 legacy key(s)" in result.output
    assert "imported 0 legacy key(s), 3500 already present" in run(app, path).output
    assert len(stored(app)) == 3500


def test_labels_with_control_characters_are_refused_with_their_line(app, workspaces, tmp_path):
    # Such a label cannot become a key name, so `legacy migrate` would fail for the whole
    # workspace later; the import names the line instead.
    text = ("workspace,key,label\n"
            "acme,ctl-key-1,fine\n"                  # line 2
            "acme,ctl-key-2,bell\x07here\n"          # line 3
            "acme,ctl-key-3,\"two\nlines\"\n"        # lines 4-5: a quoted newline
            "globex,ctl-key-4,esc\x1b[31mred\n"      # line 6
            "globex,ctl-key-5,del\x7f\n")            # line 7
    result = run(app, "--json", write(tmp_path, text))
    assert result.exit_code != 0
    errors = json.loads(result.stdout)["errors"]
    assert errors == [{"line": line, "error": "label contains control characters"}
                      for line in (3, 4, 6, 7)]
    assert stored(app) == []
