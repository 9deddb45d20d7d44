/**
 * Client of clearance's HTTP API (/v1): search, ticket reads and the flow check.
 *
 * Requests and answers use the API's wire names (snake_case, as in
 * api/openapi.yaml) so that what you read in the API docs is what you type.
 * A non-2xx answer throws a {@link ClearanceError} carrying the server's
 * problem+json (RFC 9457): status, type, the invalid field and reason, detail
 * and request id. Every call has a deadline (`timeoutMs`, default 30 s) and
 * takes an optional AbortSignal.
 *
 * The package has no runtime dependencies; the LangChain.js retriever is the
 * separate entry point `@clearance/client/langchain`.
 */

/** Search answer status: "exhausted" means fewer visible results than asked
 * for; "partial" means the search deadline cut the permission check short. */
export type SearchStatus = "complete" | "exhausted" | "partial";

/** Body of POST /v1/search. */
export interface SearchRequest {
  /** 1 to 4096 characters. */
  query: string;
  /** Results wanted (server default 10). */
  top_k?: number;
  /** Keep only results of these projects: a filter, never a grant. */
  filters?: { projects?: string[] };
  /** What the agent says it needs; narrows the search and is audited. */
  intent?: { description?: string; projects?: string[] };
  /** One result per ticket (its best chunk) instead of one per chunk. */
  group_by_ticket?: boolean;
}

/** One chunk the caller may view. */
export interface SearchResult {
  ticket_id: string;
  project_id: string;
  tenant_id: string;
  title: string;
  snippet: string;
  chunk: number;
  score: number;
}

/** Answer of POST /v1/search. */
export interface SearchResponse {
  results: SearchResult[];
  status: SearchStatus;
  /** False when a store page came from an approximate (ANN) plan. */
  exact: boolean;
  /** The audit record of this answer; a flow check source. */
  audit_id: string;
}

/** A ticket as GET /v1/tickets/{id} returns it. */
export interface Ticket {
  id: string;
  tenant: string;
  project: string;
  title: string;
  body: string;
  updated_at: string;
  audit_id: string;
}

/** Body of POST /v1/flow/check. */
export interface FlowRequest {
  sources: { audit_ids?: string[]; ticket_ids?: string[] };
  /** A project, a ticket, or recipients ("user:<id>", "service_account:<id>"). */
  destination: { project?: string; ticket?: string; principals?: string[] };
  /** Name the excluded principals (tenant admins and operators only). */
  explain?: boolean;
}

/** Answer of POST /v1/flow/check: do not write when `allowed` is false. */
export interface FlowResponse {
  allowed: boolean;
  reasons: string[];
  audit_id: string;
  audience: number;
  excluded: number;
  sources: number;
  excluded_principals?: { principal: string; cannot_view: number; tickets?: string[] }[];
  more_excluded_principals?: number;
}

/** One invalid field of a request. */
export interface ProblemField {
  field: string;
  reason: string;
}

/** An RFC 9457 problem details body as clearance sends it. */
export interface Problem {
  type?: string;
  title?: string;
  status?: number;
  detail?: string;
  errors?: ProblemField[];
  request_id?: string;
}

/**
 * A non-2xx answer. `kind` is the last path segment of the problem type
 * ("unauthenticated", "forbidden", "not-found", "invalid-input", ...), so
 * callers branch on kinds rather than on status codes. A ticket the caller may
 * not view is a 404 exactly like a missing one.
 */
export class ClearanceError extends Error {
  readonly status: number;
  readonly type: string;
  readonly kind: string;
  readonly title: string;
  readonly detail: string;
  /** The first invalid field of a 400 ("query", "top_k", ...). */
  readonly field?: string;
  readonly reason?: string;
  readonly errors: ProblemField[];
  readonly requestId?: string;
  /** The WWW-Authenticate header of a 401 or 403. */
  readonly wwwAuthenticate?: string;
  /** Seconds from the Retry-After header of a 429 or 503, when sent. */
  readonly retryAfter?: number;
  readonly method: string;
  readonly path: string;

  constructor(method: string, path: string, status: number, problem: Problem, wwwAuthenticate?: string, retryAfter?: number) {
    const errors = problem.errors ?? [];
    const title = problem.title ?? `HTTP ${status}`;
    let msg = `${method} ${path}: ${status} ${title}`;
    for (const f of errors) msg += `; ${f.field}: ${f.reason}`;
    if (errors.length === 0 && problem.detail) msg += `: ${problem.detail}`;
    if (problem.request_id) msg += ` (request ${problem.request_id})`;
    super(msg);
    this.name = "ClearanceError";
    this.method = method;
    this.path = path;
    this.status = status;
    this.type = problem.type ?? "about:blank";
    this.kind = this.type.slice(this.type.lastIndexOf("/") + 1);
    this.title = title;
    this.detail = problem.detail ?? "";
    this.errors = errors;
    this.field = errors[0]?.field;
    this.reason = errors[0]?.reason;
    this.requestId = problem.request_id;
    this.wwwAuthenticate = wwwAuthenticate;
    this.retryAfter = retryAfter;
  }

  /** Whether retrying later may succeed (429, 502, 503, 504). */
  get transient(): boolean {
    return [429, 502, 503, 504].includes(this.status);
  }
}

/** Options of a {@link ClearanceClient}. */
export interface ClientOptions {
  /** Base URL of the server, e.g. "http://127.0.0.1:8080". */
  baseUrl: string;
  /** An access token (JWT) or API key sent as "Authorization: Bearer". */
  token?: string;
  /** An API key (clr_...) sent as "X-API-Key" (not together with token). */
  apiKey?: string;
  /** Deadline of one call including retries, in ms (default 30000). */
  timeoutMs?: number;
  /** Tries of one call on 429/502/503/504 and network errors (default 3). */
  attempts?: number;
  /** Answers larger than this many bytes are refused (default 16 MiB). */
  maxResponseBytes?: number;
  /** A fetch implementation (default: the global fetch). */
  fetch?: typeof fetch;
}

/** Per-call options. */
export interface CallOptions {
  /** Aborts the call (combined with the client's timeout). */
  signal?: AbortSignal;
}

/** Calls one clearance server. Safe for concurrent use. */
export class ClearanceClient {
  readonly baseUrl: string;
  private readonly headers: Record<string, string>;
  private readonly timeoutMs: number;
  private readonly attempts: number;
  private readonly maxBytes: number;
  private readonly fetchImpl: typeof fetch;

  constructor(opts: ClientOptions) {
    let u: URL;
    try {
      u = new URL(opts.baseUrl);
    } catch {
      throw new TypeError(`baseUrl must be an http(s) URL, got ${JSON.stringify(opts.baseUrl)}`);
    }
    if (u.protocol !== "http:" && u.protocol !== "https:") {
      throw new TypeError(`baseUrl must be an http(s) URL, got ${JSON.stringify(opts.baseUrl)}`);
    }
    if (opts.token && opts.apiKey) {
      // the server refuses both headers at once as ambiguous
      throw new TypeError("give token or apiKey, not both");
    }
    this.baseUrl = opts.baseUrl.replace(/\/+$/, "");
    this.headers = { Accept: "application/json, application/problem+json" };
    if (opts.token) this.headers["Authorization"] = `Bearer ${opts.token}`;
    if (opts.apiKey) this.headers["X-API-Key"] = opts.apiKey;
    this.timeoutMs = opts.timeoutMs ?? 30_000;
    this.attempts = Math.max(1, opts.attempts ?? 3);
    this.maxBytes = opts.maxResponseBytes ?? 16 << 20;
    this.fetchImpl = opts.fetch ?? globalThis.fetch;
  }

  /** Searches the tickets the caller may view. A string is the query. */
  search(req: SearchRequest | string, opts?: CallOptions): Promise<SearchResponse> {
    const body = typeof req === "string" ? { query: req } : req;
    return this.call<SearchResponse>("POST", "/v1/search", body, opts);
  }

  /** Reads one ticket; one the caller may not view is a 404 like a missing one. */
  getTicket(id: string, opts?: CallOptions): Promise<Ticket> {
    return this.call<Ticket>("GET", `/v1/tickets/${encodeURIComponent(id)}`, undefined, opts);
  }

  /** Asks, before a write, whether everyone who can view the destination can
   * view every source. */
  flowCheck(req: FlowRequest, opts?: CallOptions): Promise<FlowResponse> {
    return this.call<FlowResponse>("POST", "/v1/flow/check", req, opts);
  }

  private async call<T>(method: string, path: string, body: unknown, opts?: CallOptions): Promise<T> {
    const signals = [AbortSignal.timeout(this.timeoutMs)];
    if (opts?.signal) signals.push(opts.signal);
    const signal = AbortSignal.any(signals);
    const headers = { ...this.headers };
    let payload: string | undefined;
    if (body !== undefined) {
      payload = JSON.stringify(body);
      headers["Content-Type"] = "application/json";
    }
    let backoff = 250;
    for (let attempt = 1; ; attempt++) {
      let wait = backoff;
      try {
        return await this.once<T>(method, path, headers, payload, signal);
      } catch (err) {
        // fetch fails with a TypeError on network errors; aborts, timeouts and
        // over-long answers end the call; API errors retry only when transient
        const retry = err instanceof ClearanceError ? err.transient : err instanceof TypeError && !signal.aborted;
        if (!retry || attempt >= this.attempts || signal.aborted) throw err;
        // the server's Retry-After, capped: the call's deadline still bounds it
        if (err instanceof ClearanceError && err.retryAfter) wait = Math.min(Math.max(wait, err.retryAfter * 1000), 5000);
      }
      await sleep(wait, signal);
      backoff *= 2;
    }
  }

  private async once<T>(method: string, path: string, headers: Record<string, string>, body: string | undefined, signal: AbortSignal): Promise<T> {
    const resp = await this.fetchImpl(this.baseUrl + path, { method, headers, body, signal });
    const text = await readCapped(resp, this.maxBytes, `${method} ${path}`);
    if (!resp.ok) {
      let problem: Problem | null = null;
      try {
        problem = JSON.parse(text) as Problem;
      } catch {
        // not JSON: a proxy's error page, say
      }
      if (problem === null || typeof problem !== "object") {
        problem = { title: resp.statusText, status: resp.status, detail: text.slice(0, 512) };
      }
      const retryAfter = Number(resp.headers.get("Retry-After") ?? "") || undefined;
      throw new ClearanceError(method, path, resp.status, problem, resp.headers.get("WWW-Authenticate") ?? undefined, retryAfter);
    }
    return JSON.parse(text) as T;
  }
}

async function readCapped(resp: Response, max: number, what: string): Promise<string> {
  const len = Number(resp.headers.get("Content-Length") ?? "0");
  if (len > max) {
    await resp.body?.cancel();
    throw new Error(`${what}: answer of ${len} bytes is over the limit of ${max}`);
  }
  if (!resp.body) return "";
  const chunks: Uint8Array[] = [];
  let n = 0;
  for await (const chunk of resp.body as unknown as AsyncIterable<Uint8Array>) {
    n += chunk.byteLength;
    if (n > max) throw new Error(`${what}: answer over the limit of ${max} bytes`);
    chunks.push(chunk);
  }
  return new TextDecoder().decode(concat(chunks, n));
}

function concat(chunks: Uint8Array[], n: number): Uint8Array {
  const out = new Uint8Array(n);
  let off = 0;
  for (const c of chunks) {
    out.set(c, off);
    off += c.byteLength;
  }
  return out;
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const t = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      reject(signal.reason);
    };
    signal.addEventListener("abort", onAbort, { once: true });
  });
}
