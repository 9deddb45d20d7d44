import { ClearanceClient } from "@clearance/client";
import { ClearanceRetriever } from "@clearance/client/langchain";

const client = new ClearanceClient({ baseUrl: process.env.CLEARANCE_URL, token: process.env.CLEARANCE_TOKEN });
const { results, status, audit_id } = await client.search({ query: "login timeout", top_k: 5 });
const docs = await new ClearanceRetriever({ client, topK: 5 }).invoke("login timeout");
for (const d of docs) console.log(d.metadata.ticket_id, d.metadata.status, d.metadata.audit_id);
