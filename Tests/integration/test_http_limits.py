"""HTTP servers with limits (issue 12): idle HTTP connections must never stop DICOM.

The bridge runs as a system service often does, with an open-file limit of 1,024
(`prlimit --nofile=1024:1024`). Floods of idle TCP connections to the ledger's HTTP port (and
connections to the mutual-TLS peer port that never complete their handshake) must leave it able
to receive an instance from DCMTK's storescu and to answer a fresh `GET /checkpoint`:

- a cap per remote address: 1,100 idle connections from one address keep at most
  httpMaxConnectionsPerClient of them, the rest are closed at once (observed as EOF);
- a cap per server sized from the file descriptors: 1,100 idle connections from 50 addresses
  (each under the per-address cap) keep at most the server's cap, sized at start from the
  open-file limit minus the reserve for DICOM and the store (the log says both);
- a TLS handshake timeout on the peer port: connections that never send a ClientHello are closed
  although the HTTP idle timeout is far away;
- an HTTP idle timeout; a request head beyond httpMaxHeaderBytes answered 431; a body beyond
  httpMaxBodyBytes refused (413 before a byte of it is read, or the connection closed when a
  chunked body grows beyond it) instead of being read.

The idle connections come from other loopback addresses (127.0.0.2, 127.0.1.x: all of 127/8 is
the loopback on Linux) so that the fresh requests from 127.0.0.1 are another client.
"""

import errno
import json
import os
import re
import resource
import select
import socket
import time
import urllib.request

import pytest

import harness

pytestmark = [pytest.mark.bridge, pytest.mark.netns]

PRLIMIT = "/usr/bin/prlimit"
FD_LIMIT = 1024
FLOOD = 1100
SETTLE_TIMEOUT = 60.0  # seconds for the bridge to deal with a flood; it takes well under one


# == helpers ========================================================================================

@pytest.fixture(scope="module", autouse=True)
def enough_descriptors():
    """This process holds the floods' sockets itself: raise its own soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 3 * FLOOD + 512
    if soft != resource.RLIM_INFINITY and soft < want:
        new = want if hard == resource.RLIM_INFINITY else min(want, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert soft == resource.RLIM_INFINITY or soft >= want, \
        "the test needs %d open files, its hard limit allows %s" % (want, hard)


def configure(bridge, **keys):
    """Set keys in the home's config.json (before serve starts)."""
    path = os.path.join(bridge.home, "config.json")
    with open(path, encoding="utf-8") as f:
        config = json.load(f)
    config.update(keys)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2)


def start_limited(bridge, nofile=FD_LIMIT):
    """`serve` under prlimit --nofile=N:N (soft and hard), as a service with that limit runs."""
    assert os.path.exists(PRLIMIT), "util-linux prlimit is needed at %s" % PRLIMIT
    start = bridge.log_size()
    bridge._start([PRLIMIT, "--nofile=%d:%d" % (nofile, nofile), "--", bridge.binary, "serve", "--home", bridge.home,
                   "--port", str(bridge.port)])
    bridge.wait_for_log("listening", start=start)
    with open("/proc/%d/limits" % bridge.proc.pid, encoding="utf-8") as f:
        line = next(l for l in f if l.startswith("Max open files"))
    assert line.split()[3:5] == [str(nofile), str(nofile)], line
    return start


def logged_budget(bridge, start=0):
    """The metadata of the bridge's "file descriptors budgeted" line, as a dict."""
    text = bridge.log_text()[start:]
    line = next((l for l in text.splitlines() if "file descriptors budgeted" in l), None)
    assert line, "the bridge logged no file descriptor budget:\n" + text[-3000:]
    return dict(re.findall(r"([a-z-]+)=(\S+)", line))


def open_idle(port, count, sources):
    """count non-blocking TCP connections to 127.0.0.1:port, spread over the source addresses,
    that never send a byte."""
    socks = []
    for i in range(count):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        s.bind((sources[i % len(sources)], 0))
        err = s.connect_ex(("127.0.0.1", port))
        assert err in (0, errno.EINPROGRESS), "connect: %s" % os.strerror(err)
        socks.append(s)
    return socks


def flood(port, count, sources, kept):
    """Open `count` idle connections in batches of 100 (under the listen backlog of 256, so that
    the kernel never drops a SYN and leaves a connection half-open on our side), waiting after
    each batch until the server has closed all but kept(opened) of them. Returns (sockets, the
    set closed by the server); the caller checks how many were closed."""
    socks, closed = [], set()
    while len(socks) < count:
        socks += open_idle(port, min(100, count - len(socks)), sources)
        want = len(socks) - kept(len(socks))
        closed |= closed_by_server([s for s in socks if s not in closed], want - len(closed))
        if len(closed) < want:
            break  # the caller's assertion says how many
    return socks, closed


def closed_by_server(socks, want, timeout=SETTLE_TIMEOUT):
    """Wait until at least `want` of the sockets have seen EOF (or a reset) from the server;
    returns the set of closed ones (which may be fewer if the timeout passes)."""
    closed = set()
    poller = select.poll()
    by_fd = {}
    for s in socks:
        poller.register(s, select.POLLIN | select.POLLHUP | select.POLLERR)
        by_fd[s.fileno()] = s
    deadline = time.monotonic() + timeout
    while len(closed) < want and time.monotonic() < deadline:
        for fd, _ in poller.poll(200):
            s = by_fd[fd]
            try:
                data = s.recv(4096)
            except BlockingIOError:
                continue
            except (ConnectionResetError, ConnectionRefusedError, OSError):
                data = b""
            if data == b"":
                closed.add(s)
                poller.unregister(fd)
    return closed


def close_all(socks):
    for s in socks:
        s.close()


def get_checkpoint(bridge):
    """A fresh GET /checkpoint on the ledger port: (status, body)."""
    with urllib.request.urlopen("http://127.0.0.1:%d/checkpoint" % bridge.http_port, timeout=30) as r:
        return r.status, r.read().decode()


def store_one(bridge, path):
    r = harness.storescu(bridge.port, bridge.ae_title, [path])
    assert r.returncode == 0, "storescu failed beside the idle connections:\n%s\n%s" % (r.stdout[-2000:], r.stderr[-2000:])
    assert bridge.wait_for_instances(1) >= 1
    harness.check_stored(bridge, path)


def raw_request(port, data, read_timeout=30):
    """Send bytes on a new connection to the ledger port; returns (response bytes, closed by server)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=read_timeout)
    try:
        s.sendall(data)
        response = b""
        closed = False
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                closed = True
                break
            except socket.timeout:
                break
            if not chunk:
                closed = True
                break
            response += chunk
            if b"\r\n\r\n" in response and b"Connection: close" not in response and b"connection: close" not in response:
                head, _, body = response.partition(b"\r\n\r\n")
                m = re.search(rb"(?i)content-length: *(\d+)", head)
                if m and len(body) >= int(m.group(1)):
                    break
        return response, closed
    finally:
        s.close()


def status_of(response):
    m = re.match(rb"HTTP/1\.[01] (\d{3})", response)
    assert m, "no HTTP response: %r" % response[:200]
    return int(m.group(1))


# == tests ==========================================================================================

def test_idle_floods_leave_dicom_and_a_fresh_checkpoint_request_working(node_factory, small_files):
    """Under an open-file limit of 1,024: 1,100 idle connections from one address, then from 50
    addresses, and connections to the peer port that never handshake. storescu still stores
    (Success, indexed, bit for bit) and a fresh GET /checkpoint from another address answers."""
    node = node_factory("limits-node")
    per_client = 32
    configure(node, httpIdleTimeoutSeconds=600, httpMaxConnectionsPerClient=per_client, tlsHandshakeTimeoutSeconds=2,
              maxAssociations=16)
    log_start = start_limited(node)
    budget = logged_budget(node, log_start)
    assert budget["open-file-limit"] == str(FD_LIMIT), budget
    assert budget["http-servers"] == "2", budget
    cap = int(budget["http-connections-per-server"])
    reserve = int(budget["reserved-for-dicom-and-store"])
    # The reserve is kept: both servers together never hold more than what it leaves.
    assert 8 <= cap and 2 * cap <= FD_LIMIT - reserve, budget
    assert cap < FLOOD // 2, budget
    files = sorted(small_files)
    status, note = get_checkpoint(node)
    assert status == 200 and note.split("\n")[0] == "limits-node", note

    # -- 1: 1,100 idle connections from one address; 40 that never handshake on the peer port.
    silent_tls = open_idle(node.peer_port, 40, ["127.0.0.3"])
    socks, closed = flood(node.http_port, FLOOD, ["127.0.0.2"], kept=lambda n: min(n, per_client))
    try:
        assert len(socks) == FLOOD and len(closed) == FLOOD - per_client, \
            "%d of %d idle connections from one address closed at once; want all but the %d of the per-client cap" \
            % (len(closed), FLOOD, per_client)
        store_one(node, files[0])
        status, note = get_checkpoint(node)
        assert status == 200 and note.split("\n")[0] == "limits-node", note
        # The connections kept stay open: the per-client cap, not the idle timeout (600 s), closed the rest.
        assert not closed_by_server([s for s in socks if s not in closed], 1, timeout=1.0)
        # The peer port closes every connection that has not completed its handshake (2 s),
        # long before the HTTP idle timeout (600 s) would. 8 of the 40 were refused by the cap.
        tls_closed = closed_by_server(silent_tls, len(silent_tls))
        assert len(tls_closed) == len(silent_tls), \
            "%d of %d never-handshaking peer-port connections closed" % (len(tls_closed), len(silent_tls))
        assert "HTTP connection refused: this client's connection cap (%d) is reached" % per_client in node.log_text()
    finally:
        close_all(socks)
        close_all(silent_tls)

    # -- 2: 1,100 idle connections from 50 addresses, each under the per-client cap: the
    # server's cap (sized from the descriptors) holds, the rest are closed at once.
    sources = ["127.0.1.%d" % i for i in range(1, 51)]
    assert FLOOD // len(sources) < per_client
    socks, closed = flood(node.http_port, FLOOD, sources, kept=lambda n: min(n, cap))
    try:
        assert len(socks) == FLOOD and len(closed) >= FLOOD - cap, \
            "%d of %d idle connections from %d addresses closed; the server's cap is %d" \
            % (len(closed), FLOOD, len(sources), cap)
        store_one(node, files[1])
        assert "HTTP connection refused: the server's connection cap (%d) is reached" % cap in node.log_text()
    finally:
        close_all(socks)
    # Once the flood is gone, its places are free again.
    status, note = get_checkpoint(node)
    assert status == 200 and note.split("\n")[0] == "limits-node", note


def test_idle_timeout_header_and_body_limits(bridge_factory):
    """Idle connections are closed after httpIdleTimeoutSeconds; a request head beyond
    httpMaxHeaderBytes is answered 431; a body beyond httpMaxBodyBytes is refused, not read."""
    bridge = bridge_factory(start=False)
    configure(bridge, httpIdleTimeoutSeconds=2, httpMaxHeaderBytes=16384, httpMaxBodyBytes=65536)
    bridge.start()
    port = bridge.http_port
    request = b"GET /checkpoint HTTP/1.1\r\nHost: 127.0.0.1\r\n"

    # Idle timeout: a connection that never sends, and one that did a request and keeps alive.
    silent = socket.create_connection(("127.0.0.1", port), timeout=60)
    used = socket.create_connection(("127.0.0.1", port), timeout=60)
    try:
        used.sendall(request + b"\r\n")
        response = b""
        while b"\r\n\r\n" not in response:
            response += used.recv(65536)
        assert status_of(response) == 200
        for s in (silent, used):
            s.setblocking(False)
        closed = closed_by_server([silent, used], 2)
        assert closed == {silent, used}, "the idle connections were not closed by the server within %.0f s" % SETTLE_TIMEOUT
    finally:
        silent.close()
        used.close()

    # Header limit: 8 KiB of headers pass, 64 KiB are answered 431 and the connection closed.
    response, _ = raw_request(port, request + b"X-Filler: " + b"a" * 8192 + b"\r\n\r\n")
    assert status_of(response) == 200, response[:200]
    response, closed = raw_request(port, request + b"X-Filler: " + b"a" * 65536 + b"\r\n\r\n")
    assert status_of(response) == 431, response[:200]
    assert closed

    # A body announced beyond the limit: 413 before a byte of it is sent, and the connection closed.
    response, closed = raw_request(port, request + b"Content-Length: 10737418240\r\n\r\n")
    assert status_of(response) == 413, response[:200]
    assert closed

    # A chunked body growing beyond the limit: the connection is closed instead of the body being
    # read on (today's servers would read all 64 MiB after answering the GET).
    s = socket.create_connection(("127.0.0.1", port), timeout=60)
    sent = 0
    refused = False
    try:
        s.sendall(request + b"Transfer-Encoding: chunked\r\n\r\n")
        chunk = b"%x\r\n" % 65536 + b"b" * 65536 + b"\r\n"
        while sent < 64 << 20:
            try:
                s.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                refused = True
                break
            sent += 65536
        if not refused:
            # Everything fit in the socket buffers: the server must still have closed the connection.
            s.settimeout(SETTLE_TIMEOUT)
            try:
                while s.recv(65536):
                    pass
                s.sendall(b"0\r\n\r\n")
                s.sendall(b"0\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):
                refused = True
    finally:
        s.close()
    assert refused, "the server read %d MiB of a chunked body beyond the %d-byte limit" % (sent >> 20, 65536)
    # And the server is none the worse for it.
    status, note = get_checkpoint(bridge)
    assert status == 200
