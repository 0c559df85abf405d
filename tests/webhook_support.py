"""Webhook test helpers: real HTTP receivers on 127.0.0.1, endpoints, reading the outbox."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from sqlalchemy import select


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b"ok"
    hang: float = 0.0  # seconds to wait before answering


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


class Receiver:
    """A real HTTP server in a thread. It answers with `script` in order, then `default`."""

    def __init__(self, script: list[Reply] | None = None, default: Reply | None = None):
        self.script = list(script or [])
        self.default = default or Reply()
        self.requests: list[Received] = []
        self.release = threading.Event()  # ends every hang early (test teardown)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                receiver.requests.append(Received(
                    self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                reply = receiver.script.pop(0) if receiver.script else receiver.default
                if reply.hang:
                    receiver.release.wait(reply.hang)
                try:
                    self.send_response(reply.status)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(reply.body)))
                    self.end_headers()
                    self.wfile.write(reply.body)
                except OSError:
                    pass

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def start(self) -> Receiver:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def receiving(*script: Reply, default: Reply | None = None) -> Iterator[Receiver]:
    receiver = Receiver(list(script), default).start()
    try:
        yield receiver
    finally:
        receiver.stop()


def wait_for(predicate: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return bool(predicate())


def workspace_id(app: Any, slug: str) -> int:
    from app.extensions import db
    from app.services import accounts

    with app.app_context():
        return accounts.get_workspace(db.session, slug).id


def make_endpoint(app: Any, slug: str, url: str, **kwargs: Any) -> tuple[str, str]:
    """An endpoint of workspace `slug` (private targets allowed): (public id, secret)."""
    from app.extensions import db
    from app.services import webhooks
    from app.services.audit import Actor

    wid = workspace_id(app, slug)
    with app.app_context():
        made = webhooks.create_endpoint(db.session, wid, Actor.cli(), url=url,
                                        allow_private=True, **kwargs)
        db.session.commit()
        return made.endpoint.public_id, made.secret


def events(app: Any, event_type: str | None = None) -> list[Any]:
    """WebhookEvent rows (detached, oldest first), of one type if given."""
    from app.extensions import db
    from app.models import WebhookEvent

    with app.app_context():
        query = select(WebhookEvent).order_by(WebhookEvent.id)
        if event_type is not None:
            query = query.where(WebhookEvent.type == event_type)
        found = list(db.session.scalars(query))
        db.session.expunge_all()
        return found


def deliveries(app: Any) -> list[Any]:
    """WebhookDelivery rows (detached, oldest first)."""
    from app.extensions import db
    from app.models import WebhookDelivery

    with app.app_context():
        found = list(db.session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)))
        db.session.expunge_all()
        return found


def run_worker(app: Any, **kwargs: Any) -> Any:
    """One pass of `keymint webhooks run --once` in this process (private targets allowed)."""
    from app.extensions import db
    from app.runtime import webhook_worker

    with app.app_context():
        return webhook_worker.run_once(db.session, allow_private=True, **kwargs)
