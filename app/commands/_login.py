"""The login of ``raincheck serve --basic-auth``: checked credentials and throttled failures.

Panel 1.9.4's own basic auth (``panel.auth.BasicAuthProvider`` + ``BasicLoginHandler``) takes any
string as the password (a path that does not exist, one space), re-reads a JSON file at each
login and answers failed logins at once, without limit. Here the value is checked when the server
starts (:func:`parse_basic_auth`) and :class:`RaincheckAuthProvider` (a ``BasicAuthProvider``
whose login handler is :func:`make_login_handler`'s) slows failed logins down per client
address, exponentially, and refuses every login from an address for ``lockout_s`` after
``max_failures`` failures within ``window_s`` (:class:`LoginThrottle`). The delay is an
``await asyncio.sleep``: it holds the failed request, never the Tornado event loop.

The client address is the TCP peer (``request.remote_ip``); ``X-Forwarded-For`` is not trusted
(anyone can send it). Behind a reverse proxy every user shares the proxy's address, so one
user's failures lock out all: run raincheck exposed directly or give the proxy its own limits.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import os
import time
from pathlib import Path

import click

MIN_PASSWORD = 8
MAX_TRACKED = 10_000  # client addresses remembered at most (then expired ones are forgotten)


def _check_password(pw, what: str) -> None:
    """A password: a string of at least MIN_PASSWORD characters without surrounding whitespace
    (the message never repeats the password)."""
    if not isinstance(pw, str):
        raise click.BadParameter(f"{what} must be a string", param_hint="--basic-auth")
    if not pw.strip():
        raise click.BadParameter(f"{what} is empty or only whitespace", param_hint="--basic-auth")
    if pw != pw.strip():
        raise click.BadParameter(f"{what} starts or ends with whitespace (a copy-paste slip?)",
                                 param_hint="--basic-auth")
    if len(pw) < MIN_PASSWORD:
        raise click.BadParameter(f"{what} is too short ({len(pw)} characters; at least {MIN_PASSWORD})",
                                 param_hint="--basic-auth")


def looks_like_path(value: str) -> bool:
    return "/" in value or os.sep in value or (os.altsep or "/") in value or value.lower().endswith(".json")


def parse_basic_auth(value: str) -> str | dict[str, str]:
    """The credentials of ``--basic-auth``: one shared password, or ``{user: password}`` from a
    JSON file. A value that looks like a file path (a path separator, or ending in .json) must
    be an existing JSON file; every password must pass :func:`_check_password`."""
    if isinstance(value, str) and (os.path.isfile(value) or looks_like_path(value)):
        p = Path(value)
        if not p.is_file():
            raise click.BadParameter(
                f"{value!r} looks like a file path but there is no such file (a password may not contain "
                "'/' or end in '.json'; a users file is a JSON object {\"user\": \"password\"})",
                param_hint="--basic-auth")
        try:
            users = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise click.BadParameter(f"users file {value!r} is not readable JSON ({str(e)[:120]})",
                                     param_hint="--basic-auth") from None
        if not isinstance(users, dict) or not users:
            raise click.BadParameter(f"users file {value!r} must be a non-empty JSON object "
                                     "{\"user\": \"password\"}", param_hint="--basic-auth")
        for user, pw in users.items():
            if not user.strip() or user != user.strip():
                raise click.BadParameter(f"users file {value!r}: user name {user!r} is empty or has surrounding "
                                         "whitespace", param_hint="--basic-auth")
            _check_password(pw, f"users file {value!r}: the password of {user!r}")
        return {str(u): str(pw) for u, pw in users.items()}
    _check_password(value, "the --basic-auth password")
    return value


class LoginThrottle:
    """Failed logins per client address: each failure is answered after ``base_delay_s *
    2**(n-1)`` (at most ``max_delay_s``) for the n-th failure within ``window_s``; the
    ``max_failures``-th locks the address out (every login refused, right password included) for
    ``lockout_s``. A successful login forgets the address's failures."""

    def __init__(self, max_failures: int = 5, window_s: float = 300.0, lockout_s: float = 60.0,
                 base_delay_s: float = 0.25, max_delay_s: float = 4.0, clock=time.monotonic):
        if max_failures < 1 or lockout_s < 0 or window_s <= 0:
            raise ValueError("max_failures >= 1, lockout_s >= 0 and window_s > 0")
        self.max_failures, self.window_s, self.lockout_s = int(max_failures), float(window_s), float(lockout_s)
        self.base_delay_s, self.max_delay_s, self.clock = float(base_delay_s), float(max_delay_s), clock
        self._failures: dict[str, list[float]] = {}
        self._locked: dict[str, float] = {}

    def retry_after(self, client: str) -> float:
        """Seconds ``client`` is still locked out (0: it may try)."""
        until = self._locked.get(client)
        if until is None:
            return 0.0
        left = until - self.clock()
        if left <= 0:
            del self._locked[client]
            return 0.0
        return left

    def failed(self, client: str) -> float:
        """Record a failure; returns the delay before answering it (0 when it locked the client
        out: :meth:`retry_after` then says for how long)."""
        now = self.clock()
        self._forget_expired(now)
        times = [t for t in self._failures.get(client, ()) if now - t < self.window_s] + [now]
        if len(times) >= self.max_failures:
            self._failures.pop(client, None)
            self._locked[client] = now + self.lockout_s
            return 0.0
        self._failures[client] = times
        return min(self.base_delay_s * 2 ** (len(times) - 1), self.max_delay_s)

    def succeeded(self, client: str) -> None:
        self._failures.pop(client, None)

    def _forget_expired(self, now: float) -> None:
        if len(self._failures) + len(self._locked) < MAX_TRACKED:
            return
        self._failures = {c: t for c, t in self._failures.items() if t and now - t[-1] < self.window_s}
        self._locked = {c: u for c, u in self._locked.items() if u > now}
        while len(self._failures) + len(self._locked) >= MAX_TRACKED and self._failures:
            self._failures.pop(next(iter(self._failures)))  # oldest first (insertion order)


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


def make_login_handler(credentials: str | dict[str, str], throttle: LoginThrottle):
    """A ``panel.auth.BasicLoginHandler`` checking ``credentials`` (constant-time) and
    throttling failures with ``throttle``."""
    import tornado.escape
    from panel.auth import BasicLoginHandler, _validate_next_url
    from panel.io.state import state

    class RaincheckLoginHandler(BasicLoginHandler):
        def _validate(self, username, password):
            if isinstance(credentials, dict):
                want = credentials.get(username)
                return want is not None and _same(password, want)
            return _same(password, credentials)

        def _back(self, message: str) -> None:
            base = self.request.uri.split("?", 1)[0]
            self.redirect(base + "?error=" + tornado.escape.url_escape(message))

        async def post(self):
            client = self.request.remote_ip or "?"
            wait = throttle.retry_after(client)
            if wait > 0:
                self._back(f"Too many failed logins from your address: try again in {max(int(wait + 0.999), 1)} s.")
                return
            username = self.get_argument("username", "")
            password = self.get_argument("password", "")
            if self._validate(username, password):
                throttle.succeeded(client)
                self.set_current_user(username)
                self.redirect(_validate_next_url(self.get_cookie("next_url", state.base_url)))
                return
            delay = throttle.failed(client)
            if delay > 0:
                await asyncio.sleep(delay)  # holds this request only, not the event loop
            wait = throttle.retry_after(client)
            if wait > 0:
                self._back(f"Too many failed logins from your address: try again in {max(int(wait + 0.999), 1)} s.")
            else:
                self._back("Invalid username or password!")

    return RaincheckLoginHandler


def make_auth_provider(credentials: str | dict[str, str], throttle: LoginThrottle | None = None):
    """A ``panel.auth.BasicAuthProvider`` whose login is :func:`make_login_handler`'s; pass it as
    ``auth_provider`` to ``panel.serve`` (instead of ``basic_auth``)."""
    from panel.auth import BasicAuthProvider

    handler = make_login_handler(credentials, throttle or LoginThrottle())

    class RaincheckAuthProvider(BasicAuthProvider):
        @property
        def login_handler(self):
            handler._login_endpoint = self._login_endpoint
            handler._login_template = self._login_template
            return handler

    return RaincheckAuthProvider()
