"""Client of clearance's HTTP API (/v1) using only the standard library.

``Client`` searches, reads tickets and asks the flow check; a non-2xx answer
raises ``ClearanceError`` carrying the server's problem+json (RFC 9457).
``ClearanceRetriever`` has LangChain's retriever interface (``invoke(query)``
returns documents with ``page_content`` and ``metadata``) without needing
LangChain installed.
"""

from .client import Client, ClearanceError
from .retriever import ClearanceIncompleteError, ClearanceRetriever, Document

__all__ = [
    "Client",
    "ClearanceError",
    "ClearanceIncompleteError",
    "ClearanceRetriever",
    "Document",
]
