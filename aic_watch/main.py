"""`aic-watch`: watch folders and queue every complete image in them for archiving.

    aic-watch FOLDER --ratio R --archive DIR [--policy keep|move|delete] [--done-dir DIR]
              [--keep-versions N] [--if-bigger passthrough|leave] [--min-psnr DB] ...
    aic-watch [--config FILE]        # else the TOML file named by AIC_CONFIG

Runs until SIGTERM or SIGINT, then finishes the batch in hand and exits 0. Exit 2: the
command line, the config file or the environment is wrong; exit 1: the catalog can't be
used, or the metrics port can't be opened. AIC_METRICS_PORT serves /metrics and /healthz
(aic_watch/metrics.py); AIC_LOG_FORMAT=json logs one JSON object per line.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence

from sqlalchemy.exc import SQLAlchemyError

from aic_watch.config import (
    DEFAULT_POLL_INTERVAL,
    DEFAULT_RESCAN_INTERVAL,
    ConfigError,
    ObserverKind,
    WatchConfig,
    load_config,
    make_config,
    make_folder,
)
from aic_watch.metrics import serve
from aic_watch.options import add_archive_options, add_watch_options
from aic_watch.watcher import Watcher
from aic_worker.catalog.engine import create_catalog_engine
from aic_worker.catalog.migrate import CatalogVersionError
from aic_worker.observe.log_format import configure_logging
from aic_worker.observe.metrics_http import MetricsSettings

log = logging.getLogger("aic_watch")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aic-watch",
        description="Watch folders and queue every complete image dropped into them for archiving.",
    )
    parser.add_argument("folder", nargs="?", help="folder to watch (else the config file's folders)")
    parser.add_argument("--config", help="TOML config file (default: AIC_CONFIG)")
    one = parser.add_argument_group("one folder, without a config file")
    add_archive_options(one)
    add_watch_options(one)
    one.add_argument("--no-recursive", action="store_true", help="ignore subfolders")
    one.add_argument("--patterns", help="comma-separated extensions (default: every supported one)")
    one.add_argument(
        "--poll-interval",
        type=float,
        default=DEFAULT_POLL_INTERVAL,
        help=f"seconds between polls (default: {DEFAULT_POLL_INTERVAL:g})",
    )
    one.add_argument(
        "--rescan-interval",
        type=float,
        default=DEFAULT_RESCAN_INTERVAL,
        help=f"seconds between reconciliation scans (default: {DEFAULT_RESCAN_INTERVAL:g})",
    )
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR (default: INFO)")
    return parser


def config_from_args(args: argparse.Namespace, parser: argparse.ArgumentParser) -> WatchConfig:
    """The flags' single folder, or the config file's folders; ConfigError when they are wrong."""
    if args.folder is None:
        path = args.config or os.environ.get("AIC_CONFIG")
        if not path:
            parser.error("give a FOLDER with --ratio and --archive, or a config file (--config, AIC_CONFIG)")
        return load_config(path)
    if args.config:
        parser.error("give a FOLDER or --config, not both")
    if args.ratio is None or args.archive is None:
        parser.error("watching FOLDER needs --ratio and --archive")
    folder = make_folder(
        args.folder,
        ratio=args.ratio,
        archive=args.archive,
        recursive=not args.no_recursive,
        patterns=args.patterns.split(",") if args.patterns else None,
        policy=args.policy,
        done_dir=args.done_dir,
        observer=ObserverKind.POLLING if args.polling else ObserverKind.INOTIFY,
        poll_interval=args.poll_interval,
        keep_versions=args.keep_versions,
        if_bigger=args.if_bigger,
        min_psnr=args.min_psnr,
    )
    return make_config([folder], stability_window=args.stability_window, rescan_interval=args.rescan_interval)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        configure_logging(args.log_level)
        settings = MetricsSettings.from_env()
        config = config_from_args(args, parser)
    except (ConfigError, ValueError) as error:  # ValueError: the log level, AIC_LOG_FORMAT, AIC_METRICS_*
        print(f"aic-watch: {error}", file=sys.stderr)
        return 2
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda received, _frame: stop.set())
    engine = create_catalog_engine(config.database_url)
    watcher = Watcher(config, engine=engine)
    try:
        server = serve(watcher.status, engine, settings.address, settings.port) if settings.port else None
    except OSError as error:
        print(f"aic-watch: cannot serve metrics on port {settings.port}: {error}", file=sys.stderr)
        return 1
    try:
        watcher.start()
    except (CatalogVersionError, SQLAlchemyError) as error:
        print(f"aic-watch: cannot use the catalog: {error}", file=sys.stderr)
        return 1
    while not stop.wait(1.0) and watcher.running:
        pass
    log.info("stopping")
    watcher.stop()
    if server is not None:
        server.stop()
    engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
