"""A Lambda Runtime API served on 127.0.0.1 for the benchmarks (bench_runtime.py,
bench_lazy.py): it hands out the events queued in `events` to `GET /invocation/next`, notes
each poll's time in `polls`, and puts each event's hand-out time (`("sent", t)`) and each
`POST` (`(path, t, body)`) in `replies`, so that a benchmark measures the runtime as Lambda
drives it."""
import json, queue, socket, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        super().setup()
        # Headers and body leave in separate writes: without this, Nagle's algorithm and the
        # client's delayed ACK add 40 ms to every exchange and measure nothing of ours.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, *args):
        pass

    def do_GET(self):
        peer = self.server.peer
        peer.polls.put(time.perf_counter())
        rid, body = peer.events.get()
        data = json.dumps(body).encode()
        self.send_response(200)
        for k, v in (("Lambda-Runtime-Aws-Request-Id", rid), ("Lambda-Runtime-Deadline-Ms", str(int((time.time() + 300) * 1000))),
                     ("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:us-east-1:0:function:bench"), ("Content-Length", str(len(data)))):
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()
        peer.replies.put(("sent", time.perf_counter()))

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(202)
        self.send_header("Content-Length", "0")
        self.end_headers()
        self.server.peer.replies.put((self.path, time.perf_counter(), body))


class RuntimeApiPeer:
    """The Runtime API on a free port of 127.0.0.1, served by a daemon thread."""

    def __init__(self):
        self.events, self.replies, self.polls = queue.Queue(), queue.Queue(), queue.Queue()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.peer = self
        self.server.handle_error = lambda *args: None  # killed runtimes drop their connections
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def address(self):
        """What `AWS_LAMBDA_RUNTIME_API` names."""
        return f"127.0.0.1:{self.server.server_port}"

    def forget(self):
        """Drops what is queued from earlier runtimes (polls, replies)."""
        for q in (self.replies, self.polls):
            while not q.empty():
                q.get()

    def stop(self, proc):
        """Ends a runtime and the poll it left waiting, and forgets what either left queued."""
        proc.kill()
        proc.wait()
        self.events.put(("drain", {}))
        time.sleep(0.3)
        self.forget()
