"""A tiny HTTP service on 127.0.0.1 that the example workflows call, so a first run needs no internet."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ORDERS = {
    "1001": {
        "id": "1001",
        "customer": "Ada",
        "total": 250.0,
        "items": [{"sku": "KB-1", "qty": 1, "price": 120.0}, {"sku": "MS-2", "qty": 2, "price": 65.0}],
    },
    "1002": {"id": "1002", "customer": "Linus", "total": 40.0, "items": [{"sku": "CB-9", "qty": 4, "price": 10.0}]},
}
STOCK = {"KB-1": 14, "MS-2": 0, "CB-9": 300, "MN-4": 7}


class DemoServer:
    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # TCP_NODELAY, as real servers set it: the headers and the body are two writes, and
            # with Nagle the body waited for the client's delayed ACK (40 ms per call on a
            # reused keep-alive connection).
            disable_nagle_algorithm = True

            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, body: Any) -> None:
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self) -> None:
                parts = [p for p in self.path.split("?")[0].split("/") if p]
                if parts[:1] == ["orders"] and len(parts) == 2:
                    order = ORDERS.get(parts[1])
                    return self._send(200, order) if order else self._send(404, {"error": "no such order"})
                if parts[:1] == ["inventory"] and len(parts) == 2:
                    return self._send(200, {"sku": parts[1], "stock": STOCK.get(parts[1], 0)})
                if parts[:1] == ["slow"]:
                    time.sleep(0.2)
                    return self._send(200, {"slept_ms": 200})
                if parts[:1] == ["health"]:
                    return self._send(200, {"status": "ok", "ts": time.time()})
                return self._send(404, {"error": "not found"})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw or b"null")
                except ValueError:
                    body = raw.decode("utf-8", "replace")
                outer.received.append({"path": self.path, "body": body})
                return self._send(200, {"received": True})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True, name="zyra-demo-server").start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
