#!/usr/bin/env python3
"""fault_proxy.py PORT UPSTREAM LOG — a registry front that misbehaves on request.

The first repository path component picks the behaviour, the rest is the real repository
(anything after a '-' in the first component is ignored: a test adds a nonce there so that
the per-path counts below start again at each run):
  /v2/count/<repo>/...  forwarded; each request is appended to LOG as "METHOD PATH"
  /v2/e401/<repo>/...   401 UNAUTHORIZED on everything
  /v2/e404/<repo>/...   404 MANIFEST_UNKNOWN on manifests
  /v2/e500/<repo>/...   500 on manifests
  /v2/drop/<repo>/...   layer blobs (over 64 KiB): full Content-Length announced, half sent, connection closed
  /v2/corrupt/<repo>/...layer blobs (over 64 KiB): one byte flipped in the middle
  /v2/r429/<repo>/...   the first GET of each path: 429 with Retry-After: 1 and Docker Hub's message
  /v2/a429/<repo>/...   every GET: 429 with Retry-After: 3600 and Docker Hub's message
  /v2/e503/<repo>/...   the first two requests of each path: 503
  /v2/stall/<repo>/...  layer blobs (over 64 KiB): half sent, then nothing for a minute
  /v2/endless/<repo>/...manifest GETs: 200 and a body that never ends
  /v2/huge/<repo>/...   manifest GETs: 200 declaring 8 GiB, then a body that never ends
  /v2/norange/<repo>/...forwarded without the Range header: the whole blob, 200, as a
                        registry that ignores ranged reads answers
Every other mode forwards a ranged read's Range header and answers 206 as the registry does.
"""
import json, sys, threading, time, urllib.error, urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT, UPSTREAM, LOG = int(sys.argv[1]), sys.argv[2], sys.argv[3]
HUB_LIMIT = ("You have reached your pull rate limit. You may increase the limit by "
             "authenticating and upgrading: https://www.docker.com/increase-rate-limit")
SEEN, SEEN_LOCK = {}, threading.Lock()


def seen(key):
    """How many times this key was asked before (a per-path request count)."""
    with SEEN_LOCK:
        SEEN[key] = SEEN.get(key, 0) + 1
        return SEEN[key] - 1


FORWARDED = ("Content-Type", "Docker-Content-Digest", "Content-Length", "Content-Range",
             "Docker-Distribution-Api-Version")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def error(self, status, code, message=None, retry_after=None):
        body = json.dumps({"errors": [{"code": code, "message": message or f"injected {status}"}]}).encode()
        self.send_response(status)
        if retry_after is not None:
            self.send_header("Retry-After", str(retry_after))
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def handle_any(self):
        if self.path.rstrip("/") == "/v2":
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        parts = self.path.split("/", 3)  # ['', 'v2', mode, rest]
        if len(parts) < 4:
            return self.error(404, "NAME_UNKNOWN")
        mode, rest = parts[2].split("-")[0], parts[3]
        is_blob = "/blobs/" in rest
        with open(LOG, "a") as log:
            log.write(f"{parts[2]} {self.command} /v2/{rest}\n")
        if mode == "e401":
            return self.error(401, "UNAUTHORIZED")
        if mode == "e404" and not is_blob:
            return self.error(404, "MANIFEST_UNKNOWN")
        if mode == "e500" and not is_blob:
            return self.error(500, "UNKNOWN")
        if mode == "r429" and self.command == "GET" and seen(self.path) == 0:
            return self.error(429, "TOOMANYREQUESTS", HUB_LIMIT, retry_after=1)
        if mode == "a429" and self.command == "GET":
            return self.error(429, "TOOMANYREQUESTS", HUB_LIMIT, retry_after=3600)
        if mode == "e503" and seen(self.command + self.path) < 2:
            return self.error(503, "UNAVAILABLE")
        if mode in ("endless", "huge") and self.command == "GET" and "/manifests/" in rest:
            return self.endless(declared=8 << 30 if mode == "huge" else None)
        kept = ("accept",) if mode == "norange" else ("accept", "range")
        request = urllib.request.Request(f"{UPSTREAM}/v2/{rest}", method=self.command,
                                         headers={k: v for k, v in self.headers.items() if k.lower() in kept})
        try:
            upstream = urllib.request.urlopen(request)
        except urllib.error.HTTPError as e:
            upstream = e
        body = upstream.read()
        self.send_response(upstream.status if hasattr(upstream, "status") else upstream.code)
        for name in FORWARDED:
            if name != "Content-Length" and upstream.headers.get(name):
                self.send_header(name, upstream.headers[name])
        length = int(upstream.headers.get("Content-Length", len(body)))
        self.send_header("Content-Length", str(length))
        self.end_headers()
        if self.command == "HEAD":
            return
        is_layer = is_blob and len(body) > 65536
        if mode == "drop" and is_layer:
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(2)
            return
        if mode == "stall" and is_layer:
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            time.sleep(60)
            self.close_connection = True
            return
        if mode == "corrupt" and is_layer:
            middle = len(body) // 2
            body = body[:middle] + bytes([body[middle] ^ 0xFF]) + body[middle + 1:]
        self.wfile.write(body)

    def endless(self, declared):
        """A manifest that never ends: the start of a valid one, then spaces until the client leaves."""
        self.send_response(200)
        self.send_header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        if declared:
            self.send_header("Content-Length", str(declared))
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        chunk = b" " * 65536
        try:
            self.wfile.write(b'{"schemaVersion": 2, "padding": "')
            while True:
                self.wfile.write(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass

    do_GET = do_HEAD = handle_any


ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
