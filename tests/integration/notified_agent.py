"""An agent started under a notify socket of the test's own, as systemd runs
it: its sd_notify datagrams (READY=, STATUS=, WATCHDOG=) are collected with
their monotonic time, and its status endpoint is found in its log. Shared by
the status tests that watch both (test_status_watchdog, test_status_summary).

    a = NotifiedAgent(mittari, T, plugins, watchdog_usec=1000000)
    code, body = a.get("/health")
    rc = a.stop()
    texts = a.texts()  # the datagrams, in order
"""
import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time


class NotifiedAgent:
    def __init__(self, mittari, T, plugins, watchdog_usec=None, http_timeout=10):
        self.T = T
        self.http_timeout = http_timeout
        self.msgs = []  # (monotonic, text)
        self.done = False
        self.srv = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.srv.bind(T + "/notify")
        env = dict(os.environ, NOTIFY_SOCKET=T + "/notify")
        for k in ("WATCHDOG_USEC", "WATCHDOG_PID"):
            env.pop(k, None)
        if watchdog_usec:
            env["WATCHDOG_USEC"] = str(watchdog_usec)
        log = open(T + "/agent.log", "ab")
        self.proc = subprocess.Popen([mittari, "run", "-c", T + "/conf", "--plugin-dir", plugins],
                                     stdout=subprocess.DEVNULL, stderr=log, env=env)
        threading.Thread(target=self._read, daemon=True).start()
        self.port = None
        deadline = time.monotonic() + 20
        while self.port is None:
            m = re.findall(r"status endpoint on http://127.0.0.1:(\d+)/", self.log())
            self.port = int(m[-1]) if m else None
            if time.monotonic() > deadline:
                self.fail("no status endpoint")
            time.sleep(0.05)

    def _read(self):
        self.srv.settimeout(0.2)
        while not self.done:
            try:
                data = self.srv.recv(4096)
            except socket.timeout:
                continue
            self.msgs.append((time.monotonic(), data.decode()))

    def fail(self, what):
        self.proc.kill()
        sys.exit("FAIL: " + what)

    def log(self):
        return open(self.T + "/agent.log").read()

    def wait_log(self, text, secs):
        deadline = time.monotonic() + secs
        while text not in self.log():
            if time.monotonic() > deadline:
                self.fail(f"the agent did not log {text!r}")
            time.sleep(0.05)

    def get(self, path):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.http_timeout)
        c.request("GET", path)
        r = c.getresponse()
        body = r.read().decode()
        c.close()
        return r.status, body

    def stop(self):
        """SIGTERM; the exit status once the last datagrams are in."""
        self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout=30)
        time.sleep(0.3)
        self.done = True
        return rc

    def texts(self):
        return [m for _, m in self.msgs]
