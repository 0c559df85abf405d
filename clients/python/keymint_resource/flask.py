"""Flask integration: `KeymintResource(app, verifier)`, `@require_token(...)`, an app-wide guard."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from flask import Flask, Response, current_app, g, request

from keymint_resource.errors import InsufficientScope, TokenError
from keymint_resource.guard import Guard
from keymint_resource.metadata import ProtectedResource
from keymint_resource.token import AccessToken
from keymint_resource.verifier import TokenVerifier

EXTENSION = "keymint_resource"
F = TypeVar("F", bound=Callable[..., Any])


class KeymintResource:
    """Binds a TokenVerifier to a Flask app.

    `protect_all=True` installs the app-wide guard: every request except `exempt` paths and
    views marked `@public` needs a valid token with `scopes`. `@require_token(...)` adds a
    view's own scopes on top (or protects single views when the guard is off).
    """

    def __init__(self, app: Flask | None = None, verifier: TokenVerifier | None = None, *,
                 protect_all: bool = False, scopes: Iterable[str] = (),
                 exempt: Iterable[str] = (), metadata: ProtectedResource | None = None,
                 realm: str | None = None) -> None:
        self.verifier = verifier
        self.protect_all = protect_all
        self.scopes = tuple(scopes)
        self.exempt = tuple(exempt)
        self.metadata = metadata
        self.realm = realm
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask, verifier: TokenVerifier | None = None) -> None:
        verifier = verifier or self.verifier
        if verifier is None:
            raise ValueError("KeymintResource needs a TokenVerifier")
        exempt = self.exempt
        if self.metadata is not None:
            document = self.metadata
            app.add_url_rule(document.path, "keymint_protected_resource_metadata",
                             lambda: Response(document.body(), 200, document.headers()))
            exempt = (*exempt, document.path)
        # One Guard per app, so one KeymintResource may serve several apps (init_app).
        app.extensions[EXTENSION] = Guard(verifier, self.scopes, None, exempt, self.metadata,
                                          self.realm)
        if self.protect_all:
            app.before_request(_guard_request)


def _guard() -> Guard:
    try:
        return current_app.extensions[EXTENSION]
    except KeyError:
        raise RuntimeError("call KeymintResource(app, verifier) before using require_token")\
            from None


def _refusal(guard: Guard, error: TokenError) -> Response:
    status, headers, body = guard.refusal(error)
    return Response(body, status, headers)


def _guard_request() -> Response | None:
    guard = _guard()
    view = current_app.view_functions.get(request.endpoint or "")
    if request.method == "OPTIONS" or request.endpoint is None or \
            getattr(view, "_keymint_public", False) or guard.is_exempt(request.path):
        return None  # unknown routes get their 404/405 without revealing anything
    try:
        g.keymint_token = guard.authorize(request.headers.get("Authorization"), request.method,
                                          request.path)
    except TokenError as error:
        return _refusal(guard, error)
    return None


def require_token(*scopes: str) -> Callable[[F], F]:
    """Decorate a view: it runs only for a valid token holding every scope of `scopes`."""

    def decorate(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            guard = _guard()
            try:
                checked: AccessToken | None = g.get("keymint_token")
                if checked is None:
                    g.keymint_token = guard.authorize(
                        request.headers.get("Authorization"), request.method, request.path,
                        scopes)
                else:
                    # The app-wide guard checked this request already; only the view's scopes
                    # are left to check.
                    missing = checked.missing_scopes(scopes)
                    if missing:
                        raise InsufficientScope("The token lacks a required scope.", missing)
            except TokenError as error:
                return _refusal(guard, error)
            return view(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


def public(view: F) -> F:
    """Mark a view as served without a token even under the app-wide guard."""
    view._keymint_public = True  # type: ignore[attr-defined]
    return view


def current_token() -> AccessToken:
    """The checked token of this request (inside a protected view)."""
    token: AccessToken | None = g.get("keymint_token")
    if token is None:
        raise RuntimeError("no checked token: the view is not protected")
    return token
