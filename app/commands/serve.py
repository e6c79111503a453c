"""`raincheck serve`: the Panel web app (on 127.0.0.1:5006 by default), with a /health endpoint."""

from __future__ import annotations

import click


def make_health_handler():
    from tornado.web import RequestHandler

    class HealthHandler(RequestHandler):
        """200 "ok" while the server runs (Docker health check)."""

        def get(self):
            self.set_header("Content-Type", "text/plain")
            self.set_header("Cache-Control", "no-store")
            self.write("ok")

    return HealthHandler


def make_server(catalog_path=None, port: int = 5006, address: str = "127.0.0.1", websocket_origins=(),
                show: bool = False, start: bool = True, threaded: bool = False, cube_path=None):
    """Build (and by default start) the Panel server for the app; returns the server."""
    import panel as pn

    from app.geometry import warm_up
    from app.main import create_app

    # compile datashader's kernels before the first session asks for a map
    import threading

    threading.Thread(target=warm_up, daemon=True, name="raincheck-warm-up").start()
    origins = list(websocket_origins) or [f"{address}:{port}", f"localhost:{port}", f"127.0.0.1:{port}"]
    return pn.serve(
        {"/": lambda: create_app(catalog_path, cube_path=cube_path)}, port=port, address=address, show=show, start=start,
        threaded=threaded, admin=False, title="raincheck", websocket_origin=origins,
        extra_patterns=[(r"/health", make_health_handler())])


def register(main: click.Group) -> None:
    @main.command()
    @click.option("--port", default=5006, show_default=True, type=int, help="Port to listen on.")
    @click.option("--address", default="127.0.0.1", show_default=True,
                  help="Address to bind (0.0.0.0 to expose it; then set --allow-websocket-origin).")
    @click.option("--catalog", "catalog_path", type=click.Path(dir_okay=False), default=None,
                  help="Intake 2 catalogue file (default: the demo).")
    @click.option("--cube", "cube_path", type=click.Path(), default=None,
                  help="Climatology cube for the evaluation views (default: the demo cube).")
    @click.option("--allow-websocket-origin", "origins", multiple=True,
                  help="Host[:port] allowed to open the app's websocket (repeatable; '*' for any).")
    @click.option("--show/--no-show", default=False, show_default=True, help="Open a browser tab.")
    def serve(port, address, catalog_path, cube_path, origins, show):
        """Serve the raincheck web app."""
        from catalogs.catalog import CatalogError, open_catalog

        if catalog_path:
            try:
                open_catalog(catalog_path)
            except CatalogError as e:
                raise click.ClickException(str(e))
        click.echo(f"raincheck app on http://{address}:{port}/ (health: /health); Ctrl-C to stop")
        make_server(catalog_path, port=port, address=address, websocket_origins=origins, show=show,
                    cube_path=cube_path)
