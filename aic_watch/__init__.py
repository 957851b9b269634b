"""The watcher: files dropped into watched folders become compress jobs in the catalog.

config.py     what to watch: TOML (AIC_CONFIG) or flags → FolderConfig / WatchConfig
filters.py    which paths are candidates (patterns, temporary names, archive outputs, symlinks)
observer.py   watchdog's inotify or polling observer → a bounded inbox of paths
stability.py  the size/mtime stability window and the decode check
reconcile.py  scans for what events missed, and what the catalog already has
enqueue.py    sha256, the catalog transaction (source, path, job), quarantine of bad input
broker.py     publishing job ids after the commit; a backlog while the broker is down
watcher.py    the Watcher (start/stop), its loop and the health of watched folders
main.py       the `aic-watch` command

Never imports torch: the watcher never compresses (DESIGN.md).
"""

from aic_watch.config import FolderConfig, WatchConfig, load_config, make_config, make_folder
from aic_watch.watcher import Watcher

__all__ = ["FolderConfig", "WatchConfig", "Watcher", "load_config", "make_config", "make_folder"]
