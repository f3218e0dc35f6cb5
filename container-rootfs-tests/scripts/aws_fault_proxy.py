#!/usr/bin/env python3
"""aws_fault_proxy.py PORT UPSTREAM LOG — an AWS front (ministack) that misbehaves on request.

Every request is forwarded to UPSTREAM byte for byte, headers included, and appended to LOG
as "METHOD PATH STATUS". S3 (path style): the bucket's name picks the fault, for object
requests only (bucket requests always pass, so a test can set buckets up through it):
  /slowdown-*/KEY  the first two requests of each method and key: 503 SlowDown, as S3 throttles
  /broken-*/KEY    every request: 500 InternalError
  /partfail-*/KEY  every upload of part 3 of a multipart upload: 500 InternalError
Lambda's Invoke, for functions named throttled-*: 429 TooManyRequestsException, as Lambda
answers when the function's or the account's concurrency is used up, for
  the first two requests with the same event, and
  every request whose event mentions "always-throttled".
Lambda's ListTags, for functions named vanished-*: 404 ResourceNotFoundException, as Lambda
answers for a function deleted (by someone else) between ListFunctions and ListTags.
Anything else is forwarded untouched.
"""
import hashlib, http.client, json, re, sys, threading, urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT, UPSTREAM, LOG = int(sys.argv[1]), urllib.parse.urlsplit(sys.argv[2]), sys.argv[3]
SEEN, LOCK = {}, threading.Lock()
HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}
ERRORS = {
    503: ("SlowDown", "Please reduce your request rate."),
    500: ("InternalError", "We encountered an internal error. Please try again."),
}


INVOKE = re.compile(r"^/2015-03-31/functions/([^/]+)/invocations$")
TAGS = re.compile(r"^/2017-03-31/tags/([^/]+)$")


def count(key):
    with LOCK:
        SEEN[key] = SEEN.get(key, 0) + 1
        return SEEN[key] - 1


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def body(self):
        """The request body, whether sent with a length or chunked."""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline().strip():
                        pass
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length", 0)))

    def record(self, status):
        """Logged before the answer is sent: a test reading the log as soon as its client has
        the answer must find the line."""
        with LOCK, open(LOG, "a") as log:
            log.write(f"{self.command} {self.path} {status}\n")

    def fault(self, status):
        code, message = ERRORS[status]
        body = (f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
                f"<Message>{message}</Message><RequestId>fault-proxy</RequestId></Error>").encode()
        self.record(status)
        self.send_response(status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def lambda_error(self, status, error_type, body):
        """An error as Lambda's API answers one: JSON, its type in x-amzn-ErrorType."""
        body = json.dumps(body).encode()
        self.record(status)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("x-amzn-ErrorType", error_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def throttle(self):
        self.lambda_error(429, "TooManyRequestsException",
                          {"Type": "User", "message": "Rate Exceeded.",
                           "Reason": "ReservedFunctionConcurrentInvocationLimitExceeded"})

    def not_found(self, arn):
        self.lambda_error(404, "ResourceNotFoundException",
                          {"Type": "User", "Message": f"Function not found: {arn}"})

    def handle_any(self):
        body = self.body()
        path = urllib.parse.urlsplit(self.path).path
        invoke = INVOKE.match(path)
        if invoke and urllib.parse.unquote(invoke.group(1)).startswith("throttled-"):
            if b"always-throttled" in body or count("invoke " + hashlib.sha256(body).hexdigest()) < 2:
                return self.throttle()
        tags = TAGS.match(path)
        if tags and ":function:vanished-" in urllib.parse.unquote(tags.group(1)):
            return self.not_found(urllib.parse.unquote(tags.group(1)))
        bucket, _, key = path.lstrip("/").partition("/")
        if key and bucket.startswith("broken-"):
            return self.fault(500)
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        if key and bucket.startswith("partfail-") and query.get("partNumber") == ["3"]:
            return self.fault(500)
        if key and bucket.startswith("slowdown-") and count(self.command + path) < 2:
            return self.fault(503)
        upstream = http.client.HTTPConnection(UPSTREAM.hostname, UPSTREAM.port, timeout=60)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            headers["Content-Length"] = str(len(body))
        upstream.request(self.command, self.path, body=body if body or self.command in ("PUT", "POST") else None,
                         headers=headers)
        answer = upstream.getresponse()
        data = answer.read()
        self.record(answer.status)
        self.send_response(answer.status)
        for name, value in answer.getheaders():
            if name.lower() not in HOP and name.lower() != "content-length":
                self.send_header(name, value)
        # A HEAD answer's length is the object's, not that of the (empty) body.
        length = answer.getheader("Content-Length", "0") if self.command == "HEAD" else str(len(data))
        self.send_header("Content-Length", length)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        upstream.close()

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = handle_any


ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
