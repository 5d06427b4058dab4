#!/usr/bin/env python3
"""Attack run: how a legitimate client fares while hostile clients attack the server.

Starts the release `security-update-server` in dev mode (in memory, per-caller rate limit
off, scripts/bench-schema.json) pinned to core 0, then alternates runs on core 1:

- baseline: the legitimate client alone;
- attack: the same client while attackers hold idle TCP sockets, hold slow-header
  connections and send forged-signature tokens.

The legitimate client (127.0.0.2) sends PATCH /beta/me/security at a fixed rate on an open-loop
schedule over a few keep-alive connections. Latency runs from the send, or from the
*scheduled* send time for a request that had to wait for a connection (behind schedule), so a
stall also counts for the requests queued behind it (no coordinated omission), while the event
loop's timer oversleep (~1 ms) is not charged to the server. Each
connection writes its own member (riskProfile.cK = an increasing number), and after each run a
GET checks that every connection's last acknowledged value is stored (lost updates).

Attackers use 127.0.0.3 and up, at most PER_ADDR connections per source address, so the
server's per-address cap (256 by default) does not simply refuse them all. They run in their
own process at nice ATTACK_NICE, so on the shared load core the legitimate client is not
starved by the attack tooling itself (real attackers would be on other machines).

Prints a markdown table for benches/README.md on stdout, progress on stderr. Exit status 1 if
any run saw a 5xx or a lost update, 2 if the run could not be set up.

Environment (defaults in brackets):
  SERVER_BIN [target/release/security-update-server]   SCHEMA [scripts/bench-schema.json]
  SERVER_ARGS extra server flags, e.g. "--first-bytes-timeout 5"      RUST_LOG [server default]
  PAIRS [3]  DURATION seconds per run [10]  SETTLE seconds between runs [1]
  LEGIT_RATE requests/s [200]  LEGIT_CONNS [4]  LEGIT_TIMEOUT seconds per request [5]
  IDLE_SOCKETS [1000]  SLOW_CONNS [100]  SLOW_INTERVAL seconds per header byte [3]
  BAD_RATE forged tokens/s [500]  BAD_ADDRS [4]  BAD_CONNS per address [4]
  BAD_UNIQUE 1 = a new forged token each request, 0 = one forged token reused [1]
  PER_ADDR attacker connections per source address [200]  ATTACK_NICE [10]
  SERVER_CORE [0]  LOAD_CORE [1]  KEEP_LOGS 1 = keep the server log directory [0]
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import ctypes
import datetime
import json
import math
import os
import random
import resource
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PATH = "/beta/me/security"
LEGIT_ADDR = "127.0.0.2"
FIRST_ATTACK_OCTET = 3


# ---------------------------------------------------------------------------------------------
# configuration


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    return int(value) if value else default


def env_float(name: str, default: float) -> float:
    value = os.environ.get(name, "").strip()
    return float(value) if value else default


def config_from_env() -> dict:
    cfg = {
        "server_bin": os.environ.get("SERVER_BIN")
        or str(ROOT / "target" / "release" / "security-update-server"),
        "schema": os.environ.get("SCHEMA") or str(ROOT / "scripts" / "bench-schema.json"),
        "server_args": shlex.split(os.environ.get("SERVER_ARGS", "")),
        "pairs": env_int("PAIRS", 3),
        "duration": env_float("DURATION", 10.0),
        "settle": env_float("SETTLE", 1.0),
        "legit_rate": env_float("LEGIT_RATE", 200.0),
        "legit_conns": env_int("LEGIT_CONNS", 4),
        "legit_timeout": env_float("LEGIT_TIMEOUT", 5.0),
        "idle_sockets": env_int("IDLE_SOCKETS", 1000),
        "slow_conns": env_int("SLOW_CONNS", 100),
        "slow_interval": env_float("SLOW_INTERVAL", 3.0),
        "bad_rate": env_float("BAD_RATE", 500.0),
        "bad_addrs": env_int("BAD_ADDRS", 4),
        "bad_conns": env_int("BAD_CONNS", 4),
        "bad_unique": env_int("BAD_UNIQUE", 1) != 0,
        "per_addr": env_int("PER_ADDR", 200),
        "attack_nice": env_int("ATTACK_NICE", 10),
        "server_core": env_int("SERVER_CORE", 0),
        "load_core": env_int("LOAD_CORE", 1),
        "keep_logs": env_int("KEEP_LOGS", 0) != 0,
    }
    if cfg["pairs"] < 1 or cfg["duration"] <= 0 or cfg["legit_rate"] <= 0:
        raise SystemExit("PAIRS must be >= 1, DURATION and LEGIT_RATE > 0")
    if not 1 <= cfg["per_addr"] <= 250:
        raise SystemExit("PER_ADDR must be between 1 and 250 (the server allows 256 per address)")
    cfg["legit_conns"] = max(1, cfg["legit_conns"])
    cfg["bad_addrs"] = max(1, cfg["bad_addrs"])
    cfg["bad_conns"] = max(1, cfg["bad_conns"])
    # Source addresses: idle sockets, then slow-header connections, then forged tokens.
    octet = FIRST_ATTACK_OCTET
    n_idle = math.ceil(cfg["idle_sockets"] / cfg["per_addr"]) if cfg["idle_sockets"] > 0 else 0
    n_slow = math.ceil(cfg["slow_conns"] / cfg["per_addr"]) if cfg["slow_conns"] > 0 else 0
    n_bad = cfg["bad_addrs"] if cfg["bad_rate"] > 0 else 0
    cfg["idle_ips"] = [f"127.0.0.{octet + i}" for i in range(n_idle)]
    octet += n_idle
    cfg["slow_ips"] = [f"127.0.0.{octet + i}" for i in range(n_slow)]
    octet += n_slow
    cfg["bad_ips"] = [f"127.0.0.{octet + i}" for i in range(n_bad)]
    octet += n_bad
    if octet > 254:
        raise SystemExit("too many attacker addresses for 127.0.0.0/24; raise PER_ADDR")
    return cfg


def ip_range(ips: list[str]) -> str:
    if not ips:
        return "none"
    return ips[0] if len(ips) == 1 else f"{ips[0]}-{ips[-1].rsplit('.', 1)[1]}"


def raise_nofile() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 65536 if hard == resource.RLIM_INFINITY else min(65536, hard)
    if soft == resource.RLIM_INFINITY or soft >= want:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        return want
    except (ValueError, OSError):
        return soft


# ---------------------------------------------------------------------------------------------
# HTTP/1.1, by hand


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def build_request(method: str, host: str, token: str, body: bytes | None) -> bytes:
    lines = [f"{method} {PATH} HTTP/1.1", f"Host: {host}", f"Authorization: Bearer {token}"]
    if body is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode()
    return head + (body or b"")


def parse_head(head: bytes) -> tuple[int, dict[bytes, bytes]]:
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
        raise ValueError(f"bad status line {lines[0][:80]!r}")
    status = int(parts[1])
    headers: dict[bytes, bytes] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
    return status, headers


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[bytes, bytes], bytes, bool]:
    """Status, headers, body, and whether the connection must be closed after it."""
    while True:
        head = await reader.readuntil(b"\r\n\r\n")
        status, headers = parse_head(head)
        if status >= 200 or status == 101:
            break  # 1xx interim responses are skipped
    close = headers.get(b"connection", b"").lower() == b"close"
    if b"content-length" in headers:
        body = await reader.readexactly(int(headers[b"content-length"]))
    elif b"chunked" in headers.get(b"transfer-encoding", b"").lower():
        chunks = []
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";")[0].strip(), 16)
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":
                    pass  # trailers
                break
            chunks.append(await reader.readexactly(size))
            await reader.readexactly(2)
        body = b"".join(chunks)
    elif status in (204, 304):
        body = b""
    else:
        body = await reader.read(1 << 20)  # delimited by close
        close = True
    return status, headers, body, close


async def open_from(source: str, host: str, port: int, timeout: float):
    return await asyncio.wait_for(
        asyncio.open_connection(host, port, local_addr=(source, 0)), timeout
    )


def close_writer(writer) -> None:
    if writer is not None:
        try:
            writer.close()
        except Exception:  # noqa: BLE001 - best effort
            pass


def http_sync(addr: tuple[str, int], method: str, token: str, body: bytes | None,
              source: str = LEGIT_ADDR, timeout: float = 5.0) -> tuple[int, bytes]:
    """One request on its own connection (blocking, bounded by `timeout` in all)."""
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.bind((source, 0))
        sock.connect(addr)
        sock.sendall(build_request(method, f"{addr[0]}:{addr[1]}", token, body))
        data = b""
        while b"\r\n\r\n" not in data:
            if time.monotonic() > deadline:
                raise TimeoutError("response head")
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed before the response head: {data[:200]!r}")
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        status, headers = parse_head(head + b"\r\n\r\n")
        length = int(headers.get(b"content-length", b"0"))
        while len(rest) < length:
            if time.monotonic() > deadline:
                raise TimeoutError("response body")
            chunk = sock.recv(65536)
            if not chunk:
                break
            rest += chunk
        return status, rest[:length]


def forger(token: str, unique: bool):
    """Tokens with the real header (alg, kid) and claims but a made-up ES256 signature."""
    header, payload, _signature = token.split(".")
    claims = json.loads(b64url_decode(payload))
    salt = f"{os.getpid()}-{random.getrandbits(32):08x}"
    fixed = f"{header}.{payload}.{b64url(os.urandom(64))}"
    counter = 0

    def next_token() -> str:
        nonlocal counter
        if not unique:
            return fixed
        counter += 1
        forged = dict(claims, jti=f"forged-{salt}-{counter}")
        body = b64url(json.dumps(forged, separators=(",", ":")).encode())
        return f"{header}.{body}.{b64url(os.urandom(64))}"

    return next_token


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[min(len(sorted_values), rank) - 1]


# ---------------------------------------------------------------------------------------------
# the legitimate client (child process)


async def legit_main(cfg: dict) -> dict:
    loop = asyncio.get_running_loop()
    host, port, token = cfg["host"], cfg["port"], cfg["token"]
    rate, duration, timeout = cfg["legit_rate"], cfg["duration"], cfg["legit_timeout"]
    n_conns, base = cfg["legit_conns"], cfg["value_base"]
    host_header = f"{host}:{port}"

    conns: list = [None] * n_conns
    connect_ms: list[float] = []
    connect_errors = 0

    async def connect(k: int) -> bool:
        nonlocal connect_errors
        started = loop.time()
        try:
            conns[k] = await open_from(LEGIT_ADDR, host, port, timeout)
            connect_ms.append((loop.time() - started) * 1000)
            return True
        except (OSError, asyncio.TimeoutError):
            connect_errors += 1
            conns[k] = None
            return False

    await asyncio.gather(*(connect(k) for k in range(n_conns)))
    t0 = loop.time() + 0.05
    end = t0 + duration
    next_index = 0
    latencies: list[float] = []  # ms from the scheduled send time, or the send if on time
    send_lag: list[float] = []  # ms between the scheduled time and the send, when on time
    service: list[float] = []  # ms from the actual send time
    statuses: dict[str, int] = {}
    errors: dict[str, int] = {}
    history: dict[int, list[tuple[int, bool]]] = {k: [] for k in range(n_conns)}
    last_done = t0

    async def worker(k: int) -> None:
        nonlocal next_index, last_done
        while True:
            index = next_index
            scheduled = t0 + index / rate
            if scheduled >= end:
                return
            next_index += 1
            delay = scheduled - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            value = base + index + 1
            body = json.dumps({"riskProfile": {f"c{k}": value}}, separators=(",", ":")).encode()
            request = build_request("PATCH", host_header, token, body)
            sent = loop.time()
            # Behind schedule (this request waited for a connection to come free): latency
            # counts from the scheduled time. On time: from the send, so the event loop's
            # timer oversleep (about a millisecond) is not charged to the server.
            origin = scheduled if delay <= 0 else sent
            if delay > 0:
                send_lag.append((sent - scheduled) * 1000)
            status = 0
            try:
                if conns[k] is None and not await connect(k):
                    raise ConnectionError("reconnect failed")
                reader, writer = conns[k]

                async def round_trip():
                    writer.write(request)
                    await writer.drain()
                    return await read_response(reader)

                status, _headers, _body, close = await asyncio.wait_for(round_trip(), timeout)
                if close:
                    close_writer(writer)
                    conns[k] = None
                statuses[str(status)] = statuses.get(str(status), 0) + 1
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError,
                    asyncio.LimitOverrunError, ValueError) as error:
                kind = type(error).__name__
                errors[kind] = errors.get(kind, 0) + 1
                if conns[k] is not None:
                    close_writer(conns[k][1])
                conns[k] = None
            done = loop.time()
            last_done = max(last_done, done)
            latencies.append((done - origin) * 1000)
            service.append((done - sent) * 1000)
            history[k].append((value, 200 <= status < 300))

    try:
        await asyncio.gather(*(worker(k) for k in range(n_conns)))
    finally:
        for conn in conns:
            if conn is not None:
                close_writer(conn[1])
    window = max(duration, last_done - t0)
    last_acked: dict[str, int | None] = {}
    unacked_after: dict[str, list[int]] = {}
    for k, entries in history.items():
        acked = [value for value, ok in entries if ok]
        last = max(acked) if acked else None
        last_acked[str(k)] = last
        unacked_after[str(k)] = [v for v, ok in entries if not ok and (last is None or v > last)]
    ok_count = sum(n for s, n in statuses.items() if 200 <= int(s) < 300)
    return {
        "scheduled": next_index,
        "latencies": latencies,
        "service": service,
        "behind": next_index - len(send_lag),
        "send_lag_p99": percentile(sorted(send_lag), 0.99),
        "statuses": statuses,
        "errors": errors,
        "ok": ok_count,
        "window": window,
        "achieved": ok_count / window,
        "connect_ms": connect_ms,
        "connect_errors": connect_errors,
        "last_acked": last_acked,
        "unacked_after": unacked_after,
    }


# ---------------------------------------------------------------------------------------------
# the attackers (child process)


class AttackStats:
    def __init__(self) -> None:
        self.held_idle = 0
        self.held_slow = 0
        self.idle_connects = 0
        self.idle_closed_by_server = 0
        self.idle_refused = 0  # closed by the server within 0.5 s of connecting
        self.slow_connects = 0
        self.slow_closed_by_server = 0
        self.slow_answered = 0  # the server sent bytes (e.g. a 408 or 431)
        self.slow_bytes = 0
        self.connect_errors = 0
        self.bad_sent = 0
        self.bad_statuses: dict[str, int] = {}
        self.bad_errors = 0
        self.samples_idle: list[int] = []
        self.samples_slow: list[int] = []

    def snapshot(self) -> dict:
        return {k: (dict(v) if isinstance(v, dict) else v)
                for k, v in vars(self).items() if not k.startswith("samples")}


async def attack_main(cfg: dict, out) -> dict:
    loop = asyncio.get_running_loop()
    host, port = cfg["host"], cfg["port"]
    host_header = f"{host}:{port}"
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    hard_deadline = loop.time() + cfg["max_seconds"]
    loop.call_at(hard_deadline, stop.set)
    stats = AttackStats()
    sampling = False

    def running() -> bool:
        return not stop.is_set() and loop.time() < hard_deadline

    async def pause(seconds: float) -> None:
        try:
            await asyncio.wait_for(stop.wait(), seconds)
        except asyncio.TimeoutError:
            pass

    async def hold_idle(ip: str, start_delay: float) -> None:
        await pause(start_delay)
        while running():
            try:
                reader, writer = await open_from(ip, host, port, 5.0)
            except (OSError, asyncio.TimeoutError):
                stats.connect_errors += 1
                await pause(0.2)
                continue
            stats.idle_connects += 1
            stats.held_idle += 1
            opened = loop.time()
            try:
                await reader.read(1)  # sends nothing; returns when the server closes
                stats.idle_closed_by_server += 1
            except OSError:
                stats.idle_closed_by_server += 1
            finally:
                stats.held_idle -= 1
                close_writer(writer)
            if loop.time() - opened < 0.5:
                stats.idle_refused += 1
                await pause(0.1)

    async def hold_slow(ip: str, start_delay: float) -> None:
        interval = cfg["slow_interval"]
        await pause(start_delay)
        while running():
            try:
                reader, writer = await open_from(ip, host, port, 5.0)
            except (OSError, asyncio.TimeoutError):
                stats.connect_errors += 1
                await pause(0.2)
                continue
            stats.slow_connects += 1
            stats.held_slow += 1
            opened = loop.time()
            try:
                writer.write(f"GET {PATH} HTTP/1.1\r\nHost: x\r\n".encode())
                await writer.drain()
                prefix = b"X-Slow: "  # then "a" after "a", one byte at a time
                position = 0
                next_byte = loop.time() + random.uniform(0, interval)
                while running():
                    try:
                        data = await asyncio.wait_for(
                            reader.read(4096), max(0.01, next_byte - loop.time()))
                    except asyncio.TimeoutError:
                        writer.write(prefix[position:position + 1] or b"a")
                        await writer.drain()
                        position += 1
                        stats.slow_bytes += 1
                        next_byte += interval
                        continue
                    if data:
                        stats.slow_answered += 1
                    stats.slow_closed_by_server += 1
                    break
            except OSError:
                stats.slow_closed_by_server += 1
            finally:
                stats.held_slow -= 1
                close_writer(writer)
            if loop.time() - opened < 0.5:
                await pause(0.1)

    next_token = forger(cfg["token"], cfg["bad_unique"])
    bad_body = b'{"riskProfile":{"level":"high"}}'
    bad_t0 = loop.time()
    bad_index = 0

    async def send_bad(ip: str) -> None:
        nonlocal bad_index
        conn = None
        try:
            while running():
                index = bad_index
                bad_index += 1
                delay = bad_t0 + index / cfg["bad_rate"] - loop.time()
                if delay > 0:
                    await pause(delay)
                    if not running():
                        return
                try:
                    if conn is None:
                        conn = await open_from(ip, host, port, 5.0)
                    reader, writer = conn
                    writer.write(build_request("PATCH", host_header, next_token(), bad_body))
                    await writer.drain()
                    stats.bad_sent += 1
                    status, _h, _b, close = await asyncio.wait_for(read_response(reader), 5.0)
                    stats.bad_statuses[str(status)] = stats.bad_statuses.get(str(status), 0) + 1
                    if close:
                        close_writer(writer)
                        conn = None
                except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError,
                        asyncio.LimitOverrunError, ValueError):
                    stats.bad_errors += 1
                    if conn is not None:
                        close_writer(conn[1])
                    conn = None
                    await pause(0.05)
        finally:
            if conn is not None:
                close_writer(conn[1])

    async def sampler() -> None:
        while running():
            if sampling:
                stats.samples_idle.append(stats.held_idle)
                stats.samples_slow.append(stats.held_slow)
            await pause(0.1)

    tasks = []
    for i in range(cfg["idle_sockets"]):
        ip = cfg["idle_ips"][i // cfg["per_addr"]]
        tasks.append(asyncio.create_task(hold_idle(ip, i * 0.002)))
    for i in range(cfg["slow_conns"]):
        ip = cfg["slow_ips"][i // cfg["per_addr"]]
        tasks.append(asyncio.create_task(hold_slow(ip, i * 0.005)))
    for ip in cfg["bad_ips"]:
        for _ in range(cfg["bad_conns"]):
            tasks.append(asyncio.create_task(send_bad(ip)))
    tasks.append(asyncio.create_task(sampler()))

    # Ready once (nearly) every socket is held, or after READY_TIMEOUT anyway.
    ready_by = loop.time() + cfg["ready_timeout"]
    while running() and loop.time() < ready_by:
        if (stats.held_idle >= 0.98 * cfg["idle_sockets"]
                and stats.held_slow >= 0.98 * cfg["slow_conns"]):
            break
        await pause(0.05)
    await pause(0.5)  # let the forged-token stream reach its steady state
    before = stats.snapshot()
    window_start = loop.time()
    sampling = True
    out.write("READY " + json.dumps({"held_idle": stats.held_idle,
                                     "held_slow": stats.held_slow}) + "\n")
    out.flush()

    await stop.wait()
    window = loop.time() - window_start
    after = stats.snapshot()
    for task in tasks:
        task.cancel()
    await asyncio.wait(tasks, timeout=5)

    def delta(name: str):
        if isinstance(after[name], dict):
            return {k: v - before[name].get(k, 0) for k, v in after[name].items()
                    if v - before[name].get(k, 0)}
        return after[name] - before[name]

    result = {name: delta(name) for name in after if not name.startswith("held")}
    result.update({
        "window": window,
        "idle_min": min(stats.samples_idle, default=before["held_idle"]),
        "idle_mean": statistics.fmean(stats.samples_idle) if stats.samples_idle else 0,
        "slow_min": min(stats.samples_slow, default=before["held_slow"]),
        "slow_mean": statistics.fmean(stats.samples_slow) if stats.samples_slow else 0,
        "bad_rate_achieved": delta("bad_sent") / window if window > 0 else 0,
    })
    return result


def child_main(role: str, config_path: str) -> int:
    cfg = json.loads(Path(config_path).read_text())
    if role == "_attack":
        if cfg["attack_nice"]:
            os.nice(cfg["attack_nice"])
        result = asyncio.run(attack_main(cfg, sys.stdout))
    else:
        result = asyncio.run(legit_main(cfg))
    tmp = cfg["result_path"] + ".tmp"
    Path(tmp).write_text(json.dumps(result))
    os.replace(tmp, cfg["result_path"])
    return 0


# ---------------------------------------------------------------------------------------------
# the orchestrator


CHILDREN: list[subprocess.Popen] = []


def die_with_parent() -> None:
    """In the child before exec: get SIGKILL if the orchestrator dies (Linux prctl)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def spawn(cmd: list[str], stdout, stderr, env=None) -> subprocess.Popen:
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
                            env=env, start_new_session=True, preexec_fn=die_with_parent)
    CHILDREN.append(proc)
    return proc


def stop_process(proc: subprocess.Popen, grace: float) -> None:
    if proc.poll() is None:
        try:
            proc.terminate()
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            try:
                proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                pass
        except ProcessLookupError:
            pass
    if proc in CHILDREN:
        CHILDREN.remove(proc)


def cleanup() -> None:
    for proc in list(reversed(CHILDREN)):
        stop_process(proc, 4.0)


def wait_for_line(path: Path, prefix: str, proc: subprocess.Popen, timeout: float) -> str | None:
    """The first line of `path` starting with `prefix`, polling until `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            for line in path.read_text(errors="replace").splitlines():
                if line.startswith(prefix):
                    return line
        except FileNotFoundError:
            pass
        if proc.poll() is not None:
            return None
        time.sleep(0.05)
    return None


def server_sample(pid: int) -> tuple[int, int]:
    """Open descriptors and resident KiB of the server (0, 0 if unreadable)."""
    try:
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        rss = 0
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
        return fds, rss
    except OSError:
        return 0, 0


def fmt_ms(ms: float) -> str:
    if ms != ms:  # NaN
        return "n/a"
    if ms < 1:
        return f"{ms * 1000:.0f} µs"
    if ms < 100:
        return f"{ms:.2f} ms"
    return f"{ms:.0f} ms"


class Orchestrator:
    def __init__(self, cfg: dict, workdir: Path) -> None:
        self.cfg = cfg
        self.workdir = workdir
        self.server: subprocess.Popen | None = None
        self.addr: tuple[str, int] = ("127.0.0.1", 0)
        self.token = ""
        self.runs: list[dict] = []

    def log(self, message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    def child_cmd(self, role: str, config: dict, name: str) -> list[str]:
        path = self.workdir / f"{name}.json"
        path.write_text(json.dumps(config))
        return ["taskset", "-c", str(self.cfg["load_core"]), sys.executable, "-u",
                str(Path(__file__).resolve()), role, str(path)]

    def start_server(self) -> None:
        cfg = self.cfg
        out = self.workdir / "server.out"
        cmd = ["taskset", "-c", str(cfg["server_core"]), cfg["server_bin"], "--memory",
               "--rate-limit", "0", "--listen", "127.0.0.1:0", "--schema", cfg["schema"],
               "--shutdown-timeout", "2", *cfg["server_args"]]
        self.log("server: " + " ".join(shlex.quote(c) for c in cmd))
        with open(out, "wb") as stdout, open(self.workdir / "server.err", "wb") as stderr:
            self.server = spawn(cmd, stdout, stderr)
        line = wait_for_line(out, "listening on ", self.server, 30)
        if line is None:
            err = (self.workdir / "server.err").read_text(errors="replace")[-2000:]
            raise SetupError(f"the server did not say 'listening on' in 30 s:\n{err}")
        host, _, port = line.split()[-1].rpartition(":")
        self.addr = (host.strip("[]"), int(port))
        lines = out.read_text(errors="replace").splitlines()
        for i, text in enumerate(lines):
            if text.startswith("token for tenant") and i + 1 < len(lines):
                self.token = lines[i + 1].strip()
        if self.token.count(".") != 2:
            raise SetupError("no dev-mode token in the server's output (was --jwks given?)")
        self.log(f"server pid {self.server.pid} listening on {self.addr[0]}:{self.addr[1]}")

    def preflight(self) -> None:
        """The object exists, the member rules accept our patches, a forged token is 401."""
        body = json.dumps({"riskProfile": {"c0": 0}}).encode()
        status, answer = http_sync(self.addr, "PATCH", self.token, body)
        if not 200 <= status < 300:
            raise SetupError(f"the first PATCH got {status}: {answer[:500]!r}")
        status, answer = http_sync(self.addr, "GET", self.token, None)
        if status != 200 or "riskProfile" not in json.loads(answer or b"{}"):
            raise SetupError(f"GET after the first PATCH got {status}: {answer[:500]!r}")
        forged = forger(self.token, True)()
        status, answer = http_sync(self.addr, "PATCH", forged, body, source="127.0.0.254")
        if status != 401:
            raise SetupError(f"a forged token got {status}, not 401: {answer[:300]!r}")

    def stored_members(self) -> dict | None:
        try:
            status, answer = http_sync(self.addr, "GET", self.token, None, timeout=10)
            if status != 200:
                self.log(f"  GET after the run: {status} {answer[:200]!r}")
                return None
            return json.loads(answer).get("riskProfile") or {}
        except (OSError, ValueError) as error:
            self.log(f"  GET after the run failed: {error}")
            return None

    def run_one(self, kind: str, pair: int, number: int) -> dict:
        cfg = self.cfg
        name = f"{kind}{pair}"
        common = {"host": self.addr[0], "port": self.addr[1], "token": self.token}
        attacker = None
        attack_ready = None
        if kind == "attack":
            attack_cfg = dict(cfg, **common, max_seconds=cfg["duration"] + 90,
                              ready_timeout=20.0,
                              result_path=str(self.workdir / f"{name}.attack.result"))
            out = self.workdir / f"{name}.attack.out"
            with open(out, "wb") as stdout, open(self.workdir / f"{name}.attack.err", "wb") as err:
                attacker = spawn(self.child_cmd("_attack", attack_cfg, f"{name}.attack"),
                                 stdout, err)
            line = wait_for_line(out, "READY ", attacker, 40)
            if line is None:
                raise SetupError("the attackers did not get ready: "
                                 + (self.workdir / f"{name}.attack.err").read_text()[-2000:])
            attack_ready = json.loads(line.split(" ", 1)[1])
        legit_cfg = dict(cfg, **common, value_base=number * 10_000_000,
                         result_path=str(self.workdir / f"{name}.legit.result"))
        with open(self.workdir / f"{name}.legit.err", "wb") as err:
            legit = spawn(self.child_cmd("_legit", legit_cfg, f"{name}.legit"),
                          subprocess.DEVNULL, err)
        fds_max, rss_max = 0, 0
        deadline = time.monotonic() + cfg["duration"] + cfg["legit_timeout"] * 3 + 20
        while legit.poll() is None and time.monotonic() < deadline:
            fds, rss = server_sample(self.server.pid)
            fds_max, rss_max = max(fds_max, fds), max(rss_max, rss)
            time.sleep(0.25)
        if legit.poll() is None:
            stop_process(legit, 1)
            raise SetupError(f"the legitimate client of {name} did not finish in time")
        stop_process(legit, 1)
        result_path = Path(legit_cfg["result_path"])
        if not result_path.exists():
            raise SetupError("the legitimate client failed: "
                             + (self.workdir / f"{name}.legit.err").read_text()[-2000:])
        legit_result = json.loads(result_path.read_text())
        attack_result = None
        if attacker is not None:
            stop_process(attacker, 10)
            path = Path(self.workdir / f"{name}.attack.result")
            attack_result = json.loads(path.read_text()) if path.exists() else None
        if self.server.poll() is not None:
            raise SetupError(f"the server exited (code {self.server.returncode}) during {name}")
        stored = self.stored_members()
        lost, checked = 0, 0
        for k, acked in legit_result["last_acked"].items():
            if acked is None:
                continue
            checked += 1
            value = None if stored is None else stored.get(f"c{k}")
            if value != acked and value not in legit_result["unacked_after"][k]:
                lost += 1
                self.log(f"  connection {k}: last acknowledged {acked}, stored {value}")
        lat = sorted(legit_result["latencies"])
        statuses = {int(s): n for s, n in legit_result["statuses"].items()}
        run = {
            "kind": kind, "pair": pair, "name": f"{kind} {pair}",
            "p50": percentile(lat, 0.50), "p90": percentile(lat, 0.90),
            "p99": percentile(lat, 0.99), "max": lat[-1] if lat else float("nan"),
            "service_p99": percentile(sorted(legit_result["service"]), 0.99),
            "behind": legit_result["behind"], "send_lag_p99": legit_result["send_lag_p99"],
            "achieved": legit_result["achieved"], "scheduled": legit_result["scheduled"],
            "ok": legit_result["ok"],
            "5xx": sum(n for s, n in statuses.items() if s >= 500),
            "other": sum(n for s, n in statuses.items() if not 200 <= s < 300 and s < 500)
            + sum(legit_result["errors"].values()),
            "statuses": statuses, "errors": legit_result["errors"],
            "lost": lost if stored is not None else None, "checked": checked,
            "connect_max": max(legit_result["connect_ms"], default=float("nan")),
            "connect_errors": legit_result["connect_errors"],
            "fds_max": fds_max, "rss_max_kib": rss_max,
            "attack": attack_result, "attack_ready": attack_ready,
        }
        self.log(self.describe(run))
        return run

    def describe(self, run: dict) -> str:
        text = (f"{run['name']:>9}: p50 {fmt_ms(run['p50'])}, p99 {fmt_ms(run['p99'])}, "
                f"max {fmt_ms(run['max'])}, {run['achieved']:.1f}/s ({run['ok']}/"
                f"{run['scheduled']} 2xx), 5xx {run['5xx']}, other {run['other']}, lost "
                f"{run['lost']}/{run['checked']}, server fds max {run['fds_max']}, "
                f"rss max {run['rss_max_kib'] // 1024} MiB\n           client: sent behind "
                f"schedule {run['behind']}, send lag p99 {fmt_ms(run['send_lag_p99'])}, p90 "
                f"{fmt_ms(run['p90'])}, connect max {fmt_ms(run['connect_max'])}")
        attack = run["attack"]
        if attack:
            text += (f"\n           attack: idle held min {attack['idle_min']}/"
                     f"{self.cfg['idle_sockets']} (mean {attack['idle_mean']:.0f}), slow held min "
                     f"{attack['slow_min']}/{self.cfg['slow_conns']}, forged tokens "
                     f"{attack['bad_rate_achieved']:.0f}/s {attack['bad_statuses']}, "
                     f"idle reconnects {attack['idle_connects']} (refused at once "
                     f"{attack['idle_refused']}), slow closed {attack['slow_closed_by_server']}, "
                     f"connect errors {attack['connect_errors']}, bad errors {attack['bad_errors']}")
        return text

    def run_all(self) -> None:
        number = 0
        for pair in range(1, self.cfg["pairs"] + 1):
            for kind in ("baseline", "attack"):
                number += 1
                self.runs.append(self.run_one(kind, pair, number))
                time.sleep(self.cfg["settle"])

    def report(self) -> int:
        cfg = self.cfg
        try:
            commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                                    capture_output=True, text=True, timeout=10).stdout.strip()
            dirty = subprocess.run(["git", "diff", "--quiet", "HEAD"],
                                   cwd=ROOT, timeout=10).returncode != 0
        except (OSError, subprocess.TimeoutExpired):
            commit, dirty = "unknown", False
        commit_text = f"`{commit}`" + (" (with uncommitted changes)" if dirty else "")
        today = datetime.date.today().isoformat()
        extra = " ".join(cfg["server_args"])
        bad_total_conns = len(cfg["bad_ips"]) * cfg["bad_conns"]
        lines = [
            f"## Attack run (`scripts/attack-run.sh`), {today}, commit {commit_text}",
            "",
            f"Server: `--memory --rate-limit 0 --schema scripts/bench-schema.json"
            f"{' ' + extra if extra else ''}`, dev-mode ES256 token, other flags at their "
            f"defaults, pinned to core 0; clients on core 1 (attackers at nice "
            f"{cfg['attack_nice']}). Legitimate client: PATCH at {cfg['legit_rate']:g} "
            f"requests/s, open loop over {cfg['legit_conns']} keep-alive connections from "
            f"{LEGIT_ADDR}; latency from the send, or from the scheduled time for a request "
            f"sent behind schedule. Attack: "
            f"{cfg['idle_sockets']} idle TCP sockets ({ip_range(cfg['idle_ips'])}, reconnecting "
            f"when closed), {cfg['slow_conns']} slow-header connections "
            f"({ip_range(cfg['slow_ips'])}, one header byte every {cfg['slow_interval']:g} s), "
            f"forged-signature tokens at {cfg['bad_rate']:g}/s over {bad_total_conns} "
            f"connections ({ip_range(cfg['bad_ips'])}"
            f"{', a new token each time' if cfg['bad_unique'] else ', one token reused'}). "
            f"{cfg['pairs']} pairs of {cfg['duration']:g} s runs, baseline then attack.",
            "",
            "| run | p50 | p99 | max | achieved/s | 5xx | other failures | lost updates "
            "| attackers held (min): idle / slow | forged tokens/s (answers) | server fds (max) |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for run in self.runs:
            attack = run["attack"]
            if attack:
                held = (f"{attack['idle_min']}/{cfg['idle_sockets']} / "
                        f"{attack['slow_min']}/{cfg['slow_conns']}")
                statuses = ", ".join(f"{s}: {n}" for s, n in sorted(attack["bad_statuses"].items()))
                bad = f"{attack['bad_rate_achieved']:.0f} ({statuses or 'no answers'})"
            else:
                held, bad = "—", "—"
            lost = "?" if run["lost"] is None else f"{run['lost']} of {run['checked']}"
            lines.append(
                f"| {run['name']} | {fmt_ms(run['p50'])} | {fmt_ms(run['p99'])} | "
                f"{fmt_ms(run['max'])} | {run['achieved']:.1f} | {run['5xx']} | {run['other']} | "
                f"{lost} | {held} | {bad} | {run['fds_max']} |")
        ratios50, ratios99 = [], []
        for pair in range(1, cfg["pairs"] + 1):
            base = next(r for r in self.runs if r["pair"] == pair and r["kind"] == "baseline")
            attack = next(r for r in self.runs if r["pair"] == pair and r["kind"] == "attack")
            if base["p50"] > 0 and base["p99"] > 0:
                ratios50.append(attack["p50"] / base["p50"])
                ratios99.append(attack["p99"] / base["p99"])
        if ratios50:
            lines += [
                "",
                f"Median ratio attack/baseline over {len(ratios50)} pair{'s' if len(ratios50) > 1 else ''}: "
                f"**p50 {statistics.median(ratios50):.2f}×**, "
                f"**p99 {statistics.median(ratios99):.2f}×** (per pair: p50 "
                + " / ".join(f"{r:.2f}" for r in ratios50) + "; p99 "
                + " / ".join(f"{r:.2f}" for r in ratios99) + ").",
            ]
        five = sum(r["5xx"] for r in self.runs)
        lost_total = sum(r["lost"] or 0 for r in self.runs)
        unknown = sum(1 for r in self.runs if r["lost"] is None)
        lines += [
            "",
            f"5xx in all: {five}; lost updates in all: {lost_total}"
            + (f" ({unknown} runs could not be checked)" if unknown else "")
            + "; a lost update is a connection whose last acknowledged value is not what the "
            "GET after the run returns. \"Other failures\" are non-2xx answers below 500 and "
            "requests with no answer (timeouts, resets).",
        ]
        print("\n".join(lines), flush=True)
        return 1 if five or lost_total or unknown else 0


class SetupError(Exception):
    pass


def check_addresses(cfg: dict) -> None:
    ips = [LEGIT_ADDR, *cfg["idle_ips"], *cfg["slow_ips"], *cfg["bad_ips"]]
    for ip in ips:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((ip, 0))
            except OSError as error:
                raise SetupError(f"cannot bind source address {ip}: {error}") from error


class Interrupted(Exception):
    pass


def on_signal(signum, _frame):
    # Once: a second Ctrl-C must not cut the cleanup short.
    for name in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(name, signal.SIG_IGN)
    raise Interrupted(signal.Signals(signum).name)


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] in ("_legit", "_attack"):
        return child_main(sys.argv[1], sys.argv[2])
    if len(sys.argv) > 1:
        print(__doc__)
        return 0 if sys.argv[1] in ("-h", "--help") else 2
    cfg = config_from_env()
    if not os.access(cfg["server_bin"], os.X_OK):
        print(f"no server binary at {cfg['server_bin']}; build it with:\n"
              "  cargo build --release -p security-update-server", file=sys.stderr)
        return 2
    if not Path(cfg["schema"]).is_file():
        print(f"no schema at {cfg['schema']}", file=sys.stderr)
        return 2
    if shutil.which("taskset") is None:
        print("taskset is missing (util-linux)", file=sys.stderr)
        return 2
    for name in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(name, on_signal)
    atexit.register(cleanup)
    nofile = raise_nofile()
    os.sched_setaffinity(0, {cfg["load_core"]})
    workdir = Path(tempfile.mkdtemp(prefix="attack-run."))
    orchestrator = Orchestrator(cfg, workdir)
    code = 2
    try:
        check_addresses(cfg)
        print(f"open-file limit {nofile} (this script and the server); logs in {workdir}",
              file=sys.stderr, flush=True)
        orchestrator.start_server()
        orchestrator.preflight()
        orchestrator.run_all()
        cleanup()
        code = orchestrator.report()
    except SetupError as error:
        print(f"attack run failed: {error}", file=sys.stderr)
        code = 2
    except (Interrupted, KeyboardInterrupt) as signal_name:
        print(f"interrupted ({signal_name or 'SIGINT'}): stopping the server and the clients",
              file=sys.stderr)
        code = 130
    finally:
        cleanup()
        if cfg["keep_logs"] or code == 2:
            print(f"logs kept in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
