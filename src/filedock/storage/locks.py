"""Lockers: exclusive, non-waiting locks on names, kept apart from the stores.

- InProcessLocker: threads of one process (the memory store).
- FileLocker: flock(2) on a file per name: every process of one host, released by the kernel
  when its holder dies (the local store).
- LeaseLocker: a lease record written with a conditional put in the store's Records: every
  process on every host that shares the store; a holder that dies stops renewing, and its
  lease is taken over once it has expired (the S3 store).

A lease is short (LEASE_SECONDS) and renewed four times per lifetime while held: a process
killed while it writes a tus chunk blocks that upload for at most LEASE_SECONDS, within
what tus clients wait while they retry (tus-js-client's default delays add up to 9 s).
The price is that a holder stalled for more than three quarters of that (a renewal that
does not get through) can lose its lease while it still writes; the S3 store's own commit
of a chunk is a compare-and-swap on the upload's manifest, so two writers cannot both
commit on one version of it. The hosts' clocks must agree to well under a second (NTP),
since a lease's expiry is a wall-clock time."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress

from .base import ABSENT, AlreadyExists, Locked, Matches, PreconditionFailed, Record, Records

LEASE_SECONDS = 8.0
RENEWALS_PER_LEASE = 4


class InProcessLocker:
    """Locks shared by the threads of this process."""

    def __init__(self) -> None:
        self._held: set[str] = set()
        self._guard = threading.Lock()

    @contextmanager
    def lock(self, name: str) -> Iterator[None]:
        """Hold name for the block; Locked if another thread holds it."""
        with self._guard:
            if name in self._held:
                raise Locked(f"{name} is being written")
            self._held.add(name)
        try:
            yield
        finally:
            with self._guard:
                self._held.discard(name)


class FileLocker:
    """flock(2) on folder/<hash of name>.lock: every process of this host."""

    def __init__(self, folder: str) -> None:
        self.folder = folder

    @contextmanager
    def lock(self, name: str) -> Iterator[None]:
        """Hold name for the block; Locked if another process or thread holds it."""
        digest = hashlib.sha256(name.encode()).hexdigest()
        path = os.path.join(self.folder, digest[:2], digest + ".lock")
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except FileNotFoundError:  # the folder, made once
            os.makedirs(os.path.dirname(path), exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise Locked(f"{name} is being written") from None
            yield
        finally:
            os.close(fd)  # closing drops the lock


class LeaseLocker:
    """A lease record per name, taken with a create-only put and renewed with
    compare-and-swap while its holder works; works across hosts."""

    PREFIX = "leases/"

    def __init__(
        self,
        records: Records,
        ttl_seconds: float = LEASE_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.records = records
        self.ttl = ttl_seconds
        self.clock = clock

    def _lease(self, owner: str) -> bytes:
        return json.dumps({"owner": owner, "expires": self.clock() + self.ttl}).encode()

    def _take(self, record_name: str, name: str, owner: str) -> Record:
        current = self.records.get_record(record_name)
        try:
            if current is None:
                return self.records.put_record(record_name, self._lease(owner), ABSENT)
            try:
                expires = float(json.loads(current.value)["expires"])
            except (ValueError, KeyError, TypeError):
                expires = 0.0  # unreadable: treat as expired
            if expires > self.clock():
                raise Locked(f"{name} is being written")
            return self.records.put_record(
                record_name, self._lease(owner), Matches(current.version)
            )
        except (AlreadyExists, PreconditionFailed):
            raise Locked(f"{name} is being written") from None

    @contextmanager
    def lock(self, name: str) -> Iterator[None]:
        """Hold name's lease for the block, renewing it every quarter of its lifetime."""
        record_name = self.PREFIX + hashlib.sha256(name.encode()).hexdigest()
        owner = uuid.uuid4().hex
        held = [self._take(record_name, name, owner)]
        stop = threading.Event()

        def renew() -> None:
            while not stop.wait(self.ttl / RENEWALS_PER_LEASE):
                try:
                    held[0] = self.records.put_record(
                        record_name, self._lease(owner), Matches(held[0].version)
                    )
                except Exception:  # lost it, or the store is away: the holder finds out
                    return  # when its own writes fail; a renewal thread cannot raise there

        renewer = threading.Thread(target=renew, name=f"lease {name}", daemon=True)
        renewer.start()
        try:
            yield
        finally:
            stop.set()
            renewer.join()
            with suppress(Exception):  # left to expire if it cannot be removed now
                self.records.delete_record(record_name, Matches(held[0].version))
