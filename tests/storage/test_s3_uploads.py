"""What a resumable upload on S3 leaves in the bucket when a writer stops half-way, on any
host: once the upload is finished or removed, nothing (no multipart upload, no tail object).
Over a real SeaweedFS."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import textwrap

import pytest

from filedock.storage import ANYTHING, Key, ObjectNotFound, ObjectStore, TooLarge
from filedock.storage.base import RESERVED_PREFIX
from filedock.storage.s3 import PART_BYTES, S3Storage
from tests.conftest import SRC
from tests.seaweed import Seaweed

pytestmark = pytest.mark.timeout(120)


def upload_objects(storage: S3Storage, upload_id: str) -> list[str]:
    """The objects the store keeps for an upload (manifest and tails)."""
    prefix = f"{storage.prefix}/{RESERVED_PREFIX}/uploads/{upload_id}"
    answer = storage.client.list_objects_v2(Bucket=storage.bucket, Prefix=prefix)
    return [item["Key"] for item in answer.get("Contents", [])]


def multipart_uploads(storage: S3Storage, key: str) -> list[str]:
    """The multipart uploads in progress at key."""
    answer = storage.client.list_multipart_uploads(
        Bucket=storage.bucket, Prefix=f"{storage.prefix}/{key}"
    )
    return [item["UploadId"] for item in answer.get("Uploads", [])]


def test_a_chunk_cut_off_after_a_part_leaves_no_multipart_upload(s3_store: ObjectStore) -> None:
    assert isinstance(s3_store, S3Storage)
    uid = "5a" * 16
    total = PART_BYTES + 10
    data = bytes(range(256)) * (total // 256) + bytes(total % 256)
    s3_store.create_upload(uid, Key("big.bin"))
    # A full part is sent to S3, then the chunk turns out too long: nothing of it counts.
    with pytest.raises(TooLarge):
        s3_store.write_upload(uid, 0, io.BytesIO(data + b"x" * (1 << 20)), total)
    assert s3_store.upload_size(uid) == 0
    # The upload goes on from 0 and completes with the right bytes.
    assert s3_store.write_upload(uid, 0, io.BytesIO(data), total) == total
    sha = hashlib.sha256(data).hexdigest()
    info = s3_store.complete_upload(uid, Key("big.bin"), "", sha, ANYTHING)
    assert info.sha256 == sha and info.size == total
    with s3_store.open(Key("big.bin")) as f:
        assert f.read() == data
    assert multipart_uploads(s3_store, "big.bin") == []
    # Cut off again on another upload, then removed: its multipart upload goes with it.
    other = "5b" * 16
    s3_store.create_upload(other, Key("gone.bin"))
    with pytest.raises(TooLarge):
        s3_store.write_upload(other, 0, io.BytesIO(data + b"x" * (1 << 20)), total)
    s3_store.delete_upload(other)
    assert multipart_uploads(s3_store, "gone.bin") == []
    assert upload_objects(s3_store, other) == []


CHILD = textwrap.dedent(
    """
    import io, os, signal, sys
    from filedock.storage.s3 import S3Storage, open_s3

    def die(*args, **kwargs):  # killed after its tail is stored, before the manifest is saved
        os.kill(os.getpid(), signal.SIGKILL)

    S3Storage._save_manifest = die
    store = open_s3(sys.argv[1], sys.argv[2])
    store.write_upload(sys.argv[3], 3, io.BytesIO(b"def"), 10)
    """
)


def test_a_writer_killed_before_its_commit_leaves_no_tail(
    s3_store: ObjectStore, s3_env: Seaweed
) -> None:
    assert isinstance(s3_store, S3Storage)
    uid = "6c" * 16
    s3_store.create_upload(uid, Key("small.txt"))
    s3_store.write_upload(uid, 0, io.BytesIO(b"abc"), 10)
    url = f"s3://{s3_store.bucket}/{s3_store.prefix}"
    child = subprocess.run(
        [sys.executable, "-c", CHILD, url, s3_env.endpoint, uid],
        env=os.environ | {"PYTHONPATH": SRC},
        capture_output=True,
        timeout=60,
    )
    assert child.returncode == -9, child.stderr
    assert len(upload_objects(s3_store, uid)) == 3  # the manifest, its tail, the dead one's
    assert s3_store.upload_size(uid) == 3
    s3_store.delete_upload(uid)
    assert upload_objects(s3_store, uid) == []
    with pytest.raises(ObjectNotFound):
        s3_store.upload_size(uid)
