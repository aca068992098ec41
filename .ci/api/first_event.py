"""GET /v1/events over the Unix socket: the first event is `status` and its
data validates against the document's StatusDocument schema."""

import json
import socket
import sys

import jsonschema

sock_path, doc_path = sys.argv[1], sys.argv[2]
doc = json.load(open(doc_path))
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(30)
s.connect(sock_path)
s.sendall(b"GET /v1/events HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n")
buf = b""
while b"\n\n" not in buf.split(b"\r\n\r\n", 1)[-1] or b"\r\n\r\n" not in buf:
    chunk = s.recv(65536)
    if not chunk:
        sys.exit("FAIL: the stream ended before the first event")
    buf += chunk
head, body = buf.split(b"\r\n\r\n", 1)
assert head.startswith(b"HTTP/1.1 200"), head
assert b"text/event-stream" in head.lower(), head
# Chunked transfer: keep only the SSE lines.
event, data = None, []
for line in body.decode().splitlines():
    if line.startswith("event:"):
        event = line[6:].strip()
    elif line.startswith("data:"):
        data.append(line[5:].lstrip())
    elif line == "" and event:
        break
assert event == "status", event
status = json.loads("\n".join(data))
schema = {"$ref": "#/components/schemas/StatusDocument", "components": doc["components"]}
jsonschema.Draft202012Validator(schema).validate(status)
print(f"ok: first event `status`, state {status['license']['state']}, validates against StatusDocument")
