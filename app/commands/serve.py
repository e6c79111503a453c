"""`raincheck serve`: the Panel web app (on 127.0.0.1:5006 by default), with a /health endpoint."""

from __future__ import annotations

import click
import errno
import socket
from app.geometry import warm_up
import threading
import os
from app.commands._login import make_auth_provider, parse_basic_auth, LoginThrottle
import secrets


def make_health_handler():
    from tornado.web import RequestHandler

    class HealthHandler(RequestHandler):
        """200 "ok" while the server runs (Docker health check)."""

        def get(self):
            self.set_header("Content-Type", "text/plain")
            self.set_header("Cache-Control", "no-store")
            self.write("ok")

    return HealthHandler


LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def check_exposure(address: str, websocket_origins, basic_auth, oauth_provider) -> None:
    """Serving beyond this machine must be asked for explicitly: a non-loopback address needs
    explicit websocket origins and an authentication method (basic auth or OAuth)."""
    if address in LOOPBACK:
        return
    if not websocket_origins:
        raise click.UsageError(
            f"--address {address} exposes the app beyond this machine: also give "
            "--allow-websocket-origin HOST[:PORT] for the names users will reach it by")
    if not (basic_auth or oauth_provider):
        raise click.UsageError(
            f"--address {address} exposes the app beyond this machine: protect it with "
            "--basic-auth PASSWORD_OR_JSON_FILE or --oauth-provider (see docs/user-guide.md), "
            "or pass --no-auth to accept an open server on a trusted network")


def make_job_manager(workers: int = 1, threads: int | None = 1, nice: int = 10, mode: str = "process",
                     device: str = "auto"):
    """The server-wide job manager ``raincheck serve`` installs: by default one inference worker
    process, at CPU priority +10, with one torch thread (``threads`` 0: torch's default); box-cube
    builds get a worker of their own from it (:func:`app.boxjobs.get_box_manager`)."""
    from app.jobs import JobManager

    return JobManager(max_workers=workers, mode=mode, nice=nice, torch_threads=threads or None, device=device)


def check_port_free(address: str, port: int) -> None:
    """Refuse (naming them) an address that does not resolve or a port another program holds,
    before the server and its workers are set up."""

    try:
        infos = socket.getaddrinfo(address, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as e:
        raise click.BadParameter(f"{address!r} is not an address of this machine ({e})", param_hint="--address") from None
    for family, kind, proto, _, sockaddr in infos[:1]:
        with socket.socket(family, kind, proto) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Tornado binds
            try:
                s.bind(sockaddr)
            except OSError as e:
                if e.errno == errno.EADDRINUSE:
                    raise click.BadParameter(f"port {port} on {address} is already in use (another server?): "
                                             "choose another --port", param_hint="--port") from None
                raise click.BadParameter(f"cannot listen on {address}:{port}: {e.strerror or e}",
                                         param_hint="--address") from None


def check_oauth_provider(name: str) -> None:
    from panel.auth import AUTH_PROVIDERS

    if name not in AUTH_PROVIDERS:
        raise click.BadParameter(f"unknown OAuth provider {name!r}; Panel knows {', '.join(sorted(AUTH_PROVIDERS))}",
                                 param_hint="--oauth-provider")


def make_server(catalog_path=None, port: int = 5006, address: str = "127.0.0.1", websocket_origins=(),
                show: bool = False, start: bool = True, threaded: bool = False, cube_path=None,
                basic_auth=None, oauth_provider: str | None = None,
                cookie_secret: str | None = None, login_throttle=None):
    """Build (and by default start) the Panel server for the app; returns the server. Inference
    runs in the job manager of :func:`app.jobs.get_manager` (install another with
    :func:`app.jobs.set_manager` first). ``basic_auth``: a password, a JSON users file or
    {user: password} (checked by :func:`app.commands._login.parse_basic_auth`); failed logins
    are throttled by ``login_throttle`` (default :class:`app.commands._login.LoginThrottle`)."""
    import panel as pn

    from app.main import create_app

    # compile datashader's kernels before the first session asks for a map

    threading.Thread(target=warm_up, daemon=True, name="raincheck-warm-up").start()
    # and start the inference worker now, torch imported and the models loaded, so that the
    # first Run does not wait for it (RAINCHECK_WARM_WORKER=0: on first use, as before)

    if os.environ.get("RAINCHECK_WARM_WORKER", "1").strip().lower() not in ("0", "off", "no", "false"):
        from app.jobs import get_manager

        threading.Thread(target=get_manager().warm, daemon=True, name="raincheck-warm-worker").start()
    # the evaluation views' answers for a new session's selection, computed once for everyone
    from app.views.common import prepare_answers

    threading.Thread(target=prepare_answers, args=(cube_path, catalog_path), daemon=True,
                     name="raincheck-prepare-answers").start()
    origins = list(websocket_origins) or [f"{address}:{port}", f"localhost:{port}", f"127.0.0.1:{port}"]
    auth = {}
    if basic_auth:
        creds = basic_auth if isinstance(basic_auth, dict) else parse_basic_auth(basic_auth)
        auth["auth_provider"] = make_auth_provider(creds, login_throttle)
    return pn.serve(
        {"/": lambda: create_app(catalog_path, cube_path=cube_path)}, port=port, address=address, show=show, start=start,
        threaded=threaded, admin=False, title="raincheck", websocket_origin=origins,
        extra_patterns=[(r"/health", make_health_handler())],
        **auth,
        **({"oauth_provider": oauth_provider} if oauth_provider and not basic_auth else {}),
        **({"cookie_secret": cookie_secret} if cookie_secret else {}))


def register(main: click.Group) -> None:
    @main.command()
    @click.option("--port", default=5006, show_default=True, type=click.IntRange(1, 65535), help="Port to listen on.")
    @click.option("--address", default="127.0.0.1", show_default=True,
                  help="Address to bind (0.0.0.0 to expose it; then set --allow-websocket-origin).")
    @click.option("--catalog", "catalog_path", type=click.Path(dir_okay=False), default=None,
                  help="Intake 2 catalogue file (default: the demo).")
    @click.option("--trust-catalog", is_flag=True, envvar="RAINCHECK_TRUST_CATALOG", default=False,
                  help="Accept a catalogue that names readers other than raincheck's own (a catalogue is "
                       "code: only one you wrote; env RAINCHECK_TRUST_CATALOG=1).")
    @click.option("--cube", "cube_path", type=click.Path(), default=None,
                  help="Climatology cube for the evaluation views (default: the demo cube).")
    @click.option("--allow-websocket-origin", "origins", multiple=True,
                  help="Host[:port] allowed to open the app's websocket (repeatable; '*' for any).")
    @click.option("--show/--no-show", default=False, show_default=True, help="Open a browser tab.")
    @click.option("--basic-auth", envvar="RAINCHECK_BASIC_AUTH", default=None,
                  help="Require a login: one shared password (at least 8 characters), or a JSON file "
                       "{user: password} (env RAINCHECK_BASIC_AUTH). Failed logins are slowed down and, "
                       "after --login-attempts, refused for --login-lockout seconds per client address.")
    @click.option("--login-attempts", default=5, show_default=True, type=click.IntRange(1, 1000),
                  help="Failed logins from one address (within 5 minutes) before it is locked out.")
    @click.option("--login-lockout", default=60.0, show_default=True, type=click.FloatRange(0, 86400),
                  help="Seconds an address stays locked out after --login-attempts failures.")
    @click.option("--oauth-provider", envvar="RAINCHECK_OAUTH_PROVIDER", default=None,
                  help="Panel OAuth provider (github, google, generic, ...); configure with Panel's "
                       "PANEL_OAUTH_* environment variables.")
    @click.option("--cookie-secret", envvar="RAINCHECK_COOKIE_SECRET", default=None,
                  help="Secret that signs login cookies (env RAINCHECK_COOKIE_SECRET).")
    @click.option("--no-auth", is_flag=True, help="Allow a non-loopback --address without a login.")
    @click.option("--inference", "inference_mode", type=click.Choice(["process", "thread"]), default="process",
                  show_default=True,
                  help="Where on-demand inference runs: worker processes (the server stays responsive and "
                       "survives a crashing model) or threads of the server process.")
    @click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64),
                  help="Inference jobs run at once (worker processes or threads).")
    @click.option("--worker-threads", default=1, show_default=True, type=click.IntRange(0, 256),
                  help="Torch intra-op threads per inference worker process (0: torch's default, all cores).")
    @click.option("--worker-nice", default=10, show_default=True, type=click.IntRange(0, 19),
                  help="How much lower the inference workers' CPU priority is than the server's "
                       "(the box-cube build worker's: 5 lower still).")
    @click.option("--device", type=click.Choice(["auto", "cpu", "cuda", "mps"]), default="auto", show_default=True,
                  help="Device for on-demand inference: auto, cpu, cuda or mps.")
    def serve(port, address, catalog_path, trust_catalog, cube_path, origins, show, basic_auth, login_attempts, login_lockout,
              oauth_provider, cookie_secret, no_auth, inference_mode, workers, worker_threads, worker_nice, device):
        """Serve the raincheck web app (on 127.0.0.1 only, unless told otherwise)."""

        if basic_auth is not None:
            basic_auth = parse_basic_auth(basic_auth)  # refuses a missing file, a short or blank password
        if oauth_provider is not None:
            check_oauth_provider(oauth_provider)
        if basic_auth and oauth_provider:
            raise click.UsageError("give --basic-auth or --oauth-provider, not both")
        check_exposure(address, origins, basic_auth or no_auth, oauth_provider)
        check_port_free(address, port)
        if (basic_auth or oauth_provider) and not cookie_secret:
            cookie_secret = secrets.token_hex(32)
        from catalogs.catalog import TRUST_ENV, CatalogError, open_catalog

        if trust_catalog:
            os.environ[TRUST_ENV] = "1"  # the sessions open the catalogue too
        if catalog_path:
            try:
                open_catalog(catalog_path)
            except CatalogError as e:
                raise click.ClickException(str(e))
        from app import jobs

        jobs.set_manager(make_job_manager(workers, worker_threads, worker_nice, inference_mode, device))
        click.echo(f"raincheck app on http://{address}:{port}/ (health: /health); Ctrl-C to stop")
        try:
            make_server(catalog_path, port=port, address=address, websocket_origins=origins, show=show,
                        cube_path=cube_path, basic_auth=basic_auth, oauth_provider=oauth_provider,
                        cookie_secret=cookie_secret,
                        login_throttle=LoginThrottle(max_failures=login_attempts, lockout_s=login_lockout))
        except OSError as e:  # e.g. the port was taken since the check
            raise click.ClickException(f"cannot serve on {address}:{port}: {e.strerror or e}") from None
