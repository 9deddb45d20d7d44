"""Starts a real `clearance serve --dev` for the tests: the binary from
CLEARANCE_BIN (the Go test in clients/ builds it once) or built here with `go
build`, a temporary data dir seeded with the demo org (testdata/), a free
loopback port, tokens minted with `clearance token`."""

import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))


class TestServer:
    def __init__(self):
        self.tmp = tempfile.mkdtemp(prefix="clearance-py-")
        self.data_dir = os.path.join(self.tmp, "data")
        self.bin = os.environ.get("CLEARANCE_BIN", "")
        if not self.bin:
            self.bin = os.path.join(self.tmp, "clearance")
            subprocess.run(["go", "build", "-o", self.bin, "./cmd/clearance"], cwd=REPO, check=True)
        # CLEARANCE_* settings of the caller's shell must not reach the test server
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("CLEARANCE_")}
        self.proc = None
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self):
        self.cli("relationships", "write", "--data-dir", self.data_dir, "testdata/org.fga.yaml")
        self.cli("index", "--data-dir", self.data_dir, "--source", "testdata/tickets.jsonl")
        # service account acme-ingest: a viewer of acme-docs only
        self.api_key = self.cli("keys", "create", "--data-dir", self.data_dir, "--tenant", "acme",
                                "--service-account", "acme-ingest", "--scope", "tickets:read")
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        addr = "127.0.0.1:%d" % s.getsockname()[1]
        s.close()
        self.log = open(os.path.join(self.tmp, "serve.log"), "w+")
        self.proc = subprocess.Popen([self.bin, "serve", "--dev", "--data-dir", self.data_dir, "--addr", addr],
                                     cwd=REPO, env=self.env, stdout=subprocess.DEVNULL, stderr=self.log)
        self.url = "http://" + addr
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("serve exited with %d:\n%s" % (self.proc.returncode, self._log()))
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass  # not listening yet
            if time.monotonic() > deadline:
                raise RuntimeError("serve not ready after 60 s:\n" + self._log())
            time.sleep(0.1)

    def _log(self):
        self.log.seek(0)
        return self.log.read()[-20000:]

    def cli(self, *args):
        p = subprocess.run([self.bin, *args], cwd=REPO, env=self.env, capture_output=True, text=True)
        if p.returncode != 0:
            raise RuntimeError("clearance %s: exit %d\n%s" % (" ".join(args), p.returncode, p.stderr))
        return p.stdout.strip()

    def token(self, sub, tenant, *extra):
        # the audience defaults to the URL serve --dev recorded in the data dir
        return self.cli("token", "--data-dir", self.data_dir, "--sub", sub, "--tenant", tenant, *extra)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "log", None):
            self.log.close()
        shutil.rmtree(self.tmp, ignore_errors=True)
