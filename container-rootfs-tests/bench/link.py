"""A network link shaped like a Lambda function's to S3, for the benchmarks: every stand-in
here answers over loopback in well under a millisecond and at gigabytes a second, so a lazy
cold start (many small ranged reads) and an eager one (one long stream) would be compared on a
link that favours the eager pull's many bytes. docs/ and BENCHMARKS.md quote the figures this
models: S3's first byte "in the tens of milliseconds" for small requests (AWS whitepaper "Best
practices design patterns: optimizing Amazon S3 performance", timeouts and retries), and
400–700 Mbit/s from one function (shared/reference/performance.md, section 4).

`BENCH_LINK=25ms,70MB/s` (latency, rate): a TCP proxy on 127.0.0.1 in front of the stand-in
that holds every byte the client sends for the latency (so each request is answered that much
later, as a server's first-byte time is) and sends the server's bytes back at the rate, one
shared link for all connections, in slices of at most 16 KiB taken in turn, as a function's
one network interface is shared by its connections. The proxy runs in a thread of the
benchmark's own process; its cost (a fraction of one core at 70 MB/s) is paid by both pulls.
"""
import asyncio, re, threading

SLICE = 16 * 1024
CREDIT = 0.002


def parse(spec):
    """`25ms,70MB/s` → (seconds, bytes per second); SystemExit naming the variable if bad."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)ms\s*,\s*(\d+(?:\.\d+)?)MB/s\s*", spec or "")
    if not match or float(match[2]) <= 0:
        raise SystemExit(f"BENCH_LINK={spec!r}: expected LATENCYms,RATEMB/s, e.g. 25ms,70MB/s")
    return float(match[1]) / 1000, float(match[2]) * 1e6


class ShapedLink:
    """A proxy to 127.0.0.1:`port` with `latency` s on requests and `rate` B/s on answers;
    `endpoint` is its URL."""

    def __init__(self, port, latency, rate):
        self.upstream, self.latency, self.rate = port, latency, rate
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        threading.Thread(target=self._serve, args=(ready,), daemon=True).start()
        ready.wait()
        self.endpoint = f"http://127.0.0.1:{self.port}"

    def _serve(self, ready):
        asyncio.set_event_loop(self.loop)
        # The wire: one slice on it at a time, in the order the connections asked.
        self.wire = asyncio.Lock()
        self.wire_free = 0.0
        server = self.loop.run_until_complete(asyncio.start_server(self._connection, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        ready.set()
        self.loop.run_forever()

    async def _connection(self, client_r, client_w):
        try:
            server_r, server_w = await asyncio.open_connection("127.0.0.1", self.upstream)
        except OSError:
            client_w.close()
            return
        writers = (client_w, server_w)
        await asyncio.gather(self._pump(client_r, server_w, self._late, writers),
                             self._pump(server_r, client_w, self._on_wire, writers))

    async def _late(self, data, writer):
        """A request's bytes reach the server `latency` after they were sent (requests are
        small and a client waits for each answer, so one at a time is the model)."""
        await asyncio.sleep(self.latency)
        writer.write(data)

    async def _on_wire(self, data, writer):
        """An answer's bytes leave at the link's rate, a slice at a time."""
        for at in range(0, len(data), SLICE):
            piece = data[at:at + SLICE]
            async with self.wire:
                now = self.loop.time()
                # An idle link keeps a little credit, so that a timer's lateness (about a
                # millisecond per sleep) is made up rather than lost at every slice.
                self.wire_free = max(self.wire_free, now - CREDIT) + len(piece) / self.rate
                if self.wire_free - now > CREDIT:
                    await asyncio.sleep(self.wire_free - now)
            writer.write(piece)

    async def _pump(self, reader, writer, send, writers):
        """One direction: read, `send`, wait for the peer to take it (TCP's own back
        pressure, so a pull's stream waits on the link rather than in the proxy's memory).
        A peer that goes away (a run ends with its connections open) closes both."""
        try:
            while data := await reader.read(64 * 1024):
                await send(data, writer)
                await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()
        except (OSError, RuntimeError):
            for w in writers:
                w.close()


if __name__ == "__main__":
    # python3 link.py UPSTREAM_PORT 25ms,70MB/s: serves until killed, its URL on stdout (for
    # timing one cold start by hand: AWS_ENDPOINT_URL=that URL).
    import sys
    link = ShapedLink(int(sys.argv[1]), *parse(sys.argv[2]))
    print(link.endpoint, flush=True)
    threading.Event().wait()
