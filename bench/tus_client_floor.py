"""What a tus client costs by itself: the bench's 1 GiB tus upload (8 MiB chunks) sent to a
tus endpoint that keeps nothing, by tuspy and by a client that keeps one connection.

    python bench/tus_client_floor.py [--size-mib 1024] [--runs 3]

The endpoint (a subprocess, Python's http.server) answers creation and every PATCH at once,
reading and dropping the body, so what is left is the client's own time per chunk plus the
transfer. Set against `make bench`'s raw PUT and tus rows it tells how much of the tus row
the client takes, whatever the server does."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import MIB, Context, Server, Sizes, free_port, w_tus, w_tus_one_connection  # noqa: E402

READ_BYTES = 1 << 20


class KeepsNothing(BaseHTTPRequestHandler):
    """tus creation and PATCH, answered as a server would, with nothing kept."""

    protocol_version = "HTTP/1.1"
    offsets: dict[str, int] = {}

    def log_message(self, format: str, *args: object) -> None:
        pass

    def answer(self, status: int, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in (headers | {"Tus-Resumable": "1.0.0", "Content-Length": "0"}).items():
            self.send_header(name, value)
        self.end_headers()

    def do_POST(self) -> None:
        upload = f"/uploads/{len(self.offsets)}"
        self.offsets[upload] = 0
        self.answer(201, {"Location": upload, "Upload-Offset": "0"})

    def do_PATCH(self) -> None:
        left = int(self.headers["Content-Length"])
        while left:
            left -= len(self.rfile.read(min(left, READ_BYTES)))
        offset = int(self.headers["Upload-Offset"]) + int(self.headers["Content-Length"])
        self.offsets[self.path] = offset
        self.answer(204, {"Upload-Offset": str(offset)})

    def do_HEAD(self) -> None:
        self.answer(200, {"Upload-Offset": str(self.offsets.get(self.path, 0))})


def serve(port: int) -> None:
    ThreadingHTTPServer(("127.0.0.1", port), KeepsNothing).serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    port = free_port()
    endpoint = subprocess.Popen([sys.executable, __file__, "--serve", str(port)])
    try:
        with tempfile.TemporaryDirectory(prefix="tus-floor-") as tmp:
            payload = Path(tmp) / "payload.bin"
            with open(payload, "wb") as f:
                for _ in range(args.size_mib):
                    f.write(os.urandom(MIB))
            sizes = Sizes(big=args.size_mib * MIB, small=0, small_count=0, wrk_seconds=0, runs=1)
            context = Context(sizes, Path(tmp), payload)
            server = Server(name="keeps-nothing", command=lambda w, p: ([], {}),
                            root=lambda w: w, tus="/uploads", port=port)  # fmt: skip
            time.sleep(0.5)
            for _ in range(args.runs):
                for label, workload in (("tuspy", w_tus), ("one connection", w_tus_one_connection)):
                    result = workload(server, context)
                    assert result is not None
                    print(f"{label}: {result.value:,.0f} {result.unit}", flush=True)
    finally:
        endpoint.terminate()
        endpoint.wait()


if __name__ == "__main__":
    main()
