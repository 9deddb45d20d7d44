// Starts a real `clearance serve --dev` for the tests: the binary from
// CLEARANCE_BIN (the Go test in clients/ builds it once) or built here with
// `go build`, a temporary data dir seeded with the demo org (testdata/), a free
// loopback port, tokens minted with `clearance token`.
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

// build/test/harness.js -> the repository root
const repo = fileURLToPath(new URL("../../../../", import.meta.url));

export interface TestServer {
  url: string;
  dataDir: string;
  /** An API key of service account acme-ingest (viewer of acme-docs only). */
  apiKey: string;
  token(sub: string, tenant: string, ...extra: string[]): string;
  stop(): Promise<void>;
}

export async function startServer(): Promise<TestServer> {
  const tmp = mkdtempSync(join(tmpdir(), "clearance-ts-"));
  const dataDir = join(tmp, "data");
  let bin = process.env.CLEARANCE_BIN ?? "";
  if (!bin) {
    bin = join(tmp, "clearance");
    execFileSync("go", ["build", "-o", bin, "./cmd/clearance"], { cwd: repo, stdio: "inherit" });
  }
  // CLEARANCE_* settings of the caller's shell must not reach the test server
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("CLEARANCE_")));
  const cli = (...args: string[]) => execFileSync(bin, args, { cwd: repo, env, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] }).trim();
  cli("relationships", "write", "--data-dir", dataDir, "testdata/org.fga.yaml");
  cli("index", "--data-dir", dataDir, "--source", "testdata/tickets.jsonl");
  const apiKey = cli("keys", "create", "--data-dir", dataDir, "--tenant", "acme", "--service-account", "acme-ingest", "--scope", "tickets:read");
  const addr = `127.0.0.1:${await freePort()}`;
  const proc = spawn(bin, ["serve", "--dev", "--data-dir", dataDir, "--addr", addr], { cwd: repo, env, stdio: ["ignore", "ignore", "pipe"] });
  let log = "";
  proc.stderr!.on("data", (b: Buffer) => {
    log = (log + b.toString()).slice(-20000);
  });
  const url = `http://${addr}`;
  try {
    await waitReady(url, proc, () => log);
  } catch (err) {
    await stop(proc);
    rmSync(tmp, { recursive: true, force: true });
    throw err;
  }
  return {
    url,
    dataDir,
    apiKey,
    // the audience defaults to the URL serve --dev recorded in the data dir
    token: (sub, tenant, ...extra) => cli("token", "--data-dir", dataDir, "--sub", sub, "--tenant", tenant, ...extra),
    stop: async () => {
      await stop(proc);
      rmSync(tmp, { recursive: true, force: true });
    },
  };
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

async function waitReady(url: string, proc: ChildProcess, log: () => string): Promise<void> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`serve exited with ${proc.exitCode}:\n${log()}`);
    try {
      const r = await fetch(`${url}/readyz`, { signal: AbortSignal.timeout(2000) });
      if (r.status === 200) return;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`serve not ready after 60 s:\n${log()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function stop(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const kill = setTimeout(() => proc.kill("SIGKILL"), 10_000);
    proc.once("exit", () => {
      clearTimeout(kill);
      resolve();
    });
    proc.kill("SIGTERM");
  });
}
