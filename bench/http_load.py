"""Closed-loop HTTP/1.1 load generator (standard library + uvloop only).

Why not httpx/aiohttp: on a 2-core machine the client shares the CPU with the server, and those
clients spend several times more CPU per request than a fast server does, so they would measure
themselves. Here each connection is a bare `asyncio.Protocol` with a small incremental response
parser; a Content-Length body is only counted, never copied.

Model (like wrk): `concurrency` persistent keep-alive connections, each sending one GET, reading
the whole response, and sending the next one at once (round-robin over the paths). A response is
recorded when it *completes* inside the measured window [start + warmup, start + duration], so
`rps` is completions / window length with no edge bias. Every completed response counts in
`requests` and the latencies whatever its status; statuses >= 400 and connection failures are
also counted in `errors` / `errors_by_status`. Requests still in flight at the deadline are
dropped, not counted.

Run `python bench/http_load.py --help` for the CLI; `run_load(...)` is the API.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing as mp
import queue
import sys
import time
from array import array
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

try:
    import uvloop
except ImportError:  # still works, just slower: the numbers then say more about the client
    uvloop = None  # type: ignore[assignment]

MAX_HEAD = 64 * 1024  # a response head larger than this is treated as a protocol error
WATCHDOG_TICK_S = 0.1
START_TIMEOUT_S = 60.0  # worker processes: spawn + imports

# parser states
_HEAD, _BODY, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_CRLF, _TRAILERS, _UNTIL_CLOSE, _DONE = range(8)


class _Failure(Exception):
    """A request that produced no complete response; `kind` is its key in errors_by_status."""

    kind = "error"


class _Closed(_Failure):
    kind = "closed"

    def __init__(self, got_bytes: bool) -> None:
        super().__init__("connection closed before the response was complete")
        self.got_bytes = got_bytes


class _Timeout(_Failure):
    kind = "timeout"


class _Protocol(_Failure):
    kind = "protocol"


class _Deadline(Exception):
    """The run is over while a request was in flight: dropped, not an error."""


class _Conn(asyncio.Protocol):
    """One keep-alive connection with at most one request in flight.

    The parser is incremental and keeps its position across `data_received` calls, so a large
    body arriving in many pieces costs O(size) and, for Content-Length bodies, no copies.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, registry: set[_Conn]) -> None:
        self._loop = loop
        self._registry = registry
        self.transport: asyncio.Transport | None = None
        self.lost = False  # closed, or closing on our side: never send on it again
        self.sent_at = 0.0  # perf_counter of the in-flight request, 0.0 when idle
        self.requests_done = 0
        self._waiter: asyncio.Future[tuple[int, int]] | None = None
        self._abort_exc: BaseException | None = None
        self._buf = bytearray()
        self._state = _DONE
        self._status = 0
        self._remaining = 0
        self._body = 0
        self._got_bytes = False
        self.keep_alive = True

    # -- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._registry.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._registry.discard(self)
        if self._state == _UNTIL_CLOSE and self._abort_exc is None:
            self._finish()  # a body without length or chunking ends at close
            return
        self._fail(self._abort_exc or _Closed(self._got_bytes))

    def data_received(self, data: bytes) -> None:  # noqa: C901 - one state machine
        state = self._state
        if state == _DONE:  # nothing asked: the server is confused, do not trust the connection
            self.abort(_Protocol("unsolicited data"))
            return
        self._got_bytes = True
        if state == _BODY and not self._buf:  # fast path: count the bytes, do not keep them
            n = len(data)
            if n < self._remaining:
                self._remaining -= n
                self._body += n
                return
            self._body += self._remaining
            extra = n - self._remaining
            self._remaining = 0
            self._finish()
            if extra:
                self.abort(_Protocol("bytes after the body"))
            return
        self._buf += data
        try:
            self._parse()
        except (ValueError, IndexError) as exc:
            self.abort(_Protocol(f"bad response: {exc}"))

    # -- client side
    def request(self, data: bytes) -> asyncio.Future[tuple[int, int]]:
        """Send one request; the future gives (status, body bytes) or raises a _Failure."""
        waiter = self._waiter = self._loop.create_future()
        self._state = _HEAD
        self._buf.clear()
        self._body = 0
        self._got_bytes = False
        self.sent_at = time.perf_counter()
        transport = self.transport
        if self.lost or transport is None or transport.is_closing():
            # the peer reset a fresh connection before connection_lost ran: uvloop would raise
            self._fail(_Closed(False))
        else:
            transport.write(data)
        return waiter

    def abort(self, exc: BaseException) -> None:
        """Drop the connection now; an in-flight request fails with `exc`."""
        if self._abort_exc is None:
            self._abort_exc = exc
        if self.transport is not None and not self.transport.is_closing():
            self.lost = True
            self.transport.abort()  # connection_lost follows and fails the waiter
        else:
            self._fail(exc)

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.lost = True
            self.transport.close()

    # -- parser
    def _parse(self) -> None:
        buf = self._buf
        while True:
            state = self._state
            if state == _HEAD:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    if len(buf) > MAX_HEAD:
                        raise ValueError("response head too large")
                    return
                head = bytes(buf[:end])
                del buf[: end + 4]
                self._parse_head(head)
            elif state == _BODY:
                if not self._take(buf):
                    return
                self._finish()
            elif state == _CHUNK_SIZE:
                end = buf.find(b"\r\n")
                if end < 0:
                    return
                size = int(bytes(buf[:end]).split(b";", 1)[0].strip(), 16)
                del buf[: end + 2]
                if size:
                    self._remaining = size
                    self._state = _CHUNK_DATA
                else:
                    self._state = _TRAILERS
            elif state == _CHUNK_DATA:
                if not self._take(buf):
                    return
                self._state = _CHUNK_CRLF
            elif state == _CHUNK_CRLF:
                if len(buf) < 2:
                    return
                if buf[:2] != b"\r\n":
                    raise ValueError("missing CRLF after a chunk")
                del buf[:2]
                self._state = _CHUNK_SIZE
            elif state == _TRAILERS:
                end = buf.find(b"\r\n")
                if end < 0:
                    return
                del buf[: end + 2]
                if end == 0:  # the empty line ends the trailers
                    self._finish()
            elif state == _UNTIL_CLOSE:
                self._body += len(buf)
                buf.clear()
                return
            else:  # _DONE
                if buf:
                    self.abort(_Protocol("bytes after the response"))
                return

    def _take(self, buf: bytearray) -> bool:
        """Count (never copy) body bytes still owed; True once the body or chunk is complete."""
        n = min(len(buf), self._remaining)
        self._remaining -= n
        self._body += n
        del buf[:n]
        return not self._remaining

    def _parse_head(self, head: bytes) -> None:
        lines = head.split(b"\r\n")
        version, status_s, *_ = lines[0].split(b" ", 2)
        status = int(status_s)
        length: int | None = None
        chunked = False
        conn_header = b""
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif name == b"connection":
                conn_header = value.strip().lower()
        if 100 <= status < 200 and status != 101:
            return  # interim response (100 Continue, 103 Early Hints): the real one follows
        self._status = status
        if version == b"HTTP/1.0":
            self.keep_alive = conn_header == b"keep-alive"
        else:
            self.keep_alive = conn_header != b"close"
        if status in (204, 304):
            self._finish()
        elif chunked:
            self._state = _CHUNK_SIZE
        elif length is not None:
            self._remaining = length
            self._state = _BODY
            if length == 0:
                self._finish()
        else:
            self.keep_alive = False
            self._state = _UNTIL_CLOSE

    def _finish(self) -> None:
        self._state = _DONE
        self.sent_at = 0.0
        self.requests_done += 1
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result((self._status, self._body))

    def _fail(self, exc: BaseException) -> None:
        self._state = _DONE
        self.sent_at = 0.0
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)


@dataclass
class _Shard:
    """What one process measured; merged by `_summarize`."""

    latencies_ms: array = field(default_factory=lambda: array("d"))
    body_bytes: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    window_s: float = 0.0
    retried: int = 0  # requests resent once after the server closed a reused connection


def _build_requests(host: str, port: int, paths: list[str], headers: dict[str, str]) -> list[bytes]:
    """Encode every request once: the loop then only writes prebuilt bytes."""
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    if not any(k.lower() == "host" for k in headers):
        extra = f"Host: {host}:{port}\r\n" + extra
    return [f"GET {p} HTTP/1.1\r\n{extra}\r\n".encode("latin-1") for p in paths]


class _Runner:
    """All connections of one process, sharing one deadline and one watchdog."""

    def __init__(self, host: str, port: int, requests: list[bytes], concurrency: int,
                 first_conn: int, duration_s: float, warmup_s: float,
                 request_timeout_s: float, connect_timeout_s: float) -> None:
        self.host, self.port = host, port
        self.requests = requests
        self.concurrency = concurrency
        self.first_conn = first_conn  # global index of this process's first connection
        self.duration_s, self.warmup_s = duration_s, warmup_s
        self.request_timeout_s = request_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.conns: set[_Conn] = set()
        self.shard = _Shard()
        self.start = self.record_from = self.deadline = 0.0

    async def run(self) -> _Shard:
        self.start = time.perf_counter()
        self.record_from = self.start + self.warmup_s
        self.deadline = self.start + self.duration_s
        self.shard.window_s = self.deadline - self.record_from
        tasks = [asyncio.ensure_future(self._connection(self.first_conn + i))
                 for i in range(self.concurrency)]
        watchdog = asyncio.ensure_future(self._watchdog())
        # every connection loop is bounded by the deadline; the grace period is a backstop
        done, pending = await asyncio.wait(tasks, timeout=self.duration_s + 5.0)
        for t in pending:
            t.cancel()
        watchdog.cancel()
        await asyncio.gather(*tasks, watchdog, return_exceptions=True)
        for t in done:
            if not t.cancelled() and t.exception() is not None:
                raise t.exception()  # type: ignore[misc]
        for c in list(self.conns):
            c.abort(_Deadline())
        return self.shard

    def _error(self, kind: str) -> None:
        now = time.perf_counter()
        if self.record_from <= now <= self.deadline:
            self.shard.errors[kind] += 1

    async def _connect(self) -> _Conn:
        """Connect within the connect timeout; raise _Deadline if the run ends first."""
        loop = asyncio.get_running_loop()
        remaining = self.deadline - time.perf_counter()
        try:
            _, proto = await asyncio.wait_for(
                loop.create_connection(lambda: _Conn(loop, self.conns), self.host, self.port),
                max(0.0, min(self.connect_timeout_s, remaining)))
        except asyncio.TimeoutError:
            if remaining <= self.connect_timeout_s:  # cut short by the deadline: not an error
                raise _Deadline() from None
            raise
        return proto  # type: ignore[return-value]

    async def _connection(self, index: int) -> None:
        """One closed loop: connect, GET, read, repeat; reconnect whenever the server closes."""
        requests, n = self.requests, len(self.requests)
        latencies, errors = self.shard.latencies_ms, self.shard.errors
        record_from, deadline = self.record_from, self.deadline
        perf = time.perf_counter
        i = index % n
        conn: _Conn | None = None
        retried = False
        while perf() < deadline:
            if conn is None or conn.lost:
                try:
                    conn = await self._connect()
                except _Deadline:
                    break
                except (OSError, asyncio.TimeoutError):
                    conn = None
                    if perf() >= deadline:
                        break
                    self._error("connect")
                    # a dead server refuses at once: back off instead of spinning
                    await asyncio.sleep(max(0.0, min(0.05, deadline - perf())))
                    continue
            t0 = perf()
            try:
                status, nbytes = await conn.request(requests[i])
            except _Deadline:
                break
            except _Closed as exc:
                # a reused keep-alive connection closed by the server before it answered: the
                # usual idle-close race, so retry the same request once on a new connection
                reused = conn.requests_done > 0
                conn = None
                if reused and not exc.got_bytes and not retried:
                    retried = True
                    if record_from <= perf() <= deadline:
                        self.shard.retried += 1
                    continue
                retried = False
                self._error(exc.kind)
                i = (i + 1) % n
                continue
            except _Failure as exc:
                conn.abort(exc)
                conn = None
                retried = False
                self._error(exc.kind)
                i = (i + 1) % n
                continue
            t1 = perf()
            retried = False
            i = (i + 1) % n
            if record_from <= t1 <= deadline:
                latencies.append((t1 - t0) * 1000.0)
                self.shard.body_bytes += nbytes
                if status >= 400:
                    errors[str(status)] += 1
            if not conn.keep_alive:
                conn.close()
                conn = None
        if conn is not None:
            conn.abort(_Deadline())

    async def _watchdog(self) -> None:
        """Fail requests older than the request timeout; at the deadline, drop every connection."""
        while True:
            now = time.perf_counter()
            if now >= self.deadline:
                for c in list(self.conns):
                    c.abort(_Deadline())
                return
            limit = now - self.request_timeout_s
            for c in list(self.conns):
                if c.sent_at and c.sent_at < limit:
                    c.abort(_Timeout(f"no complete response in {self.request_timeout_s} s"))
            await asyncio.sleep(min(WATCHDOG_TICK_S, self.deadline - now))


def _run_shard(host: str, port: int, requests: list[bytes], concurrency: int, first_conn: int,
               duration_s: float, warmup_s: float, request_timeout_s: float,
               connect_timeout_s: float) -> _Shard:
    runner = _Runner(host, port, requests, concurrency, first_conn, duration_s, warmup_s,
                     request_timeout_s, connect_timeout_s)
    if uvloop is not None:
        return uvloop.run(runner.run())
    return asyncio.run(runner.run())


def _worker(out: Any, go: Any, index: int, args: tuple[Any, ...]) -> None:
    """Process entry point: report ready, then start when every worker is up, so that all
    measured windows cover the same time."""
    try:
        out.put(("ready", index, None))
        if not go.wait(timeout=START_TIMEOUT_S):
            return  # the parent gave up
        shard = _run_shard(*args)
        out.put(("done", index, (shard.latencies_ms.tobytes(), shard.body_bytes,
                                 dict(shard.errors), shard.window_s, shard.retried)))
    except BaseException as exc:  # report it: a silent worker would leave the parent waiting
        out.put(("failed", index, f"{type(exc).__name__}: {exc}"))


def _collect(out: Any, procs: list[Any], kind: str, timeout_s: float) -> dict[int, Any]:
    """One `kind` message per worker; fail fast if a worker dies or reports a failure."""
    got: dict[int, Any] = {}
    end_by = time.monotonic() + timeout_s
    while len(got) < len(procs):
        if time.monotonic() > end_by:
            raise RuntimeError(f"load workers: {len(procs) - len(got)} did not report {kind!r} "
                               f"in {timeout_s:.0f} s")
        try:
            what, index, payload = out.get(timeout=0.2)
        except queue.Empty:
            dead = [p.exitcode for k, p in enumerate(procs) if k not in got and not p.is_alive()]
            if dead and out.empty():
                raise RuntimeError(f"load worker exited early (exit codes {dead}); a caller "
                                   "script needs the `if __name__ == '__main__':` guard") from None
            continue
        if what == "failed":
            raise RuntimeError(f"load worker {index} failed: {payload}")
        if what == kind:
            got[index] = payload
    return got


def _run_processes(host: str, port: int, requests: list[bytes], concurrency: int,
                   processes: int, duration_s: float, warmup_s: float,
                   request_timeout_s: float, connect_timeout_s: float) -> list[_Shard]:
    ctx = mp.get_context("spawn")  # no fork: the caller may have threads or a running loop
    out = ctx.Queue()
    go = ctx.Event()
    sizes = [concurrency // processes + (1 if k < concurrency % processes else 0)
             for k in range(processes)]
    procs = []
    first = 0
    for k, size in enumerate(sizes):
        args = (host, port, requests, size, first, duration_s, warmup_s, request_timeout_s,
                connect_timeout_s)
        first += size
        p = ctx.Process(target=_worker, args=(out, go, k, args), daemon=True)
        p.start()
        procs.append(p)
    try:
        _collect(out, procs, "ready", START_TIMEOUT_S)  # spawn + imports: slow on a busy box
        go.set()
        done = _collect(out, procs, "done", duration_s + 30.0)
        shards = []
        for k in range(processes):
            raw, body_bytes, errors, window_s, retried = done[k]
            latencies = array("d")
            latencies.frombytes(raw)
            shards.append(_Shard(latencies, body_bytes, Counter(errors), window_s, retried))
        return shards
    finally:
        for p in procs:
            p.join(timeout=5.0)
            if p.is_alive():
                p.terminate()
                p.join()


def _percentile(sorted_values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), on a sorted list."""
    pos = (len(sorted_values) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def _summarize(shards: list[_Shard], concurrency: int, processes: int) -> dict[str, Any]:
    latencies = sorted(v for s in shards for v in s.latencies_ms)
    errors: Counter[str] = Counter()
    for s in shards:
        errors.update(s.errors)
    window = sum(s.window_s for s in shards) / len(shards)
    n = len(latencies)

    def ms(value: float | None) -> float | None:
        return None if value is None else round(value, 3)

    return {
        "requests": n,
        "errors": sum(errors.values()),
        "errors_by_status": dict(sorted(errors.items())),
        "retried": sum(s.retried for s in shards),
        "rps": round(n / window, 1) if window > 0 else 0.0,
        "p50_ms": ms(_percentile(latencies, 0.50) if n else None),
        "p90_ms": ms(_percentile(latencies, 0.90) if n else None),
        "p99_ms": ms(_percentile(latencies, 0.99) if n else None),
        "max_ms": ms(latencies[-1] if n else None),
        "mean_ms": ms(sum(latencies) / n if n else None),
        "bytes_per_response": round(sum(s.body_bytes for s in shards) / n, 1) if n else 0.0,
        "measured_s": round(window, 3),
        "concurrency": concurrency,
        "processes": processes,
    }


def run_load(host: str, port: int, paths: list[str], headers: dict[str, str],
             concurrency: int = 50, duration_s: float = 10.0, warmup_s: float = 1.0,
             processes: int = 1, *, request_timeout_s: float = 10.0,
             connect_timeout_s: float = 5.0) -> dict[str, Any]:
    """Drive `concurrency` keep-alive connections at the server for `duration_s` seconds.

    The first `warmup_s` seconds (connection set-up, server warm-up) are not recorded.
    `processes > 1` splits the connections over that many spawned processes, each with its own
    event loop, for when one client core cannot keep up with the server.

    Returns requests, errors (total), errors_by_status ({"503": n, "connect": n, "closed": n,
    "timeout": n, "protocol": n}), retried (requests resent once because the server closed a
    reused keep-alive connection without answering; not errors), rps, p50/p90/p99/max/mean latency in ms (None when nothing
    completed), bytes_per_response (mean body bytes), measured_s, concurrency, processes.
    """
    if not paths:
        raise ValueError("paths is empty")
    if concurrency < 1 or processes < 1:
        raise ValueError("concurrency and processes must be >= 1")
    if not 0 <= warmup_s < duration_s:
        raise ValueError("need 0 <= warmup_s < duration_s")
    processes = min(processes, concurrency)
    requests = _build_requests(host, port, paths, headers)
    if processes == 1:
        shards = [_run_shard(host, port, requests, concurrency, 0, duration_s, warmup_s,
                             request_timeout_s, connect_timeout_s)]
    else:
        shards = _run_processes(host, port, requests, concurrency, processes, duration_s,
                                warmup_s, request_timeout_s, connect_timeout_s)
    return _summarize(shards, concurrency, processes)


def _parse_header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected 'Name: value', got {text!r}")
    return name.strip(), value.strip()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--path", action="append", required=True,
                    help="request target, repeatable (round-robin), e.g. /v1/x?a=1")
    ap.add_argument("--header", action="append", default=[], type=_parse_header,
                    help="'Name: value', repeatable")
    ap.add_argument("--concurrency", type=int, default=50)
    ap.add_argument("--duration", type=float, default=10.0, help="seconds, warm-up included")
    ap.add_argument("--warmup", type=float, default=1.0, help="seconds not recorded")
    ap.add_argument("--processes", type=int, default=1)
    ap.add_argument("--request-timeout", type=float, default=10.0)
    args = ap.parse_args(argv)
    result = run_load(args.host, args.port, args.path, dict(args.header),
                      concurrency=args.concurrency, duration_s=args.duration,
                      warmup_s=args.warmup, processes=args.processes,
                      request_timeout_s=args.request_timeout)
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
