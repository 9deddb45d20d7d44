import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { ClearanceClient, ClearanceError } from "../src/index.js";
import { ClearanceIncompleteError, ClearanceRetriever } from "../src/langchain.js";
import { startServer, type TestServer } from "./harness.js";

// anne (team acme-eng) sees acme-web, acme-api and DOCS-1 but not acme-secret;
// dave owns acme-secret (testdata/org.fga.yaml).
describe("against clearance serve --dev", () => {
  let srv: TestServer;
  let anne: ClearanceClient;
  let dave: ClearanceClient;
  before(async () => {
    srv = await startServer();
    anne = new ClearanceClient({ baseUrl: srv.url, token: srv.token("anne", "acme") });
    dave = new ClearanceClient({ baseUrl: srv.url, token: srv.token("dave", "acme") });
  });
  after(async () => {
    await srv?.stop();
  });

  test("search returns only visible tickets, with status and audit id", async () => {
    const a = await anne.search({ query: "SQL injection admin export", top_k: 20 });
    assert.ok(a.results.length > 0);
    assert.match(a.audit_id, /^[0-9A-Z]{26}$/);
    assert.ok(["complete", "exhausted", "partial"].includes(a.status));
    assert.equal(typeof a.exact, "boolean");
    for (const r of a.results) assert.ok(!r.ticket_id.startsWith("SEC-"), `anne got ${r.ticket_id}`);
    const d = await dave.search("SQL injection admin export");
    assert.ok(d.results.some((r) => r.ticket_id === "SEC-1"), "dave should find SEC-1");
  });

  test("getTicket: one user gets a ticket the other does not, as a typed 404", async () => {
    const t = await dave.getTicket("SEC-1");
    assert.equal(t.project, "acme-secret");
    assert.ok(t.body.length > 0);
    assert.match(t.audit_id, /^[0-9A-Z]{26}$/);
    for (const id of ["SEC-1", "NOPE-1"]) {
      await assert.rejects(anne.getTicket(id), (err: unknown) => {
        assert.ok(err instanceof ClearanceError);
        assert.equal(err.status, 404);
        assert.equal(err.kind, "not-found");
        return true;
      });
    }
  });

  test("a bad token is a typed 401 with WWW-Authenticate", async () => {
    const bad = new ClearanceClient({ baseUrl: srv.url, token: "not-a-token" });
    await assert.rejects(bad.search("login"), (err: unknown) => {
      assert.ok(err instanceof ClearanceError);
      assert.equal(err.status, 401);
      assert.equal(err.kind, "unauthenticated");
      assert.match(err.type, /unauthenticated$/);
      assert.match(err.wwwAuthenticate ?? "", /resource_metadata=/);
      return true;
    });
  });

  test("bad input is a typed 400 naming the field", async () => {
    await assert.rejects(anne.search({ query: "login", top_k: 0 }), (err: unknown) => {
      assert.ok(err instanceof ClearanceError);
      assert.equal(err.status, 400);
      assert.equal(err.field, "top_k");
      assert.ok(err.reason);
      return true;
    });
  });

  test("X-API-Key: the ingest service account sees acme-docs only", async () => {
    const svc = new ClearanceClient({ baseUrl: srv.url, apiKey: srv.apiKey });
    const a = await svc.search({ query: "login timeout", top_k: 20 });
    assert.ok(a.results.length > 0);
    for (const r of a.results) assert.equal(r.project_id, "acme-docs");
  });

  test("a timeout aborts the call", async () => {
    const slow = new ClearanceClient({ baseUrl: srv.url, token: srv.token("anne", "acme"), timeoutMs: 1 });
    await assert.rejects(slow.search("login timeout"), (err: unknown) => err instanceof DOMException);
    const ac = new AbortController();
    ac.abort();
    await assert.rejects(anne.search("login timeout", { signal: ac.signal }), (err: unknown) => err instanceof DOMException);
  });

  test("flow check: SEC sources may not go to acme-docs, may go to acme-secret", async () => {
    const s = await dave.search({ query: "SQL injection admin export", top_k: 3, filters: { projects: ["acme-secret"] } });
    const denied = await dave.flowCheck({ sources: { audit_ids: [s.audit_id] }, destination: { project: "acme-docs" } });
    assert.equal(denied.allowed, false);
    assert.ok(denied.reasons.length > 0);
    assert.match(denied.audit_id, /^[0-9A-Z]{26}$/);
    const allowed = await dave.flowCheck({ sources: { audit_ids: [s.audit_id] }, destination: { project: "acme-secret" } });
    assert.equal(allowed.allowed, true);
  });

  test("retriever: Documents with ticket metadata, status and audit id, per user", async () => {
    const r = new ClearanceRetriever({ client: { baseUrl: srv.url, token: srv.token("anne", "acme") }, topK: 10 });
    const docs = await r.invoke("SQL injection admin export");
    assert.ok(docs.length > 0);
    const ids = new Set<string>();
    for (const d of docs) {
      assert.ok(d.pageContent.length > 0);
      assert.ok(!d.metadata.ticket_id.startsWith("SEC-"), `anne's retriever got ${d.metadata.ticket_id}`);
      assert.ok(d.metadata.project && d.metadata.title && typeof d.metadata.score === "number");
      assert.ok(["complete", "exhausted", "partial"].includes(d.metadata.status));
      assert.equal(typeof d.metadata.exact, "boolean");
      assert.match(d.metadata.audit_id, /^[0-9A-Z]{26}$/);
      ids.add(d.metadata.ticket_id);
    }
    assert.equal(ids.size, docs.length, "groupByTicket: one Document per ticket");
    const daves = new ClearanceRetriever({ client: dave, topK: 3, fetchTickets: true });
    const dd = await daves.invoke("SQL injection admin export");
    const sec1 = dd.find((d) => d.metadata.ticket_id === "SEC-1");
    assert.ok(sec1, "dave's retriever should return SEC-1");
    assert.match(sec1.pageContent, /^SQL injection in the legacy \/admin\/export endpoint\n\n/);
    assert.match(sec1.metadata.ticket_audit_id ?? "", /^[0-9A-Z]{26}$/);
  });

  test("retriever: a non-complete status is in metadata, and an error when asked", async () => {
    // another tenant's project: nothing visible, an "exhausted" answer
    const fields = { client: anne, projects: ["globex-ops"] };
    const docs = await new ClearanceRetriever(fields).invoke("login timeout");
    assert.deepEqual(docs, []);
    await assert.rejects(new ClearanceRetriever({ ...fields, throwOnIncomplete: true }).invoke("login timeout"), (err: unknown) => {
      assert.ok(err instanceof ClearanceIncompleteError);
      assert.equal(err.status, "exhausted");
      assert.match(err.auditId, /^[0-9A-Z]{26}$/);
      return true;
    });
    const some = await new ClearanceRetriever({ client: anne, projects: ["acme-web"], topK: 50 }).invoke("login timeout");
    assert.ok(some.length > 0 && some.every((d) => d.metadata.status === "exhausted"));
    await assert.doesNotReject(new ClearanceRetriever({ client: anne, projects: ["globex-ops"], throwOnIncomplete: ["partial"] }).invoke("login"));
  });
});
