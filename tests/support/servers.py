"""Real HTTP servers on loopback for tests: counting, scripted, slow, hanging."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Responder = Callable[["Request"], tuple[int, dict[str, str], bytes]]


class Request:
    def __init__(self, method: str, path: str, headers: dict[str, str], body: bytes) -> None:
        self.method = method
        self.path = path
        self.headers = headers
        self.body = body
        self.ts = time.time()

    def json(self) -> Any:
        return json.loads(self.body or b"null")


class LocalServer:
    """A threaded HTTP server on 127.0.0.1 that records every request.

    ``route(path, responder)`` scripts answers; by default it answers 200 with
    ``{"ok": true, "path": ...}``. ``responses(path, [(503, ...), (200, ...)])``
    answers in sequence, repeating the last.
    """

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.counts: Counter[str] = Counter()
        self._routes: dict[str, Responder] = {}
        self._seq: dict[str, list[tuple[int, dict[str, str], bytes]]] = defaultdict(list)
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # TCP_NODELAY, as real servers set it: the headers and the body are two writes, and
            # with Nagle the body waited for the client's delayed ACK (40 ms per call on a
            # reused keep-alive connection).
            disable_nagle_algorithm = True

            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                path = self.path.split("?", 1)[0]
                req = Request(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                with outer._lock:
                    outer.requests.append(req)
                    outer.counts[path] += 1
                    seq = outer._seq.get(path)
                    scripted = None
                    if seq:
                        scripted = seq.pop(0) if len(seq) > 1 else seq[0]
                responder = outer._routes.get(path)
                if scripted is not None:
                    status, headers, payload = scripted
                elif responder is not None:
                    status, headers, payload = responder(req)
                else:
                    status, headers, payload = 200, {"Content-Type": "application/json"}, json.dumps({"ok": True, "path": path}).encode()
                try:
                    self.send_response(status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return self.base + path

    def route(self, path: str, responder: Responder) -> None:
        self._routes[path] = responder

    def responses(self, path: str, answers: list[tuple[int, Any]]) -> None:
        out = []
        for status, body in answers:
            payload = body if isinstance(body, bytes) else json.dumps(body).encode()
            out.append((status, {"Content-Type": "application/json"}, payload))
        self._seq[path] = out

    def hang(self, path: str, seconds: float = 3600) -> None:
        def responder(req: Request) -> tuple[int, dict[str, str], bytes]:
            time.sleep(seconds)
            return 200, {}, b"{}"

        self.route(path, responder)

    def slow(self, path: str, seconds: float) -> None:
        def responder(req: Request) -> tuple[int, dict[str, str], bytes]:
            time.sleep(seconds)
            return 200, {"Content-Type": "application/json"}, json.dumps({"slept": seconds}).encode()

        self.route(path, responder)

    def count(self, path: str) -> int:
        with self._lock:
            return self.counts[path]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
