// Fault injection: a local HTTP server that fails on purpose, for what a healthy
// clearance does not do on demand (503 with Retry-After, a proxy's HTML error).
import assert from "node:assert/strict";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { test } from "node:test";

import { ClearanceClient, ClearanceError } from "../src/index.js";

async function serve(handler: (n: number, req: IncomingMessage, res: ServerResponse) => void) {
  let n = 0;
  const srv = createServer((req, res) => handler(++n, req, res));
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  const port = (srv.address() as { port: number }).port;
  return { url: `http://127.0.0.1:${port}`, calls: () => n, close: () => new Promise((r) => srv.close(r)) };
}

const problem = (res: ServerResponse, status: number, body: object, headers: Record<string, string> = {}) => {
  res.writeHead(status, { "Content-Type": "application/problem+json", ...headers });
  res.end(JSON.stringify(body));
};

test("a 503 is retried after Retry-After; the answer of the retry is returned", async () => {
  const s = await serve((n, req, res) => {
    if (n === 1) return problem(res, 503, { type: "https://clearance.dev/problems/unavailable", title: "Service Unavailable", status: 503 }, { "Retry-After": "1" });
    assert.equal(req.headers["x-api-key"], "clr_x");
    res.writeHead(200, { "Content-Type": "application/json" });
    res.end(JSON.stringify({ results: [], status: "exhausted", exact: true, audit_id: "01ABCDEFGHJKMNPQRSTVWXYZ00" }));
  });
  try {
    const ans = await new ClearanceClient({ baseUrl: s.url, apiKey: "clr_x" }).search("q");
    assert.equal(ans.status, "exhausted");
    assert.equal(s.calls(), 2);
  } finally {
    await s.close();
  }
});

test("a 400 is not retried; attempts bound a failing 503", async () => {
  const s = await serve((n, _req, res) => {
    if (n === 1) return problem(res, 400, { type: "https://clearance.dev/problems/invalid-input", title: "Bad Request", status: 400, errors: [{ field: "query", reason: "is required" }] });
    problem(res, 503, { title: "Service Unavailable", status: 503 });
  });
  try {
    const c = new ClearanceClient({ baseUrl: s.url, token: "t", attempts: 2 });
    await assert.rejects(c.search(""), (err: unknown) => err instanceof ClearanceError && err.field === "query" && err.kind === "invalid-input");
    assert.equal(s.calls(), 1);
    await assert.rejects(c.search("q"), (err: unknown) => err instanceof ClearanceError && err.status === 503 && err.transient);
    assert.equal(s.calls(), 3);
  } finally {
    await s.close();
  }
});

test("a non-problem error body is still a typed error", async () => {
  const s = await serve((_n, _req, res) => {
    res.writeHead(502, { "Content-Type": "text/html" });
    res.end("<html>bad gateway</html>");
  });
  try {
    const c = new ClearanceClient({ baseUrl: s.url, token: "t", attempts: 1 });
    await assert.rejects(c.getTicket("WEB-1"), (err: unknown) => err instanceof ClearanceError && err.status === 502 && err.detail.includes("bad gateway"));
  } finally {
    await s.close();
  }
});
