/**
 * A LangChain.js retriever over clearance: `invoke(query)` returns the tickets
 * the token's user (or the agent acting for them) may view right now, as
 * Documents. The permission check happens on the server; this class only maps
 * the answer, so it can never return more than the API would.
 *
 * Each Document's metadata carries the ticket (id, project, title, score) and
 * the answer's status, exact flag and audit id: pass the audit id to a flow
 * check before writing what the agent derived from the documents.
 */
import { AsyncLocalStorage } from "node:async_hooks";

import { BaseRetriever, type BaseRetrieverInput } from "@langchain/core/retrievers";
import { Document } from "@langchain/core/documents";
import type { CallbackManagerForRetrieverRun } from "@langchain/core/callbacks/manager";
import type { RunnableConfig } from "@langchain/core/runnables";

import { ClearanceClient, type ClientOptions, type SearchRequest, type SearchStatus } from "./index.js";

/** Metadata of each Document the retriever returns. */
export interface ClearanceDocumentMetadata extends Record<string, unknown> {
  ticket_id: string;
  project: string;
  tenant: string;
  title: string;
  score: number;
  chunk: number;
  /** Of the whole answer: "complete", "exhausted" or "partial". */
  status: SearchStatus;
  exact: boolean;
  /** The search's audit record (a flow check source). */
  audit_id: string;
  /** With fetchTickets: the audit record of the ticket read. */
  ticket_audit_id?: string;
}

export interface ClearanceRetrieverInput extends BaseRetrieverInput {
  /** A client, or the options to make one. */
  client: ClearanceClient | ClientOptions;
  /** Documents wanted (default 5). */
  topK?: number;
  /** Keep only these projects (a filter, never a grant). */
  projects?: string[];
  /** The agent's stated purpose, audited with every search. */
  intent?: SearchRequest["intent"];
  /** One Document per ticket, its best chunk (default true). */
  groupByTicket?: boolean;
  /**
   * pageContent is the matching chunk's snippet by default; with fetchTickets
   * each ticket is read (GET /v1/tickets/{id}, audited) and pageContent is its
   * title and full body. A ticket that became invisible in between is dropped.
   */
  fetchTickets?: boolean;
  /**
   * Throw a {@link ClearanceIncompleteError} instead of returning when the
   * answer's status is not "complete": true for any such status, or a list of
   * the statuses to throw on. Default false: the status is only in metadata.
   */
  throwOnIncomplete?: boolean | Exclude<SearchStatus, "complete">[];
}

/** An answer whose status the retriever was told to refuse. */
export class ClearanceIncompleteError extends Error {
  constructor(
    readonly status: SearchStatus,
    readonly auditId: string,
    /** What the answer did contain. */
    readonly documents: Document<ClearanceDocumentMetadata>[],
  ) {
    super(`clearance search answered with status ${status} (audit ${auditId})`);
    this.name = "ClearanceIncompleteError";
  }
}

// BaseRetriever.invoke does not hand the config's AbortSignal to
// _getRelevantDocuments; it travels with the call's async context instead.
const callSignal = new AsyncLocalStorage<AbortSignal | undefined>();

export class ClearanceRetriever extends BaseRetriever<ClearanceDocumentMetadata> {
  static lc_name(): string {
    return "ClearanceRetriever";
  }

  lc_namespace = ["clearance", "retrievers"];

  readonly client: ClearanceClient;
  topK: number;
  projects?: string[];
  intent?: SearchRequest["intent"];
  groupByTicket: boolean;
  fetchTickets: boolean;
  throwOnIncomplete: boolean | Exclude<SearchStatus, "complete">[];

  constructor(fields: ClearanceRetrieverInput) {
    super(fields);
    this.client = fields.client instanceof ClearanceClient ? fields.client : new ClearanceClient(fields.client);
    this.topK = fields.topK ?? 5;
    this.projects = fields.projects;
    this.intent = fields.intent;
    this.groupByTicket = fields.groupByTicket ?? true;
    this.fetchTickets = fields.fetchTickets ?? false;
    this.throwOnIncomplete = fields.throwOnIncomplete ?? false;
  }

  /** Retrieves for query; `options.signal` aborts the HTTP calls. */
  invoke(query: string, options?: RunnableConfig): Promise<Document<ClearanceDocumentMetadata>[]> {
    return callSignal.run(options?.signal, () => super.invoke(query, options)) as Promise<Document<ClearanceDocumentMetadata>[]>;
  }

  async _getRelevantDocuments(query: string, _runManager?: CallbackManagerForRetrieverRun): Promise<Document<ClearanceDocumentMetadata>[]> {
    const req: SearchRequest = { query, top_k: this.topK, group_by_ticket: this.groupByTicket };
    if (this.projects?.length) req.filters = { projects: this.projects };
    if (this.intent) req.intent = this.intent;
    const signal = callSignal.getStore();
    const ans = await this.client.search(req, { signal });
    let docs = ans.results.map(
      (r) =>
        new Document<ClearanceDocumentMetadata>({
          id: `${r.ticket_id}#${r.chunk}`,
          pageContent: r.snippet,
          metadata: {
            ticket_id: r.ticket_id,
            project: r.project_id,
            tenant: r.tenant_id,
            title: r.title,
            score: r.score,
            chunk: r.chunk,
            status: ans.status,
            exact: ans.exact,
            audit_id: ans.audit_id,
          },
        }),
    );
    if (this.fetchTickets) docs = await this.withBodies(docs, signal);
    const refuse = this.throwOnIncomplete;
    if (ans.status !== "complete" && (refuse === true || (Array.isArray(refuse) && refuse.includes(ans.status)))) {
      throw new ClearanceIncompleteError(ans.status, ans.audit_id, docs);
    }
    return docs;
  }

  private async withBodies(docs: Document<ClearanceDocumentMetadata>[], signal?: AbortSignal): Promise<Document<ClearanceDocumentMetadata>[]> {
    const out: Document<ClearanceDocumentMetadata>[] = [];
    const seen = new Set<string>();
    // sequential on purpose: topK is small and the server bounds each caller anyway
    for (const d of docs) {
      if (seen.has(d.metadata.ticket_id)) continue;
      seen.add(d.metadata.ticket_id);
      try {
        const t = await this.client.getTicket(d.metadata.ticket_id, { signal });
        d.pageContent = `${t.title}\n\n${t.body}`;
        d.metadata.ticket_audit_id = t.audit_id;
        out.push(d);
      } catch (err) {
        // invisible now is missing: the user lost access since the search
        if ((err as { status?: number }).status === 404) continue;
        throw err;
      }
    }
    return out;
  }
}
