// Compiled with tsc --noEmit against the types openapi-typescript generates from
// api/openapi.yaml (gen/openapi.d.ts): a renamed operation, field or status code
// that a TypeScript client would rely on fails the build.
import type { components, operations, paths } from "../gen/openapi";

type SearchRequest = paths["/v1/search"]["post"]["requestBody"]["content"]["application/json"];
type SearchAnswer = operations["searchTickets"]["responses"][200]["content"]["application/json"];
type Problem = components["schemas"]["Problem"];
type FlowRequest = operations["checkFlow"]["requestBody"]["content"]["application/json"];
type FlowAnswer = operations["checkFlow"]["responses"][200]["content"]["application/json"];
type Ticket = operations["getTicket"]["responses"][200]["content"]["application/json"];
type Grants = operations["listGrants"]["responses"][200]["content"]["application/json"];
type NewKey = operations["createAPIKey"]["responses"][201]["content"]["application/json"];

export const search: SearchRequest = { query: "login timeout", top_k: 5, filters: { projects: ["acme-web"] } };
export const flow: FlowRequest = { sources: { audit_ids: ["a1"] }, destination: { project: "acme-docs" } };

export function ticketIds(a: SearchAnswer): string[] {
  const status: "complete" | "exhausted" | "partial" = a.status;
  return a.results.map((r) => `${r.ticket_id ?? ""} ${status} ${a.audit_id}`);
}

export function fieldErrors(p: Problem): string[] {
  return (p.errors ?? []).map((e) => `${e.field}: ${e.reason}`);
}

export function verdict(a: FlowAnswer): string {
  return a.allowed ? "allowed" : `denied: ${a.reasons.join("; ")} (${a.excluded} of ${a.audience})`;
}

export function title(t: Ticket): string {
  return `${t.id} ${t.tenant}/${t.project} ${t.title ?? ""}`;
}

export function agents(g: Grants): string[] {
  return g.grants.map((x) => `${x.user}~${x.agent}@${x.project}`);
}

export function secret(k: NewKey): string {
  return k.key;
}
