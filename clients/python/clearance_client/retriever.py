"""A retriever with LangChain's interface, without LangChain.

``ClearanceRetriever(client).invoke(query)`` returns documents with
``page_content`` and ``metadata``: LangChain's ``Document`` when
langchain_core is importable (so the list drops into a chain), else this
module's ``Document``. The permission check happens on the server; the
retriever only maps the answer, so it never returns more than the API would.
"""

import asyncio
from typing import Any, Dict, List, Optional, Sequence, Union

from .client import Client, ClearanceError

try:  # pragma: no cover - depends on the environment
    from langchain_core.documents import Document as _LCDocument
except ImportError:  # LangChain is optional
    _LCDocument = None


class Document:
    """A retrieved document: page_content and metadata, as in LangChain."""

    def __init__(self, page_content: str, metadata: Optional[Dict[str, Any]] = None, id: Optional[str] = None):
        self.page_content = page_content
        self.metadata = metadata or {}
        self.id = id

    def __repr__(self) -> str:
        return "Document(id=%r, metadata=%r)" % (self.id, self.metadata)


class ClearanceIncompleteError(Exception):
    """An answer whose status the retriever was told to refuse; documents holds
    what the answer did contain."""

    def __init__(self, status: str, audit_id: str, documents: List[Any]):
        super().__init__("clearance search answered with status %s (audit %s)" % (status, audit_id))
        self.status = status
        self.audit_id = audit_id
        self.documents = documents


class ClearanceRetriever:
    """Retrieves the tickets the client's principal may view.

    Each document's metadata has ticket_id, project, tenant, title, score,
    chunk and the answer's status, exact and audit_id (pass it to
    Client.flow_check before writing what was derived from the documents).
    page_content is the matching chunk's snippet; with fetch_tickets=True each
    ticket is read (audited) and page_content is its title and full body.
    raise_on_incomplete: True raises ClearanceIncompleteError for any status
    other than "complete", or a list of the statuses to raise on.
    use_langchain: return langchain_core Documents when importable (default).
    """

    def __init__(self, client: Client, top_k: int = 5, projects: Optional[Sequence[str]] = None,
                 intent: Optional[Dict[str, Any]] = None, group_by_ticket: bool = True,
                 fetch_tickets: bool = False, raise_on_incomplete: Union[bool, Sequence[str]] = False,
                 use_langchain: bool = True):
        self.client = client
        self.top_k = top_k
        self.projects = list(projects) if projects else None
        self.intent = intent
        self.group_by_ticket = group_by_ticket
        self.fetch_tickets = fetch_tickets
        self.raise_on_incomplete = raise_on_incomplete
        self.use_langchain = use_langchain

    def invoke(self, input: str, config: Any = None, **kwargs: Any) -> List[Any]:
        """LangChain's Runnable.invoke: the documents for the query input."""
        ans = self.client.search(input, top_k=self.top_k, projects=self.projects, intent=self.intent,
                                 group_by_ticket=self.group_by_ticket)
        status = ans["status"]
        docs = []
        for r in ans["results"]:
            meta = {
                "ticket_id": r["ticket_id"],
                "project": r["project_id"],
                "tenant": r["tenant_id"],
                "title": r["title"],
                "score": float(r["score"]),  # JSON writes a whole-number score as 1
                "chunk": r["chunk"],
                "status": status,
                "exact": ans.get("exact", True),
                "audit_id": ans["audit_id"],
            }
            docs.append(("%s#%d" % (r["ticket_id"], r["chunk"]), r["snippet"], meta))
        if self.fetch_tickets:
            docs = self._with_bodies(docs)
        out = [self._document(i, text, meta) for i, text, meta in docs]
        refuse = self.raise_on_incomplete
        if status != "complete" and (refuse is True or (not isinstance(refuse, bool) and status in refuse)):
            raise ClearanceIncompleteError(status, ans["audit_id"], out)
        return out

    async def ainvoke(self, input: str, config: Any = None, **kwargs: Any) -> List[Any]:
        """LangChain's Runnable.ainvoke: invoke in a worker thread (urllib blocks)."""
        return await asyncio.to_thread(self.invoke, input, config, **kwargs)

    # LangChain's older retriever method name
    def get_relevant_documents(self, query: str) -> List[Any]:
        return self.invoke(query)

    def _with_bodies(self, docs: List[Any]) -> List[Any]:
        out, seen = [], set()
        for doc_id, _, meta in docs:
            if meta["ticket_id"] in seen:
                continue
            seen.add(meta["ticket_id"])
            try:
                t = self.client.get_ticket(meta["ticket_id"])
            except ClearanceError as e:
                if e.status == 404:  # invisible now is missing: access changed since the search
                    continue
                raise
            meta["ticket_audit_id"] = t["audit_id"]
            out.append((doc_id, "%s\n\n%s" % (t["title"], t["body"]), meta))
        return out

    def _document(self, doc_id: str, text: str, meta: Dict[str, Any]) -> Any:
        if self.use_langchain and _LCDocument is not None:
            try:
                return _LCDocument(page_content=text, metadata=meta, id=doc_id)
            except (TypeError, ValueError):  # langchain-core before 0.2.11 has no id
                return _LCDocument(page_content=text, metadata=meta)
        return Document(text, meta, id=doc_id)
