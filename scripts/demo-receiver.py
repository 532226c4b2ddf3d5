#!/usr/bin/env python3
"""The demo's webhook receiver: prints every event Outdial POSTs to it, one line each, and
answers 200. Standard library only.

    python3 scripts/demo-receiver.py               # listens where `outdial demo` points events:
                                                   # $OUTDIAL_DEMO_EVENT_URL, else 127.0.0.1:8000
    python3 scripts/demo-receiver.py 0.0.0.0:8000  # [HOST:]PORT (a container's receiver, say)
"""
import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit


def address():
    if len(sys.argv) > 1:
        host, _, port = sys.argv[1].rpartition(":")
        return host or "127.0.0.1", int(port)
    url = urlsplit(os.environ.get("OUTDIAL_DEMO_EVENT_URL", "http://127.0.0.1:8000/events"))
    return url.hostname or "127.0.0.1", url.port or 80


class Handler(BaseHTTPRequestHandler):
    def answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode("utf-8", "replace") if length else ""
        try:
            body = json.dumps(json.loads(body), separators=(",", ":"))
        except ValueError:
            pass
        print(f"{self.command} {self.path} {body}".rstrip(), flush=True)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_POST = do_GET = do_PUT = answer

    def log_message(self, *args):
        pass  # one line per event, printed above


if __name__ == "__main__":
    host, port = address()
    server = ThreadingHTTPServer((host, port), Handler)
    print(f"demo receiver: listening on http://{host}:{port}/ (Ctrl-C stops it)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
