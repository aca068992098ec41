"""Schemathesis hooks module: every request Schemathesis sends to
http://localhost goes over the Unix socket named by $WISPANEL_SOCKET,
from this very process (so the daemon sees this process's uid through
SO_PEERCRED; no TCP bridge). Loaded with SCHEMATHESIS_HOOKS=unix_transport."""

import os
import socket

import requests
import requests.adapters
import urllib3.connection
import urllib3.connectionpool

SOCKET = os.environ["WISPANEL_SOCKET"]


class UnixConnection(urllib3.connection.HTTPConnection):
    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout if isinstance(self.timeout, (int, float)) else 30)
        s.connect(SOCKET)
        self.sock = s


class UnixPool(urllib3.connectionpool.HTTPConnectionPool):
    ConnectionCls = UnixConnection


class UnixAdapter(requests.adapters.HTTPAdapter):
    def get_connection_with_tls_context(self, request, verify, proxies=None, cert=None):
        return UnixPool("localhost")

    def get_connection(self, url, proxies=None):  # older requests
        return UnixPool("localhost")


_init = requests.Session.__init__


def _session_init(self, *args, **kwargs):
    _init(self, *args, **kwargs)
    self.mount("http://localhost", UnixAdapter())
    self.trust_env = False


requests.Session.__init__ = _session_init
