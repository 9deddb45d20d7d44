"""The HTTP client: requests and answers are plain dicts with the API's wire
names (as in api/openapi.yaml)."""

import json
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Dict, List, Optional, Sequence

_TRANSIENT = (429, 502, 503, 504)


class ClearanceError(Exception):
    """A non-2xx answer.

    ``kind`` is the last path segment of the problem type ("unauthenticated",
    "forbidden", "not-found", "invalid-input", ...): branch on it rather than on
    status codes. A ticket the caller may not view is a 404 like a missing one.
    """

    def __init__(self, method: str, path: str, status: int, problem: Dict[str, Any],
                 www_authenticate: Optional[str] = None, retry_after: Optional[float] = None):
        self.method = method
        self.path = path
        self.status = status
        self.type = problem.get("type") or "about:blank"
        self.kind = self.type.rsplit("/", 1)[-1]
        self.title = problem.get("title") or "HTTP %d" % status
        self.detail = problem.get("detail") or ""
        self.errors: List[Dict[str, str]] = list(problem.get("errors") or [])
        first = self.errors[0] if self.errors else {}
        self.field: Optional[str] = first.get("field")
        self.reason: Optional[str] = first.get("reason")
        self.request_id: Optional[str] = problem.get("request_id")
        self.www_authenticate = www_authenticate
        # seconds from the Retry-After header of a 429 or 503, when sent
        self.retry_after = retry_after
        msg = "%s %s: %d %s" % (method, path, status, self.title)
        for f in self.errors:
            msg += "; %s: %s" % (f.get("field"), f.get("reason"))
        if not self.errors and self.detail:
            msg += ": " + self.detail
        if self.request_id:
            msg += " (request %s)" % self.request_id
        super().__init__(msg)

    @property
    def transient(self) -> bool:
        """Whether retrying later may succeed (429, 502, 503, 504)."""
        return self.status in _TRANSIENT


class Client:
    """Calls one clearance server.

    token is an access token (JWT) or API key sent as "Authorization: Bearer";
    api_key is sent as "X-API-Key" instead (not both). timeout bounds each HTTP
    request in seconds; attempts bounds the tries on 429/502/503/504 and
    connection errors.
    """

    def __init__(self, base_url: str, token: Optional[str] = None, api_key: Optional[str] = None,
                 timeout: float = 30.0, attempts: int = 3, max_response_bytes: int = 16 << 20):
        u = urllib.parse.urlparse(base_url)
        if u.scheme not in ("http", "https") or not u.netloc:
            raise ValueError("base_url must be an http(s) URL, got %r" % base_url)
        if token and api_key:
            # the server refuses both headers at once as ambiguous
            raise ValueError("give token or api_key, not both")
        self.base_url = base_url.rstrip("/")
        self._headers = {"Accept": "application/json, application/problem+json"}
        if token:
            self._headers["Authorization"] = "Bearer " + token
        if api_key:
            self._headers["X-API-Key"] = api_key
        self.timeout = timeout
        self.attempts = max(1, attempts)
        self.max_response_bytes = max_response_bytes

    def search(self, query: str, top_k: Optional[int] = None, projects: Optional[Sequence[str]] = None,
               intent: Optional[Dict[str, Any]] = None, group_by_ticket: bool = False) -> Dict[str, Any]:
        """POST /v1/search: the tickets the caller may view that match query.

        The answer has "results", "status" ("complete", "exhausted" or
        "partial"), "exact" and "audit_id".
        """
        body: Dict[str, Any] = {"query": query}
        if top_k is not None:
            body["top_k"] = top_k
        if projects:
            body["filters"] = {"projects": list(projects)}
        if intent:
            body["intent"] = intent
        if group_by_ticket:
            body["group_by_ticket"] = True
        return self._call("POST", "/v1/search", body)

    def get_ticket(self, ticket_id: str) -> Dict[str, Any]:
        """GET /v1/tickets/{id}; a ticket the caller may not view is a 404."""
        return self._call("GET", "/v1/tickets/" + urllib.parse.quote(ticket_id, safe=""))

    def flow_check(self, sources: Dict[str, Any], destination: Dict[str, Any],
                   explain: bool = False) -> Dict[str, Any]:
        """POST /v1/flow/check: may content derived from sources ({"audit_ids":
        [...], "ticket_ids": [...]}) go to destination ({"project": ...},
        {"ticket": ...} or {"principals": [...]})? Do not write when the
        answer's "allowed" is false."""
        body: Dict[str, Any] = {"sources": sources, "destination": destination}
        if explain:
            body["explain"] = True
        return self._call("POST", "/v1/flow/check", body)

    def _call(self, method: str, path: str, body: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        data = None
        headers = dict(self._headers)
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        backoff = 0.25
        for attempt in range(1, self.attempts + 1):
            wait = backoff
            try:
                return self._once(method, path, data, headers)
            except ClearanceError as e:
                if not e.transient or attempt == self.attempts:
                    raise
                if e.retry_after:  # the server's Retry-After, capped
                    wait = min(max(wait, e.retry_after), 5.0)
            except urllib.error.URLError as e:
                # connection refused or reset is retried; a timeout is not (the
                # caller's deadline is spent), nor is a read timeout, which
                # urllib raises as socket.timeout directly
                if isinstance(e.reason, socket.timeout) or attempt == self.attempts:
                    raise
            time.sleep(wait)
            backoff *= 2
        raise AssertionError("unreachable")

    def _once(self, method: str, path: str, data: Optional[bytes], headers: Dict[str, str]) -> Dict[str, Any]:
        req = urllib.request.Request(self.base_url + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return json.loads(self._read(resp, method, path) or b"{}")
        except urllib.error.HTTPError as e:
            raw = self._read(e, method, path)
            try:
                problem = json.loads(raw)
                if not isinstance(problem, dict):
                    raise ValueError
            except ValueError:  # not a problem: a proxy's error page, say
                problem = {"title": e.reason, "status": e.code, "detail": raw[:512].decode("utf-8", "replace")}
            try:
                retry_after = float(e.headers.get("Retry-After") or "") or None
            except ValueError:
                retry_after = None
            raise ClearanceError(method, path, e.code, problem, e.headers.get("WWW-Authenticate"),
                                 retry_after) from None

    def _read(self, resp: Any, method: str, path: str) -> bytes:
        raw = resp.read(self.max_response_bytes + 1)
        if len(raw) > self.max_response_bytes:
            raise ValueError("%s %s: answer over %d bytes" % (method, path, self.max_response_bytes))
        return raw
