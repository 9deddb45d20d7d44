"""Fault injection: a local HTTP server that fails on purpose, for what a
healthy clearance does not do on demand (503 with Retry-After, a proxy's HTML
error)."""

import json
import threading
import unittest
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from clearance_client import Client, ClearanceError


class _Faulty:
    def __init__(self, answer):
        self.calls = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self):
                outer.calls += 1
                n = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(n)
                status, headers, body = answer(outer.calls, self)
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _any

            def log_message(self, *args):
                pass

        self.srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d" % self.srv.server_address[1]
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()


def _problem(status, extra=None, headers=None):
    body = dict({"title": "x", "status": status}, **(extra or {}))
    return status, dict({"Content-Type": "application/problem+json"}, **(headers or {})), json.dumps(body).encode()


class Faults(unittest.TestCase):
    def test_503_retried_after_retry_after(self):
        def answer(n, req):
            if n == 1:
                return _problem(503, headers={"Retry-After": "1"})
            self.assertEqual(req.headers["X-API-Key"], "clr_x")
            return 200, {"Content-Type": "application/json"}, json.dumps(
                {"results": [], "status": "exhausted", "exact": True, "audit_id": "A"}).encode()
        s = _Faulty(answer)
        try:
            self.assertEqual(Client(s.url, api_key="clr_x").search("q")["status"], "exhausted")
            self.assertEqual(s.calls, 2)
        finally:
            s.close()

    def test_400_not_retried_and_attempts_bound_503(self):
        def answer(n, req):
            if n == 1:
                return _problem(400, {"type": "https://clearance.dev/problems/invalid-input",
                                      "errors": [{"field": "query", "reason": "is required"}]})
            return _problem(503)
        s = _Faulty(answer)
        try:
            c = Client(s.url, token="t", attempts=2)
            with self.assertRaises(ClearanceError) as cm:
                c.search("")
            self.assertEqual((cm.exception.field, cm.exception.kind), ("query", "invalid-input"))
            self.assertEqual(s.calls, 1)
            with self.assertRaises(ClearanceError) as cm:
                c.search("q")
            self.assertTrue(cm.exception.transient)
            self.assertEqual(s.calls, 3)
        finally:
            s.close()

    def test_non_problem_body_is_typed(self):
        s = _Faulty(lambda n, req: (502, {"Content-Type": "text/html"}, b"<html>bad gateway</html>"))
        try:
            with self.assertRaises(ClearanceError) as cm:
                Client(s.url, token="t", attempts=1).get_ticket("WEB-1")
            self.assertEqual(cm.exception.status, 502)
            self.assertIn("bad gateway", cm.exception.detail)
        finally:
            s.close()


if __name__ == "__main__":
    unittest.main()
