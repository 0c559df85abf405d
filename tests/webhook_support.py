"""Webhook test helpers: real HTTP receivers on 127.0.0.1, endpoints, reading the outbox."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from sqlalchemy import select

from tests.support import REPO


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

    def __init__(self, script: list[Reply] | None = None, default: Reply | None = None,
                 answer: Callable[[Received], Reply] | None = None):
        self.script = list(script or [])
        self.answer = answer  # if given, it decides every reply instead
        self.default = default or Reply()
        self.requests: list[Received] = []
        self.release = threading.Event()  # ends every hang early (test teardown)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                received = Received(self.path,
                                    {k.lower(): v for k, v in self.headers.items()}, body)
                receiver.requests.append(received)
                if receiver.answer is not None:
                    reply = receiver.answer(received)
                else:
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
def receiving(*script: Reply, default: Reply | None = None,
              answer: Callable[[Received], Reply] | None = None) -> Iterator[Receiver]:
    receiver = Receiver(list(script), default, answer).start()
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


class Trickler:
    """A receiver on 127.0.0.1 that reads a request, then answers one byte every `every`
    seconds, each well inside any socket timeout, for `total` seconds before the answer is
    complete (a 200). `part`: where the trickle is, "headers" or "body". `hits` counts the
    requests it has read."""

    def __init__(self, part: str, every: float = 0.05, total: float = 20.0) -> None:
        self.part, self.every, self.total = part, every, total
        self.stopping = threading.Event()
        self.hits = 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}/hook"

    def _serve(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            self.hits += 1
            body = b"ok"
            if self.part == "headers":
                head, slow = b"HTTP/1.1 200 OK\r\nX-Slow: ", b"a" * 100000
                tail = b"\r\nContent-Length: 2\r\n\r\n" + body
            else:
                head = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n"
                slow, tail = b"a" * 100000, b""
            try:
                conn.sendall(head)
                ends = time.monotonic() + self.total
                for byte in slow:
                    if time.monotonic() >= ends or self.stopping.is_set():
                        break
                    conn.sendall(bytes([byte]))
                    self.stopping.wait(self.every)
                conn.sendall(tail)
            except OSError:  # the attempt hung up: what a bounded client does
                return

    def __enter__(self) -> Trickler:
        self.thread.start()
        return self

    def __exit__(self, *_exc: Any) -> None:
        self.stopping.set()
        self.sock.close()
        self.thread.join(5)


class WorkerProcess:
    """A real `keymint webhooks run` process (private targets allowed), output to a file.
    Stopped by whoever made it (the `workers` fixture): SIGTERM, then SIGKILL if it hangs."""

    def __init__(self, database_url: str, *args: str) -> None:
        self.env = {**os.environ, "KEYMINT_DATABASE_URL": database_url,
                    "KEYMINT_WEBHOOK_ALLOW_PRIVATE_TARGETS": "true",
                    "KEYMINT_RATELIMIT_ENABLED": "false"}
        self.args = args
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 (closed with this object)

    def start(self) -> WorkerProcess:
        self.proc = subprocess.Popen([sys.executable, "-m", "app.cli", "webhooks", "run",
                                      *self.args], cwd=REPO, env=self.env, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode("utf-8", "replace")

    def kill(self) -> None:
        """kill -9: no handler runs, nothing is finished or rolled back by the worker."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int | None:
        """SIGTERM (the graceful stop); its exit status, or None if it had to be killed."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
                return None
        return self.proc.returncode
