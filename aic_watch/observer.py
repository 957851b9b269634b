"""Filesystem events → candidate paths, through watchdog's native (inotify) or polling observer.

Observer threads only drop what they saw into the Inbox; everything else (filters, the
stability window, the catalog) happens on the watcher's one loop thread. The inbox keeps
one entry per path however many events it gets (a copy produces dozens) and holds at most
`capacity` paths: past that it remembers only that the folder overflowed, and the watcher
rescans it, just as it would after the kernel dropped events. Memory stays bounded under a
storm of thousands of files.

Events that matter: created, modified, closed after writing, moved in or renamed (the new
path: enqueue.py recognises the content and marks the old path gone), and directories
created or moved in (scanned, in case files landed before their watch existed). Deletions
are ignored on purpose: an unmounted share looks like mass deletion, and the catalog must
not follow it.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass

from watchdog.events import (
    DirCreatedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
    FileSystemMovedEvent,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserverVFS

from aic_watch.config import FolderConfig, ObserverKind

log = logging.getLogger(__name__)

EVENTS: list[type[FileSystemEvent]] = [
    FileCreatedEvent,
    FileModifiedEvent,
    FileClosedEvent,
    FileMovedEvent,
    DirCreatedEvent,
    DirMovedEvent,
]
STOP_TIMEOUT = 5.0


@dataclass(frozen=True)
class Sighting:
    """An event's path: a file that may have changed, or a directory to scan."""

    path: str
    folder: FolderConfig
    is_directory: bool = False


class Inbox:
    """Sightings from observer threads, one per path, at most `capacity` of them."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._lock = threading.Lock()
        self._items: OrderedDict[str, Sighting] = OrderedDict()
        self._overflowed: dict[str, FolderConfig] = {}

    def __len__(self) -> int:
        return len(self._items)

    def put(self, sighting: Sighting) -> None:
        with self._lock:
            if sighting.path in self._items:
                return
            if len(self._items) < self.capacity:
                self._items[sighting.path] = sighting
            else:
                self._overflowed[str(sighting.folder.path)] = sighting.folder

    def take(self, limit: int) -> list[Sighting]:
        """The oldest `limit` sightings, removed from the inbox."""
        with self._lock:
            return [self._items.popitem(last=False)[1] for _ in range(min(limit, len(self._items)))]

    def take_overflowed(self) -> list[FolderConfig]:
        """Folders whose events did not all fit since the last call: they need a rescan."""
        with self._lock:
            folders = list(self._overflowed.values())
            self._overflowed.clear()
            return folders


class _Handler(FileSystemEventHandler):
    def __init__(self, folder: FolderConfig, inbox: Inbox) -> None:
        self.folder = folder
        self.inbox = inbox

    def on_any_event(self, event: FileSystemEvent) -> None:
        path = event.dest_path if isinstance(event, FileSystemMovedEvent) else event.src_path
        self.inbox.put(Sighting(os.fsdecode(path), self.folder, event.is_directory))


def start_observer(folder: FolderConfig, inbox: Inbox) -> BaseObserver:
    """Watch `folder` into `inbox`; falls back to polling when the inotify limits are reached."""
    kind = folder.observer
    while True:
        polling = kind is ObserverKind.POLLING
        observer = (
            # lstat: a symlinked directory is not walked into (inotify doesn't follow one either)
            PollingObserverVFS(os.lstat, os.scandir, polling_interval=folder.poll_interval)
            if polling
            else Observer()
        )
        try:
            observer.schedule(
                _Handler(folder, inbox), str(folder.path), recursive=folder.recursive, event_filter=EVENTS
            )
            observer.start()
            return observer
        except OSError as error:
            if polling or error.errno not in (errno.ENOSPC, errno.EMFILE):
                raise
            log.error(
                "inotify limit reached watching %s (%s): polling it every %gs instead; raise "
                "fs.inotify.max_user_watches / max_user_instances to get events back",
                folder.path,
                error.strerror,
                folder.poll_interval,
            )
            kind = ObserverKind.POLLING


def stop_observer(observer: BaseObserver) -> None:
    observer.stop()
    observer.join(STOP_TIMEOUT)
