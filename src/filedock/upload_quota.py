"""How much one client may leave unfinished in resumable uploads (API.md section 7). No Flask.

A tus creation costs the client one small request and the server a record and a staging file
for a day, so without a bound one client could claim any number of uploads of any size. Each
client (a token, or the address of an anonymous one) may have at most `max_open` unfinished
uploads, claiming at most `max_bytes` (the sum of their Upload-Length) between them.

The count lives in the store, so every worker and instance agrees: each open upload holds a
claim record `upload-claims/<owner>/<upload id>` holding its length. A creation writes its
claim first and then counts the owner's claims, its own included, and withdraws it when the
count is over a limit: of two racing creations each sees the other's claim, so the limits
hold without a lock (both may be refused near the limit; neither passes it). Finishing,
terminating or expiring an upload releases its claim. A claim whose upload is finished or
expired, or that never got its upload record (a server killed in between), is found out and
removed when its owner's claims are next counted.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass

from .storage import Records

CLAIMS_PREFIX = "upload-claims/"
# A claim is written before its upload's record: one this old without a record lost it.
UNRECORDED_CLAIM_SECONDS = 60


class TooManyUploads(Exception):
    """The client has as many unfinished uploads, or claims as many bytes, as it may."""


@dataclass(frozen=True)
class Limits:
    """What one client may have open at once."""

    max_open: int
    max_bytes: int


# Whether a claimed upload is still open: (upload id, when the claim was made) -> bool.
IsOpen = Callable[[str, float], bool]


def owner_of(identity: str) -> str:
    """A store-safe name for a client identity (a token's hash, an address)."""
    return hashlib.sha256(identity.encode("utf-8", "surrogateescape")).hexdigest()[:32]


def claim_name(owner: str, upload_id: str) -> str:
    """The state record of an upload's claim."""
    return f"{CLAIMS_PREFIX}{owner}/{upload_id}"


def release(store: Records, owner: str, upload_id: str) -> None:
    """Remove an upload's claim, if it has one (whatever limits this server has)."""
    if owner:
        store.delete_record(claim_name(owner, upload_id))


class UploadClaims:
    """The open-upload claims of every client of one store."""

    def __init__(
        self, store: Records, limits: Limits, clock: Callable[[], float] = time.time
    ) -> None:
        self.store, self.limits, self.clock = store, limits, clock

    def claim(self, owner: str, upload_id: str, length: int, is_open: IsOpen) -> None:
        """Claim room for an upload of length bytes; TooManyUploads past a limit."""
        name = claim_name(owner, upload_id)
        record = {"length": length, "at": self.clock()}
        self.store.put_record(name, json.dumps(record).encode())
        try:
            count, total = self.tally(owner, is_open)
            if count > self.limits.max_open:
                raise TooManyUploads(
                    f"this client has {count - 1} unfinished uploads, the most it may have "
                    f"(max_open_uploads = {self.limits.max_open}): finish or delete one "
                    "(DELETE its URL), or wait until one expires"
                )
            if total > self.limits.max_bytes:
                raise TooManyUploads(
                    f"this client's unfinished uploads claim {total - length} bytes; "
                    f"{length} more would pass the limit of {self.limits.max_bytes} "
                    "(max_open_upload_bytes): finish or delete some first"
                )
        except BaseException:
            self.store.delete_record(name)
            raise

    def release(self, owner: str, upload_id: str) -> None:
        """Give back an upload's claim (it finished, was terminated or expired)."""
        release(self.store, owner, upload_id)

    def tally(self, owner: str, is_open: IsOpen) -> tuple[int, int]:
        """(how many uploads, how many bytes) the owner's open claims hold; claims of uploads
        that are no longer open are removed on the way."""
        count = total = 0
        for name in list(self.store.list_records(f"{CLAIMS_PREFIX}{owner}/")):
            upload_id = name.rsplit("/", 1)[-1]
            found = self.store.get_record(name)
            if found is None:  # released meanwhile
                continue
            try:
                record = json.loads(found.value)
                length, at = int(record["length"]), float(record["at"])
            except (ValueError, KeyError, TypeError):
                self.store.delete_record(name)
                continue
            if not is_open(upload_id, at):
                self.store.delete_record(name)
                continue
            count += 1
            total += length
        return count, total
