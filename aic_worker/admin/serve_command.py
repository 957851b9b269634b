"""`aic-admin serve [--host H] [--port P]`: the dashboard and the JSON API (aic_worker/web).

Binds to loopback unless told otherwise: reads are open to whoever can connect, and writes
need AIC_API_TOKEN (without it they are disabled). Torch loads only when a preview is first
decoded, so `serve --help` and the server's start stay quick.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING

from aic_worker.admin import output
from aic_worker.admin.catalog_access import catalog_engine
from aic_worker.admin.output import CommandError

if TYPE_CHECKING:
    from celery import Celery
    from sqlalchemy import Engine

COMMAND = "serve"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8470


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        COMMAND,
        help="the web dashboard and JSON API (/api/v1) over the catalog",
        description="Serve the dashboard and the JSON API over the catalog (AIC_DATABASE_URL, else "
        "AIC_HOME's). Writes (retry, recompress, restore, add) need `Authorization: Bearer "
        "$AIC_API_TOKEN`; without AIC_API_TOKEN they are disabled. See docs/web.md.",
    )
    p.add_argument("--host", default=DEFAULT_HOST, help=f"address to listen on (default {DEFAULT_HOST})")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    p.add_argument(
        "--root",
        type=Path,
        action="append",
        default=[],
        metavar="DIR",
        help="a folder that add and restore over HTTP may reach (repeatable; with AIC_API_ROOTS's). "
        "Without any, they are refused",
    )
    p.set_defaults(func=serve)


def serve(args: argparse.Namespace) -> int:
    import uvicorn  # the web stack loads for this command only, not at every `aic-admin` start

    from aic_worker.web.app import WebSettings, create_app, url_of

    try:
        settings = WebSettings.from_env(bound=[args.host], roots=args.root)
    except ValueError as error:
        raise CommandError(str(error), output.USAGE) from error
    with catalog_engine() as engine:
        app = create_app(engine, settings)
        writes = "writes need AIC_API_TOKEN" if settings.token else "read-only (AIC_API_TOKEN not set)"
        if settings.token:
            reach = ", ".join(map(str, settings.roots)) or "none: add and restore are refused"
            writes += f"; roots: {reach}"
        output.stderr().print(
            f"serving {url_of(args.host, args.port)} ({writes}); Ctrl-C stops", highlight=False
        )
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return output.OK


def add_web_port_option(parser: argparse.ArgumentParser) -> None:
    """`--web-port` of `aic-admin run`, which serves the dashboard beside its watcher."""
    parser.add_argument(
        "--web-port",
        type=int,
        default=DEFAULT_PORT,
        metavar="PORT",
        help=f"the dashboard's port on {DEFAULT_HOST} (default {DEFAULT_PORT}; 0: no dashboard)",
    )


def serve_beside(
    stack: ExitStack, engine: Engine, celery_app: Celery, port: int, roots: Sequence[Path] = ()
) -> str:
    """For `aic-admin run`: the dashboard in a thread on loopback, publishing to `celery_app`'s
    (embedded) broker and stopped with `stack`; its URL, or why there is none. A port already
    taken (another `serve`) costs the dashboard, not the archiving. `roots`: the folders run
    archives from and to, where add and restore over HTTP may reach (with AIC_API_ROOTS's)."""
    if not port:
        return "no dashboard (--web-port 0)"
    from aic_worker.web.app import BackgroundServer, WebSettings, create_app

    try:
        app = create_app(engine, WebSettings.from_env(bound=[DEFAULT_HOST], roots=roots), celery_app)
        server = BackgroundServer(app, DEFAULT_HOST, port)
        url = server.start()
    except (OSError, ValueError) as error:
        return f"no dashboard: {error}"
    stack.callback(server.stop)
    return url
