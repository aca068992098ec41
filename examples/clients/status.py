#!/usr/bin/env python3
"""Reads wispanel-licensed's status over its Unix socket (standard library
only), then follows GET /v1/events until the next change and prints it.

    python3 status.py [SOCKET]   (default /run/wispanel-license/status.sock)
"""

import http.client
import json
import socket
import sys
import time

SOCKET = sys.argv[1] if len(sys.argv) > 1 else "/run/wispanel-license/status.sock"


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=30):
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


def call(method, path):
    """The decoded JSON answer; an error envelope ends the program, a 429 is
    retried once after its Retry-After."""
    for attempt in (1, 2):
        conn = UnixHTTPConnection(SOCKET)
        conn.request(method, path)
        r = conn.getresponse()
        body = json.loads(r.read() or b"null")
        conn.close()
        if r.status == 429 and attempt == 1:
            wait = int(r.getheader("Retry-After", "1"))
            print(f"busy (429 {body['code']}): retrying in {wait} s")
            time.sleep(wait)
            continue
        if r.status >= 400:
            # The envelope: success false, code, message, status.
            print(f"error {body['status']} {body['code']}: {body['message']}")
            sys.exit(2 if r.status == 403 else 1)
        return body
    sys.exit("still busy after one retry")


def show(prefix, doc):
    lic = doc["license"]
    warnings = ",".join(w["code"] for w in doc["warnings"]) or "none"
    print(f"{prefix}state={lic['state']} licensed={str(lic['licensed']).lower()} "
          f"update={doc['update']['state']} warnings={warnings}", flush=True)


show("", call("GET", "/v1/status"))

# Events: the first one is the status now; the next one is the change.
conn = UnixHTTPConnection(SOCKET, timeout=None)
conn.request("GET", "/v1/events", headers={"Accept": "text/event-stream"})
r = conn.getresponse()
if r.status != 200:
    body = json.loads(r.read())
    print(f"error {body['status']} {body['code']}: {body['message']}")
    sys.exit(1)
seen, event, data = 0, None, []
while True:
    line = r.readline()
    if not line:
        sys.exit("the event stream ended")
    line = line.decode().rstrip("\r\n")
    if line.startswith("event:"):
        event = line[6:].strip()
    elif line.startswith("data:"):
        data.append(line[5:].lstrip())
    elif line == "" and event:
        seen += 1
        if seen == 1:
            print("waiting for the next change", flush=True)
        if event == "status" and seen > 1:
            show("change: ", json.loads("\n".join(data)))
            break
        event, data = None, []
