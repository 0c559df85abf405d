"""Importing legacy keys from a `workspace,key,label` CSV, all or nothing."""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import IO, Any

from sqlalchemy import insert, select, text
from sqlalchemy.orm import Session

from app import credentials
from app.clock import utcnow
from app.models import LegacyKey, Workspace
from app.services import audit
from app.services.audit import Actor
from app.services.errors import InvalidInput
from app.services.keys import has_control_characters
from app.services.legacy import MAX_KEY_LEN, MAX_LABEL_LEN, normalize_key

CSV_COLUMNS = ("workspace", "key", "label")
_QUERY_CHUNK = 500
_INSERT_CHUNK = 1000


@dataclass(frozen=True, slots=True)
class ImportRow:
    line: int
    workspace: str
    key: str
    label: str


class ImportFailed(InvalidInput):
    """Some lines are wrong: nothing was imported. `errors` lists (line, reason)."""

    def __init__(self, errors: list[tuple[int, str]]) -> None:
        super().__init__(f"{len(errors)} line(s) failed; nothing was imported", field="file")
        self.errors = errors


@dataclass(slots=True)
class ImportResult:
    created: int = 0
    unchanged: int = 0
    per_workspace: dict[str, int] = field(default_factory=dict)


def parse_csv(stream: IO[str]) -> tuple[list[ImportRow], list[tuple[int, str]]]:
    """Rows of a `workspace,key,label` CSV (header required, columns in any order).

    Returns the readable rows and the (line, reason) of unreadable ones, so that one
    report lists every problem; a missing or wrong header raises ImportFailed at once.
    """
    reader = csv.reader(stream)
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise ImportFailed([(1, f"unreadable CSV: {exc}")]) from None
    if header is None:
        raise ImportFailed([(1, "the file is empty; expected a header workspace,key,label")])
    names = [h.strip().lower() for h in header]
    if sorted(names) != sorted(CSV_COLUMNS):
        raise ImportFailed([(1, f"the header must name exactly the columns workspace,key,label; "
                                f"got {','.join(names)}")])
    index = {name: names.index(name) for name in CSV_COLUMNS}
    rows: list[ImportRow] = []
    errors: list[tuple[int, str]] = []
    previous_end = reader.line_num
    try:
        for fields in reader:
            # Report a record by its first line: a quoted field may span several.
            line, previous_end = previous_end + 1, reader.line_num
            if not fields or all(not f.strip() for f in fields):
                continue
            if len(fields) != len(CSV_COLUMNS):
                errors.append((line, f"expected 3 fields, found {len(fields)}"))
                continue
            rows.append(ImportRow(line=line, workspace=fields[index["workspace"]].strip(),
                                  key=fields[index["key"]],
                                  label=fields[index["label"]].strip()))
    except csv.Error as exc:
        errors.append((reader.line_num, f"unreadable CSV: {exc}"))
    return rows, errors


def _chunks(items: list[Any], size: int) -> Iterable[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def import_keys(session: Session, rows: list[ImportRow], actor: Actor, *,
                progress: Callable[[int], None] | None = None,
                errors: list[tuple[int, str]] | None = None) -> ImportResult:
    """Import legacy keys all-or-nothing; a key already imported for its workspace is a no-op.

    Every line is checked before anything is written; on any error (including `errors`
    found while parsing) ImportFailed lists each failing line with its reason, sorted.
    Keys are stored as SHA-256 digests only.
    """
    advance = progress or (lambda _n: None)
    slugs = sorted({r.workspace for r in rows if r.workspace})
    workspace_ids: dict[str, int] = {}
    for chunk in _chunks(slugs, _QUERY_CHUNK):
        workspace_ids.update((slug, ws_id) for slug, ws_id in session.execute(
            select(Workspace.slug, Workspace.id).where(Workspace.slug.in_(chunk))))
    digests = [credentials.digest(k) if (k := normalize_key(r.key)) else None for r in rows]
    existing: dict[str, int] = {}
    for chunk in _chunks(sorted({d for d in digests if d}), _QUERY_CHUNK):
        existing.update((digest, ws_id) for digest, ws_id in session.execute(
            select(LegacyKey.digest, LegacyKey.workspace_id).where(LegacyKey.digest.in_(chunk))))

    errors = list(errors or [])
    seen: dict[str, int] = {}
    to_insert: list[dict[str, Any]] = []
    result = ImportResult()
    now = utcnow()
    for row, digest in zip(rows, digests, strict=True):
        problems = []
        workspace_id = workspace_ids.get(row.workspace)
        if not row.workspace:
            problems.append("empty workspace")
        elif workspace_id is None:
            problems.append(f"unknown workspace {row.workspace!r}")
        if digest is None:
            if not row.key.strip():
                problems.append("empty key")
            elif len(row.key.strip()) > MAX_KEY_LEN:
                problems.append(f"key longer than {MAX_KEY_LEN} characters")
            else:
                problems.append("key contains non-printable characters")
        elif digest in seen:
            problems.append(f"duplicate key (same key as line {seen[digest]})")
        else:
            seen[digest] = row.line
        if len(row.label) > MAX_LABEL_LEN:
            problems.append(f"label longer than {MAX_LABEL_LEN} characters")
        if has_control_characters(row.label):
            # The label becomes the key's name in `legacy migrate`, which refuses them.
            problems.append("label contains control characters")
        if digest is not None and digest in existing and workspace_id is not None \
                and existing[digest] != workspace_id:
            problems.append("key was already imported for another workspace")
        if problems:
            errors.append((row.line, "; ".join(problems)))
        elif digest in existing:
            result.unchanged += 1
        else:
            to_insert.append({"workspace_id": workspace_id, "label": row.label,
                              "digest": digest, "imported_at": now, "use_count": 0,
                              "rejected_count": 0})
            result.per_workspace[row.workspace] = result.per_workspace.get(row.workspace, 0) + 1
        advance(1)
    if errors:
        raise ImportFailed(sorted(errors))
    for chunk in _chunks(to_insert, _INSERT_CHUNK):
        session.execute(insert(LegacyKey), chunk)
    if len(to_insert) >= _INSERT_CHUNK and session.get_bind().dialect.name == "postgresql":
        # Fresh statistics: without them the planner takes the grown table for empty and
        # the next import's digest lookups degrade from index probes to scans (~50x).
        session.execute(text("ANALYZE legacy_keys"))
    result.created = len(to_insert)
    for slug, count in sorted(result.per_workspace.items()):
        audit.record(session, "legacy.imported", actor, workspace_id=workspace_ids[slug],
                     target_type="workspace", target_id=str(workspace_ids[slug]),
                     details={"count": count})
    session.flush()
    return result
