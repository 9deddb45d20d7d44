import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { createServer, type Socket } from "node:net";
import { fileURLToPath } from "node:url";
import { after, before, describe, test } from "node:test";

import type { Document } from "@langchain/core/documents";
import { RunnableLambda } from "@langchain/core/runnables";

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

  test("a timeout or an abort ends the call", async () => {
    // a listener that never answers: the call ends at its deadline
    const held = new Set<Socket>();
    const silent = createServer((s) => held.add(s));
    await new Promise<void>((r) => silent.listen(0, "127.0.0.1", r));
    try {
      const port = (silent.address() as { port: number }).port;
      const slow = new ClearanceClient({ baseUrl: `http://127.0.0.1:${port}`, token: "t", timeoutMs: 200 });
      await assert.rejects(slow.search("login timeout"), (err: unknown) => err instanceof DOMException && err.name === "TimeoutError");
    } finally {
      for (const s of held) s.destroy();
      silent.close();
    }
    const ac = new AbortController();
    ac.abort();
    await assert.rejects(anne.search("login timeout", { signal: ac.signal }), (err: unknown) => err instanceof DOMException && err.name === "AbortError");
    await assert.rejects(new ClearanceRetriever({ client: anne }).invoke("login timeout", { signal: ac.signal }), (err: unknown) => err instanceof DOMException && err.name === "AbortError");
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
    // composes like any retriever: a chain step receives the Documents
    const titles = await r.pipe(RunnableLambda.from((ds: Document[]) => ds.map((d) => d.metadata.title))).invoke("SQL injection admin export");
    assert.equal(titles.length, docs.length);
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

  test("the README's example runs and prints only anne's tickets", () => {
    const pkg = fileURLToPath(new URL("../../", import.meta.url));
    const out = execFileSync(process.execPath, ["examples/readme.mjs"], {
      cwd: pkg,
      encoding: "utf8",
      env: { ...process.env, CLEARANCE_URL: srv.url, CLEARANCE_TOKEN: srv.token("anne", "acme") },
    });
    const lines = out.trim().split("\n");
    assert.ok(lines.length > 0 && lines.length <= 5, out);
    for (const l of lines) assert.match(l, /^(WEB|API|DOCS)-\d+ (complete|exhausted|partial) [0-9A-Z]{26}$/);
  });

  test("the README's mcp-remote configuration connects with a bearer token", async () => {
    const pkg = fileURLToPath(new URL("../../", import.meta.url));
    const cfg = JSON.parse(readFileSync(join(pkg, "examples/mcp-remote.json"), "utf8")).mcpServers.clearance;
    const args = (cfg.args as string[]).map((a) => a.replace("http://127.0.0.1:8080", srv.url));
    const auth = mkdtempSync(join(tmpdir(), "mcp-auth-"));
    // npx finds mcp-remote in this package's node_modules (a devDependency)
    const proc = spawn(cfg.command, args, {
      cwd: pkg,
      env: { ...process.env, AUTH_HEADER: `Bearer ${srv.token("anne", "acme")}`, MCP_REMOTE_CONFIG_DIR: auth },
      stdio: ["pipe", "pipe", "pipe"],
    });
    let stderr = "";
    proc.stderr.on("data", (b: Buffer) => (stderr = (stderr + b.toString()).slice(-10000)));
    const answers = new Map<number, any>();
    const waiting = new Map<number, (v: any) => void>();
    createInterface({ input: proc.stdout }).on("line", (line) => {
      const msg = JSON.parse(line);
      if (msg.id !== undefined) {
        answers.set(msg.id, msg);
        waiting.get(msg.id)?.(msg);
      }
    });
    const call = (id: number, method: string, params?: unknown) => {
      proc.stdin.write(JSON.stringify({ jsonrpc: "2.0", id, method, params }) + "\n");
      return new Promise<any>((resolve, reject) => {
        if (answers.has(id)) return resolve(answers.get(id));
        waiting.set(id, resolve);
        proc.once("exit", (code) => reject(new Error(`mcp-remote exited ${code}:\n${stderr}`)));
      });
    };
    try {
      const init = await call(1, "initialize", { protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name: "clearance-test", version: "0" } });
      assert.ok(init.result, JSON.stringify(init));
      proc.stdin.write(JSON.stringify({ jsonrpc: "2.0", method: "notifications/initialized" }) + "\n");
      const list = await call(2, "tools/list", {});
      const names = list.result.tools.map((t: { name: string }) => t.name);
      assert.ok(names.includes("search_tickets") && names.includes("get_ticket"), names.join(","));
      const res = await call(3, "tools/call", { name: "search_tickets", arguments: { query: "SQL injection admin export", top_k: 10 } });
      const text = res.result.content.map((c: { text?: string }) => c.text ?? "").join("\n");
      assert.match(text, /audit [0-9A-Z]{26}/);
      assert.doesNotMatch(text, /SEC-\d/);
    } finally {
      proc.stdin.end(); // mcp-remote shuts down when its stdin ends
      if (proc.exitCode === null) {
        await new Promise<void>((r) => {
          const kill = setTimeout(() => proc.kill(), 10_000);
          proc.once("exit", () => {
            clearTimeout(kill);
            r();
          });
        });
      }
      rmSync(auth, { recursive: true, force: true });
    }
  });
});
