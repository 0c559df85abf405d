"""The dependency direction of app/: every import (function-local ones too) runs downwards.

Layers, top to bottom (the "Architecture" of the design notes):

    top         app/__init__.py (create_app), app/cli.py, wsgi.py — may use anything
    api         app/api: management routes
    console     app/console: the web console's pages (a sibling of api)
    oauth       app/oauth: the protocol and its routes
    web         app/web: HTTP plumbing shared by every blueprint
    runtime     app/runtime: process machinery (server, lifecycle, logs, metrics, engine)
    services    app/services: the rules (take the session; no Flask at all)
    serialize   app/serialize.py: models -> JSON for the API and the audit mirror; it reads
                models, so it sits above them, and services never render
    extensions  app/extensions.py: the unbound `db`; it binds to models' Base, so it sits
                above models, and services never reach for it (they are handed a session)
    models      app/models
    foundation  app/clock.py, app/config.py, app/credentials.py, app/durability.py,
                app/transactions.py

api and oauth are siblings: oauth never imports api; api may use two oauth modules only,
`app.oauth.resource` (the bearer-token check its routes are decorated with) and
`app.oauth.errors` (the realm and error types those checks answer with).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "app"

FOUNDATION = frozenset({"foundation"})
_BELOW_SERVICES = frozenset({"services", "models", "foundation"})
_BELOW_RUNTIME = frozenset({"runtime", "serialize", "extensions"}) | _BELOW_SERVICES
_BELOW_WEB = frozenset({"web"}) | _BELOW_RUNTIME

# layer -> the layers its modules may import (its own included)
ALLOWED: dict[str, frozenset[str]] = {
    "top": frozenset({"top", "api", "console", "oauth", "oauth-public"}) | _BELOW_WEB,
    "api": frozenset({"api", "oauth-public"}) | _BELOW_WEB,
    "console": frozenset({"console", "oauth-public"}) | _BELOW_WEB,
    "oauth": frozenset({"oauth", "oauth-public"}) | _BELOW_WEB,
    "web": _BELOW_WEB,
    "runtime": _BELOW_RUNTIME,
    "services": _BELOW_SERVICES,
    "serialize": frozenset({"serialize", "models", "foundation"}),
    "extensions": frozenset({"extensions", "models", "foundation"}),
    "models": frozenset({"models", "foundation"}),
    "foundation": FOUNDATION,
}

# Layers that must not import Flask at all (request state or otherwise): the rules and what
# they stand on run the same in a request, the CLI, a background thread or a test.
NO_FLASK = frozenset({"services", "serialize", "models", "foundation"})

# The oauth modules api may use (see the module docstring).
OAUTH_PUBLIC = frozenset({"app.oauth.resource", "app.oauth.errors"})

_PREFIXES = (
    ("app.api", "api"),
    ("app.console", "console"),
    ("app.oauth", "oauth"),
    ("app.web", "web"),
    ("app.runtime", "runtime"),
    ("app.services", "services"),
    ("app.models", "models"),
    ("app.serialize", "serialize"),
    ("app.extensions", "extensions"),
    ("app.clock", "foundation"),
    ("app.config", "foundation"),
    ("app.credentials", "foundation"),
    ("app.durability", "foundation"),
    ("app.transactions", "foundation"),
    ("app.cli", "top"),
    ("app.cli_signing_keys", "top"),
    ("app.cli_resources", "top"),
    ("app.cli_webhooks", "top"),
    ("app.cli_admin", "top"),
    ("app.cli_console", "top"),
    ("wsgi", "top"),
)


def layer_of(module: str, *, imported: bool = False) -> str:
    """The layer of an app module name; `app` itself (create_app) is the top."""
    if imported and module in OAUTH_PUBLIC:
        return "oauth-public"
    for prefix, layer in _PREFIXES:
        if module == prefix or module.startswith(prefix + "."):
            return layer
    if module == "app":
        return "top"
    raise AssertionError(f"{module} belongs to no layer: add it to tests/test_layering.py")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_module(name: str) -> bool:
    base = ROOT.joinpath(*name.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


@dataclass(frozen=True)
class Import:
    path: Path
    line: int
    target: str        # the module imported (app.x.y), or "flask" for Flask itself
    text: str          # as written, for the message

    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def imports_of(path: Path) -> list[Import]:
    """Every import of app modules and of flask in `path`, at any depth (function-local too)."""
    module = module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[Import] = []
    for node in ast.walk(ast.parse(path.read_text("utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.append(Import(path, node.lineno, alias.name, f"import {alias.name}"))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            names = ", ".join(a.name for a in node.names)
            text = f"from {'.' * node.level}{node.module or ''} import {names}"
            for alias in node.names:
                # `from app import credentials` imports the module app.credentials;
                # `from app import create_app` imports app itself.
                sub = f"{base}.{alias.name}"
                found.append(Import(path, node.lineno, sub if _is_module(sub) else base, text))
    return [i for i in found
            if i.target.split(".")[0] in ("app", "wsgi", "flask")]


def sources() -> list[Path]:
    return sorted([*APP.rglob("*.py"), ROOT / "wsgi.py"])


def violations(paths: list[Path]) -> list[str]:
    problems = []
    for path in paths:
        layer = layer_of(module_name(path))
        for imp in imports_of(path):
            if imp.target.split(".")[0] == "flask":
                if layer in NO_FLASK:
                    problems.append(f"{imp.where()}: `{imp.text}` — {layer} must not use Flask")
                continue
            target = layer_of(imp.target, imported=True)
            if target not in ALLOWED[layer]:
                problems.append(f"{imp.where()}: `{imp.text}` — {layer} must not import "
                                f"{target.removesuffix('-public')} ({imp.target})")
    return list(dict.fromkeys(problems))  # `from flask import g, request` is one problem


def test_every_module_belongs_to_a_layer():
    for path in sources():
        layer_of(module_name(path))


def test_imports_run_downwards():
    problems = violations(sources())
    assert not problems, "imports against the layering:\n" + "\n".join(problems)


@pytest.mark.parametrize(("module", "source", "expected"), [
    ("app/runtime/bad.py", "def f():\n    from app.web import context\n",
     "app/runtime/bad.py:2: `from app.web import context` — runtime must not import web"),
    ("app/services/bad.py", "from flask import g\n",
     "app/services/bad.py:1: `from flask import g` — services must not use Flask"),
    ("app/oauth/bad.py", "import app.api.legacy\n",
     "app/oauth/bad.py:1: `import app.api.legacy` — oauth must not import api"),
    ("app/api/bad.py", "from app.oauth.server import parse_basic\n",
     "app/api/bad.py:1: `from app.oauth.server import parse_basic` — api must not import oauth"),
    ("app/models/bad.py", "from ..extensions import db\n",
     "app/models/bad.py:1: `from ..extensions import db` — models must not import extensions"),
])
def test_a_bad_import_is_named_with_file_and_line(tmp_path, monkeypatch, module, source,
                                                  expected):
    """The checker itself: a module written against the rules is reported precisely."""
    fake = tmp_path / module
    fake.parent.mkdir(parents=True)
    fake.write_text(source)
    for name in ("app/web/context.py", "app/api/legacy.py", "app/extensions.py"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("")
        (tmp_path / name).parent.joinpath("__init__.py").write_text("")
    monkeypatch.setitem(globals(), "ROOT", tmp_path)
    [problem] = violations([fake])
    assert problem.startswith(expected)
