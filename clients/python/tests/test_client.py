"""The Python client and retriever against a real `clearance serve --dev`.

anne (team acme-eng) sees acme-web, acme-api and DOCS-1 but not acme-secret;
dave owns acme-secret (testdata/org.fga.yaml)."""

import asyncio
import os
import re
import socket
import subprocess
import sys
import unittest

from clearance_client import Client, ClearanceError, ClearanceIncompleteError, ClearanceRetriever
from clearance_client import retriever as retriever_module

from .harness import TestServer

ULID = re.compile(r"^[0-9A-Z]{26}$")


class AgainstServe(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = TestServer()
        cls.anne = Client(cls.srv.url, token=cls.srv.token("anne", "acme"))
        cls.dave = Client(cls.srv.url, token=cls.srv.token("dave", "acme"))

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    def test_search_only_visible_with_status_and_audit_id(self):
        a = self.anne.search("SQL injection admin export", top_k=20)
        self.assertTrue(a["results"])
        self.assertRegex(a["audit_id"], ULID)
        self.assertIn(a["status"], ("complete", "exhausted", "partial"))
        self.assertIsInstance(a["exact"], bool)
        for r in a["results"]:
            self.assertFalse(r["ticket_id"].startswith("SEC-"), "anne got " + r["ticket_id"])
        d = self.dave.search("SQL injection admin export")
        self.assertIn("SEC-1", [r["ticket_id"] for r in d["results"]])

    def test_get_ticket_one_user_not_the_other(self):
        t = self.dave.get_ticket("SEC-1")
        self.assertEqual(t["project"], "acme-secret")
        self.assertTrue(t["body"])
        self.assertRegex(t["audit_id"], ULID)
        for tid in ("SEC-1", "NOPE-1"):
            with self.assertRaises(ClearanceError) as cm:
                self.anne.get_ticket(tid)
            self.assertEqual(cm.exception.status, 404)
            self.assertEqual(cm.exception.kind, "not-found")

    def test_bad_token_is_typed_401(self):
        with self.assertRaises(ClearanceError) as cm:
            Client(self.srv.url, token="not-a-token").search("login")
        e = cm.exception
        self.assertEqual(e.status, 401)
        self.assertEqual(e.kind, "unauthenticated")
        self.assertTrue(e.type.endswith("/unauthenticated"))
        self.assertIn("resource_metadata=", e.www_authenticate or "")

    def test_bad_input_names_the_field(self):
        with self.assertRaises(ClearanceError) as cm:
            self.anne.search("login", top_k=0)
        self.assertEqual(cm.exception.status, 400)
        self.assertEqual(cm.exception.field, "top_k")
        self.assertTrue(cm.exception.reason)

    def test_api_key_header(self):
        svc = Client(self.srv.url, api_key=self.srv.api_key)
        a = svc.search("login timeout", top_k=20)
        self.assertTrue(a["results"])
        self.assertEqual({r["project_id"] for r in a["results"]}, {"acme-docs"})

    def test_timeout(self):
        # a listener that never answers: the call ends at its deadline
        silent = socket.socket()
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        try:
            url = "http://127.0.0.1:%d" % silent.getsockname()[1]
            with self.assertRaises(OSError):  # socket.timeout, or URLError wrapping it
                Client(url, token="t", timeout=0.2).search("login timeout")
        finally:
            silent.close()

    def test_flow_check(self):
        s = self.dave.search("SQL injection admin export", top_k=3, projects=["acme-secret"])
        denied = self.dave.flow_check({"audit_ids": [s["audit_id"]]}, {"project": "acme-docs"})
        self.assertFalse(denied["allowed"])
        self.assertTrue(denied["reasons"])
        self.assertRegex(denied["audit_id"], ULID)
        allowed = self.dave.flow_check({"audit_ids": [s["audit_id"]]}, {"project": "acme-secret"})
        self.assertTrue(allowed["allowed"])

    def test_retriever_documents_per_user(self):
        docs = ClearanceRetriever(self.anne, top_k=10, use_langchain=False).invoke("SQL injection admin export")
        self.assertTrue(docs)
        for d in docs:
            self.assertIsInstance(d, retriever_module.Document)
            self.assertTrue(d.page_content)
            m = d.metadata
            self.assertFalse(m["ticket_id"].startswith("SEC-"), "anne's retriever got " + m["ticket_id"])
            self.assertTrue(m["project"] and m["title"])
            self.assertIsInstance(m["score"], float)
            self.assertIn(m["status"], ("complete", "exhausted", "partial"))
            self.assertIsInstance(m["exact"], bool)
            self.assertRegex(m["audit_id"], ULID)
        self.assertEqual(len({d.metadata["ticket_id"] for d in docs}), len(docs), "one document per ticket")
        adocs = asyncio.run(ClearanceRetriever(self.anne, top_k=10, use_langchain=False).ainvoke("SQL injection admin export"))
        self.assertEqual([d.id for d in adocs], [d.id for d in docs])
        dd = ClearanceRetriever(self.dave, top_k=3, fetch_tickets=True).invoke("SQL injection admin export")
        sec1 = [d for d in dd if d.metadata["ticket_id"] == "SEC-1"]
        self.assertEqual(len(sec1), 1, "dave's retriever should return SEC-1")
        self.assertTrue(sec1[0].page_content.startswith("SQL injection in the legacy /admin/export endpoint\n\n"))
        self.assertRegex(sec1[0].metadata["ticket_audit_id"], ULID)

    def test_retriever_incomplete_status(self):
        # another tenant's project: nothing visible, an "exhausted" answer
        self.assertEqual(ClearanceRetriever(self.anne, projects=["globex-ops"]).invoke("login timeout"), [])
        with self.assertRaises(ClearanceIncompleteError) as cm:
            ClearanceRetriever(self.anne, projects=["globex-ops"], raise_on_incomplete=True).invoke("login timeout")
        self.assertEqual(cm.exception.status, "exhausted")
        self.assertRegex(cm.exception.audit_id, ULID)
        some = ClearanceRetriever(self.anne, projects=["acme-web"], top_k=50).invoke("login timeout")
        self.assertTrue(some)
        self.assertTrue(all(d.metadata["status"] == "exhausted" for d in some))
        ClearanceRetriever(self.anne, projects=["globex-ops"], raise_on_incomplete=["partial"]).invoke("login")

    def test_readme_example(self):
        pkg = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env = dict(os.environ, CLEARANCE_URL=self.srv.url, CLEARANCE_TOKEN=self.srv.token("anne", "acme"),
                   PYTHONPATH=pkg)
        out = subprocess.run([sys.executable, os.path.join(pkg, "examples", "readme.py")], env=env, check=True,
                             capture_output=True, text=True).stdout
        lines = out.strip().splitlines()
        self.assertTrue(0 < len(lines) <= 5, out)
        for line in lines:
            self.assertRegex(line, r"^(WEB|API|DOCS)-\d+ (complete|exhausted|partial) [0-9A-Z]{26}$")


if __name__ == "__main__":
    unittest.main()
