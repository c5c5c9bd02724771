#!/usr/bin/env python3
"""`make bench`: the gateway against nginx and HAProxy on the same box.

One nginx upstream serves a fixed 200-byte response with keep-alive. Each
contender terminates TLS with the same certificate and proxies to it over
keep-alive HTTP/1.1. Every proxy gets core 0 (taskset); the load generator and
the upstream share core 1. Loads alternate between contenders (A B C A B C ...)
for ROUNDS rounds and the medians are reported. Then 5,000 idle TLS
connections are opened to each proxy and its RSS growth per connection is
measured.

Environment: BENCH_SECONDS (default 10), BENCH_WARMUP (default 2),
BENCH_ROUNDS (default 3), BENCH_IDLE (default 5000), BENCH_ONLY (comma list of
contenders, for quick looks). Writes bench/results.json and prints a table.
"""
import asyncio
import json
import os
import platform
import re
import resource
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STATE = os.environ.get("STATE", os.path.join(ROOT, ".state"))
CERT = os.path.join(STATE, "dev", "localhost.pem")
KEY = os.path.join(STATE, "dev", "localhost-key.pem")
CA = os.path.join(STATE, "dev", "ca.pem")
GATEWAY = os.environ.get("BENCH_GATEWAY_BIN") or os.path.join(ROOT, ".build", "release", "gateway")

SECONDS = int(os.environ.get("BENCH_SECONDS", "10"))
WARMUP = int(os.environ.get("BENCH_WARMUP", "2"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
IDLE = int(os.environ.get("BENCH_IDLE", "5000"))
ONLY = [c for c in os.environ.get("BENCH_ONLY", "").split(",") if c]

PROXY_CORE = "0"
LOAD_CORE = "1"
UPSTREAM_PORT = 18080
BODY = "x" * 199 + "\n"  # 200 bytes

PORTS = {"nginx": 18443, "haproxy": 18444, "gateway_plain": 18445, "gateway_full": 18446, "gateway_unsigned": 18446}
PATHS = {"direct": "/plain", "nginx": "/plain", "haproxy": "/plain", "gateway_plain": "/plain", "gateway_full": "/full",
         "gateway_unsigned": "/unsigned"}
# Which process a contender runs in. The app routes run in a second gateway
# process (same config, its own port), so that each process's RSS is its
# routes' own: the full route's nonce store holds every nonce of the replay
# window, tens of MiB at these rates, which the plain route's RSS would
# otherwise carry from the first full-route load on.
PROCESS = {"nginx": "nginx", "haproxy": "haproxy", "gateway_plain": "gateway", "gateway_full": "gateway_app",
           "gateway_unsigned": "gateway_app"}
# Contenders whose requests come from a file of pre-made raw requests (wrk
# with a Lua script): the full app route needs a fresh signature, nonce and
# ciphertext per request, which wrk cannot make. HTTP/1.1 only (h2load cannot
# send per-request headers and bodies).
FROM_FILE = {"gateway_full", "gateway_unsigned"}
# Of those, the ones whose requests must not be sent twice (signed, with a
# nonce each); the unsigned route's file holds 1,000 requests sent in turn.
UNREPEATABLE = {"gateway_full"}
# The app route's plaintext: a 1 KiB JSON body.
APP_BODY = b'{"memo":"' + b"m" * 1013 + b'"}'
assert len(APP_BODY) == 1024
# A request file that runs out starts again from its first request, which
# the gateway refuses as a replay (cheaply: the run would read fast and
# wrong), so the script counts the restarts and `done` reports them.
WRK_SCRIPT = """
local threads = {}
function setup(thread)
  table.insert(threads, thread)
end
function init(args)
  f = assert(io.open(os.getenv("BENCH_REQUESTS"), "rb"))
  wrapped = 0
end
function request()
  local line = f:read("*l")
  if not line then
    wrapped = wrapped + 1
    f:seek("set", 0)
    line = f:read("*l")
  end
  return f:read(tonumber(line))
end
function done(summary, latency, requests)
  local n = 0
  for _, t in ipairs(threads) do n = n + t:get("wrapped") end
  io.write(string.format("request file wrapped: %d\\n", n))
end
"""


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


class Proc:
    """A started server, pinned to a core; `pids` are the processes whose CPU and RSS count."""

    def __init__(self, name, argv, core, workdir, ready_port, use_tls):
        self.name = name
        self.log = open(os.path.join(workdir, name + ".log"), "w")
        self.p = subprocess.Popen(["taskset", "-c", core] + argv, stdout=self.log, stderr=subprocess.STDOUT,
                                  start_new_session=True)
        wait_port(ready_port)
        if use_tls:
            wait_tls(ready_port)

    def pids(self):
        out = [self.p.pid]
        try:
            children = subprocess.run(["pgrep", "-P", str(self.p.pid)], capture_output=True, text=True).stdout.split()
            out += [int(c) for c in children]
        except OSError:
            pass
        return out

    def cpu_seconds(self):
        total = 0
        for pid in self.pids():
            try:
                fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])
            except OSError:
                pass
        return total / os.sysconf("SC_CLK_TCK")

    def rss_kib(self):
        total = 0
        for pid in self.pids():
            try:
                for line in open(f"/proc/{pid}/status"):
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
            except OSError:
                pass
        return total

    def stop(self):
        try:
            os.killpg(self.p.pid, signal.SIGTERM)
            self.p.wait(timeout=10)
        except Exception:
            try:
                os.killpg(self.p.pid, signal.SIGKILL)
            except Exception:
                pass


def wait_port(port, timeout=20):
    import socket
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on port {port}")


def wait_tls(port):
    r = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", CA,
                        f"https://localhost:{port}/plain"], capture_output=True, text=True)
    if r.stdout != "200":
        raise SystemExit(f"port {port} does not answer 200 over TLS: {r.stdout} {r.stderr}")


def start_servers(work):
    combined = os.path.join(work, "combined.pem")
    write(combined, open(CERT).read() + open(KEY).read())
    write(os.path.join(work, "upstream.conf"), f"""
worker_processes 1;
daemon off;
user root;
pid {work}/upstream.pid;
error_log {work}/upstream-error.log warn;
worker_rlimit_nofile 19000;
events {{ worker_connections 9000; }}
http {{
  access_log off;
  keepalive_requests 100000000;
  keepalive_timeout 600s;
  client_body_temp_path {work}/up-body;
  server {{
    listen 127.0.0.1:{UPSTREAM_PORT} reuseport backlog=4096;
    location / {{ default_type text/plain; return 200 "{BODY[:-1]}\\n"; }}
  }}
}}
""")
    write(os.path.join(work, "nginx.conf"), f"""
worker_processes 1;
daemon off;
user root;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log warn;
worker_rlimit_nofile 19000;
events {{ worker_connections 9000; }}
http {{
  access_log off;
  keepalive_requests 100000000;
  keepalive_timeout 600s;
  client_header_timeout 120s;
  client_body_temp_path {work}/nginx-body;
  proxy_temp_path {work}/nginx-proxy;
  upstream up {{ server 127.0.0.1:{UPSTREAM_PORT}; keepalive 512; keepalive_requests 100000000; }}
  server {{
    listen 127.0.0.1:{PORTS['nginx']} ssl http2 backlog=4096;
    ssl_certificate {CERT};
    ssl_certificate_key {KEY};
    ssl_protocols TLSv1.3;
    http2_max_concurrent_streams 128;
    location / {{ proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; }}
  }}
}}
""")
    write(os.path.join(work, "haproxy.cfg"), f"""
global
  nbthread 1
  maxconn 9000
  ssl-default-bind-options ssl-min-ver TLSv1.3
defaults
  mode http
  timeout connect 5s
  timeout client 600s
  timeout server 600s
  timeout http-request 120s
  timeout http-keep-alive 600s
  http-reuse always
frontend fe
  bind 127.0.0.1:{PORTS['haproxy']} ssl crt {combined} alpn h2,http/1.1
  maxconn 9000
  default_backend be
backend be
  server up 127.0.0.1:{UPSTREAM_PORT} maxconn 512
""")
    config = os.path.join(work, "filters.d")
    app_config = os.path.join(work, "filters-app.d")
    for d in [config, app_config]:
        os.makedirs(d, exist_ok=True)
    # The full route authenticates a dev JWT and mints a passport: a dev
    # issuer and a passport key in the work folder, one token for every request
    # (so the authenticate and passport caches are warm, as for a client that
    # repeats its token).
    subprocess.run([GATEWAY, "dev", "keys", "--state", work], check=True, capture_output=True)
    token = subprocess.run([GATEWAY, "dev", "token", "--state", work, "--sub", "bench-user", "--scope", "bench:read", "--ttl", "3h"],
                           check=True, capture_output=True, text=True).stdout.strip()
    APP["token"] = token
    key_dir = os.path.join(work, "app-channel")
    key = json.load(open(os.path.join(key_dir, sorted(os.listdir(key_dir))[0])))
    APP["kid"], APP["gateway_key"] = key["kid"], key["x"]
    # One config, twice: `filters.d` for the plain route's process (and
    # instructions.py's, which serves every route), `filters-app.d` for the
    # app routes' process, on its own ports.
    for folder, port, admin in [(config, PORTS["gateway_plain"], 19901), (app_config, PORTS["gateway_full"], 19902)]:
        write(os.path.join(folder, "bench.yaml"), f"""
admin:
  address: 127.0.0.1:{admin}
listeners:
  - name: bench
    address: 127.0.0.1:{port}
    tls: {{cert: {CERT}, key: {KEY}}}
    limits: {{header_timeout: 120s, idle_timeout: 600s, max_concurrent_streams: 128}}
upstreams:
  - name: up
    endpoints: ["127.0.0.1:{UPSTREAM_PORT}"]
    max_connections: 512
    keepalive_timeout: 600s
routes:
  - name: plain
    listener: bench
    match: {{path_prefix: /plain}}
    upstream: up
  - name: full
    listener: bench
    match: {{path_prefix: /full}}
    upstream: up
    filters:
      - sanitize: {{methods: [POST], headers: {{deny: [x-debug, "x-admin-*"]}}, query: {{deny: [debug]}}}}
      - authenticate: {{jwt: {{jwks: dev/jwt-jwks.json, issuer: gateway-dev, audiences: [demo]}}, scopes: [bench:read]}}
      - request_signature: {{max_age: 1m, max_skew: 2s, nonce_store: memory, memory: {{max_entries: 2000000}}}}
      - decrypt_payload: {{required: true, encrypt_response: true, max_body: 4KiB}}
      - passport: {{issuer: edge-gateway, ttl: 5m}}
  - name: unsigned
    listener: bench
    match: {{path_prefix: /unsigned}}
    upstream: up
    filters:
      - sanitize: {{methods: [POST], headers: {{deny: [x-debug, "x-admin-*"]}}, query: {{deny: [debug]}}}}
      - authenticate: {{jwt: {{jwks: dev/jwt-jwks.json, issuer: gateway-dev, audiences: [demo]}}, scopes: [bench:read]}}
      - passport: {{issuer: edge-gateway, ttl: 5m}}
""")
    write(os.path.join(work, "requests.lua"), WRK_SCRIPT)
    for d in ["up-body", "nginx-body", "nginx-proxy"]:
        os.makedirs(os.path.join(work, d), exist_ok=True)
    procs = {}
    procs["upstream"] = Proc("upstream", ["nginx", "-p", work, "-c", os.path.join(work, "upstream.conf")], LOAD_CORE, work,
                             UPSTREAM_PORT, False)
    wanted = set(PROCESS.get(c, "upstream") for c in contenders())
    if "nginx" in wanted:
        procs["nginx"] = Proc("nginx", ["nginx", "-p", work, "-c", os.path.join(work, "nginx.conf")], PROXY_CORE, work,
                              PORTS["nginx"], True)
    if "haproxy" in wanted:
        procs["haproxy"] = Proc("haproxy", ["haproxy", "-db", "-f", os.path.join(work, "haproxy.cfg")], PROXY_CORE, work,
                                PORTS["haproxy"], True)
    for name, folder, contender in [("gateway", config, "gateway_plain"), ("gateway_app", app_config, "gateway_full")]:
        if name in wanted:
            procs[name] = Proc(name, [GATEWAY, "serve", "--config", folder, "--state", work, "--threads", "1",
                                      "--no-access-log", "--log-level", "warning"], PROXY_CORE, work,
                               PORTS[contender], True)
    return procs


def contenders():
    all_ = ["direct", "nginx", "haproxy", "gateway_plain", "gateway_full", "gateway_unsigned"]
    return [c for c in all_ if not ONLY or c in ONLY]


def url(contender):
    if contender == "direct":
        return f"http://127.0.0.1:{UPSTREAM_PORT}{PATHS['direct']}"
    return f"https://localhost:{PORTS[contender]}{PATHS[contender]}"


def to_ms(text):
    m = re.match(r"([\d.]+)(us|ms|s|m)$", text)
    if not m:
        raise ValueError(f"cannot read latency {text!r}")
    value, unit = float(m.group(1)), m.group(2)
    return {"us": value / 1000, "ms": value, "s": value * 1000, "m": value * 60000}[unit]


# Extra request headers per contender.
HEADERS = {}
# The app route's token and gateway key, set by start_servers.
APP = {}


def make_requests(contender, count, path):
    """Writes `count` raw HTTP/1.1 requests, each `<length>\\n<bytes>`: for the
    full route each signed with a fresh nonce and timestamp (now) and its 1 KiB
    body encrypted (PROTOCOL 2), as an app would; for the unsigned route the
    same body in the clear. One client key for all (as one app session), so
    the gateway's session-key cache is warm, as it is for a real app."""
    import base64
    import hashlib
    import hmac
    from nacl.bindings import crypto_kx_keypair, crypto_kx_client_session_keys, crypto_aead_xchacha20poly1305_ietf_encrypt
    b64u = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
    target = PATHS[contender]
    host = f"localhost:{PORTS[contender]}"
    auth = f"Authorization: Bearer {APP['token']}\r\n"
    with open(path, "wb") as f:
        if contender == "gateway_unsigned":
            req = (f"POST {target} HTTP/1.1\r\nHost: {host}\r\n{auth}Content-Type: application/json\r\n"
                   f"Content-Length: {len(APP_BODY)}\r\n\r\n").encode() + APP_BODY
            for _ in range(min(count, 1000)):
                f.write(b"%d\n" % len(req) + req)
            return
        gpk = base64.urlsafe_b64decode(APP["gateway_key"] + "=" * (-len(APP["gateway_key"]) % 4))
        cpk, csk = crypto_kx_keypair()
        _, c_tx = crypto_kx_client_session_keys(cpk, csk, gpk)
        k_mac = hashlib.blake2b(b"GW1 mac", key=c_tx, digest_size=32).digest()
        k_req = hashlib.blake2b(b"GW1 request", key=c_tx, digest_size=32).digest()
        client_key = b64u(cpk)
        for _ in range(count):
            ts = str(int(time.time() * 1000))
            nonce = b64u(os.urandom(16))
            n = os.urandom(24)
            body = n + crypto_aead_xchacha20poly1305_ietf_encrypt(APP_BODY, f"POST\n{target}\n{ts}\n{nonce}".encode(), n, k_req)
            canonical = "\n".join(["GW1", "POST", target, ts, nonce, APP["kid"], b64u(hashlib.sha256(body).digest())])
            sig = b64u(hmac.new(k_mac, canonical.encode(), hashlib.sha256).digest())
            req = (f"POST {target} HTTP/1.1\r\nHost: {host}\r\n{auth}X-Gw-Kid: {APP['kid']}\r\nX-Gw-Client-Key: {client_key}\r\n"
                   f"X-Gw-Timestamp: {ts}\r\nX-Gw-Nonce: {nonce}\r\nX-Gw-Encrypted: 1\r\n"
                   f"X-Gw-Content-Type: application/json\r\nX-Gw-Signature: {sig}\r\n"
                   f"Content-Type: application/octet-stream\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
            f.write(b"%d\n" % len(req) + req)


def file_args(contender, work, seconds, rate=30000):
    """wrk arguments that send pre-made requests: enough for `seconds` at
    `rate` requests/s and a second more, so none is sent twice (a repeat
    would be a replay; `run_wrk` refuses a run whose file ran out)."""
    path = os.path.join(work, f"requests-{contender}.bin")
    make_requests(contender, int(rate) * (seconds + 1), path)
    os.environ["BENCH_REQUESTS"] = path
    return ["-s", os.path.join(work, "requests.lua")]


def header_args(contender):
    return [a for h in HEADERS.get(contender, []) for a in ("-H", h)]


def run_wrk(target, connections, seconds, parse=True, headers=(), check_wrap=False):
    out = subprocess.run(["taskset", "-c", LOAD_CORE, "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", *headers, target],
                         capture_output=True, text=True).stdout
    if not parse:
        return None
    if "Requests/sec" not in out or not re.search(r"^\s*99%\s+\S+", out, re.M):
        raise SystemExit(f"wrk against {target} produced no result:\n{out}")
    try:
        rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
        p50 = to_ms(re.search(r"^\s*50%\s+(\S+)", out, re.M).group(1))
        p99 = to_ms(re.search(r"^\s*99%\s+(\S+)", out, re.M).group(1))
    except (AttributeError, ValueError) as e:
        raise SystemExit(f"cannot read wrk's output against {target} ({e}):\n{out}")
    total = int(re.search(r"(\d+) requests in", out).group(1))
    wrapped = re.search(r"request file wrapped: (\d+)", out)
    if check_wrap and wrapped and int(wrapped.group(1)) > 0:
        raise SystemExit(f"wrk against {target} ran out of pre-made requests ({total} sent) and repeated them: "
                         "the run measured replays; the file is sized from the warm-up's rate")
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    return {"rps": rps, "p50_ms": p50, "p99_ms": p99, "requests": total,
            "errors": int(errors.group(1)) if errors else 0, "socket_errors": socket_errors.group(1) if socket_errors else ""}


def run_h2load(target, seconds, work, headers=()):
    logfile = os.path.join(work, "h2load.log")
    if os.path.exists(logfile):
        os.remove(logfile)
    out = subprocess.run(["taskset", "-c", LOAD_CORE, "h2load", "-c8", "-m32", "-D", str(seconds), "--log-file", logfile, *headers, target],
                         capture_output=True, text=True).stdout
    m = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out)
    done = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded", out)
    latencies = []
    with open(logfile) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3:
                latencies.append(int(parts[2]) / 1000.0)
    latencies.sort()
    pct = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] if latencies else 0.0
    succeeded = int(done.group(2)) if done else 0
    total = int(done.group(1)) if done else 0
    return {"rps": float(m.group(1)) if m else 0.0, "p50_ms": pct(0.50), "p99_ms": pct(0.99), "requests": total,
            "errors": total - succeeded, "socket_errors": ""}


LOADS = [("h1", 64), ("h1", 256), ("h2", 256)]


def measure(procs, work):
    samples = {}
    for rnd in range(ROUNDS):
        for protocol, connections in LOADS:
            for c in contenders():
                if protocol == "h2" and (c == "direct" or c in FROM_FILE):
                    continue
                target = url(c)
                proc = procs.get(PROCESS.get(c, ""), procs["upstream"])
                extra = header_args(c)
                if protocol == "h1":
                    warm = extra + (file_args(c, work, WARMUP) if c in FROM_FILE else [])
                    warmed = run_wrk(target, connections, WARMUP, parse=c in FROM_FILE, headers=warm)
                    if c in FROM_FILE:
                        # Sized from the warm-up's rate with room to spare: a
                        # faster machine or build must not run out.
                        extra = extra + file_args(c, work, SECONDS, rate=max(30000, 1.5 * warmed["rps"]))
                    cpu0 = proc.cpu_seconds()
                    r = run_wrk(target, connections, SECONDS, headers=extra, check_wrap=c in UNREPEATABLE)
                else:
                    run_h2load(target, WARMUP, work, headers=extra)
                    cpu0 = proc.cpu_seconds()
                    r = run_h2load(target, SECONDS, work, headers=extra)
                cpu = proc.cpu_seconds() - cpu0
                r["cpu_us_per_req"] = cpu * 1e6 / r["requests"] if r["requests"] else 0.0
                r["rss_mib"] = proc.rss_kib() / 1024
                samples.setdefault((c, protocol, connections), []).append(r)
                log(f"round {rnd + 1}/{ROUNDS} {c:14} {protocol} c={connections:<3} {r['rps']:9.0f} req/s "
                    f"p50 {r['p50_ms']:6.2f} ms p99 {r['p99_ms']:6.2f} ms cpu {r['cpu_us_per_req']:5.1f} us/req "
                    f"errors {r['errors']} {r['socket_errors']}")
    runs = []
    for (c, protocol, connections), rs in samples.items():
        runs.append({
            "contender": c, "protocol": protocol, "connections": connections,
            "rps": statistics.median(r["rps"] for r in rs),
            "p50_ms": statistics.median(r["p50_ms"] for r in rs),
            "p99_ms": statistics.median(r["p99_ms"] for r in rs),
            "rss_mib": statistics.median(r["rss_mib"] for r in rs),
            "cpu_us_per_req": statistics.median(r["cpu_us_per_req"] for r in rs),
            "errors": sum(r["errors"] for r in rs),
            # Each round's figures, in round order: a ratio taken within one
            # round compares runs made a minute apart, on the VM in one phase.
            "rounds": [{"rps": r["rps"], "p99_ms": r["p99_ms"], "cpu_us_per_req": r["cpu_us_per_req"]} for r in rs],
        })
    return runs


H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"  # and an empty SETTINGS


async def open_idle(port, count, h2=False):
    """`count` idle TLS connections; with `h2`, each negotiated h2 and
    exchanged the preface and SETTINGS (an HTTP/2 connection without streams)."""
    ctx = ssl.create_default_context(cafile=CA)
    ctx.set_alpn_protocols(["h2"] if h2 else ["http/1.1"])
    sem = asyncio.Semaphore(200)
    conns = []

    async def one():
        async with sem:
            for _ in range(3):
                try:
                    r, w = await asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname="localhost")
                    if h2:
                        if w.get_extra_info("ssl_object").selected_alpn_protocol() != "h2":
                            raise SystemExit(f"port {port} did not negotiate h2")
                        w.write(H2_PREFACE)
                        await asyncio.wait_for(r.read(9), 5)  # the server's SETTINGS
                    conns.append(w)
                    return
                except OSError:
                    await asyncio.sleep(0.1)
    await asyncio.gather(*(one() for _ in range(count)))
    return conns


def idle_memory(procs, h2=False):
    result = {}
    for c in contenders():
        if c == "direct" or c in FROM_FILE:
            continue
        proc = procs[PROCESS[c]]
        before = proc.rss_kib()

        async def go():
            conns = await open_idle(PORTS[c], IDLE, h2)
            await asyncio.sleep(1.0)
            after = proc.rss_kib()
            for w in conns:
                w.close()
            await asyncio.sleep(0.5)
            return len(conns), after
        opened, after = asyncio.run(go())
        per = (after - before) / opened if opened else 0.0
        result[c] = round(per, 2)
        log(f"idle {'h2 ' if h2 else ''}{c:14} {opened} TLS connections: RSS {before / 1024:.1f} -> {after / 1024:.1f} MiB, {per:.2f} KiB per connection")
    return result


def negotiated(port):
    r = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "localhost", "-alpn", "http/1.1"],
                       input="", capture_output=True, text=True, timeout=10)
    m = re.search(r"New, (TLSv[\d.]+), Cipher is (\S+)", r.stdout)
    return f"{m.group(1)} {m.group(2)}" if m else "?"


def machine():
    model = "?"
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return f"{model}, {os.cpu_count()} cores, Linux {platform.release()}"


def ratio(runs, a, b, protocol, connections, field="rps"):
    def get(c):
        for r in runs:
            if r["contender"] == c and r["protocol"] == protocol and r["connections"] == connections:
                return r[field]
        return None
    x, y = get(a), get(b)
    return round(x / y, 3) if x and y else None


def round_ratios(runs, a, b, protocol, connections, field="rps"):
    """The ratio within each round (A and B measured a minute apart), in
    round order: how far the budget ratio moves with the machine's phase."""
    def get(c):
        for r in runs:
            if r["contender"] == c and r["protocol"] == protocol and r["connections"] == connections:
                return [x[field] for x in r.get("rounds", [])]
        return []
    return [round(x / y, 3) for x, y in zip(get(a), get(b)) if x and y]


# The budget's ratios: name -> (a, b, protocol, connections, field).
RATIOS = {
    "gateway_plain_vs_nginx_h1_64": ("gateway_plain", "nginx", "h1", 64, "rps"),
    "gateway_plain_vs_nginx_h1_256": ("gateway_plain", "nginx", "h1", 256, "rps"),
    "gateway_plain_vs_nginx_h2": ("gateway_plain", "nginx", "h2", 256, "rps"),
    "gateway_full_vs_nginx_h1_64": ("gateway_full", "nginx", "h1", 64, "rps"),
    "gateway_full_vs_unsigned_h1_64": ("gateway_full", "gateway_unsigned", "h1", 64, "rps"),
    "gateway_p99_vs_nginx_h1_64": ("gateway_plain", "nginx", "h1", 64, "p99_ms"),
    "gateway_p99_vs_nginx_h2": ("gateway_plain", "nginx", "h2", 256, "p99_ms"),
}


def main():
    for f in [GATEWAY, CERT, KEY]:
        if not os.path.exists(f):
            raise SystemExit(f"missing {f}: run `make bench` (it builds the release binary and the dev certificates)")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 65536
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(want, hard)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    work = tempfile.mkdtemp(prefix="gateway-bench-")
    procs = {}
    try:
        procs = start_servers(work)
        ciphers = {c: negotiated(PORTS[c]) for c in contenders() if c in PORTS}
        for c, v in ciphers.items():
            log(f"{c:14} negotiates {v}")
        runs = measure(procs, work)
        idle = idle_memory(procs) if IDLE > 0 else {}
        idle_h2 = {}
        if IDLE > 0:
            # On fresh processes: memory the HTTP/1.1 connections freed would
            # otherwise be reused and hide what HTTP/2 connections cost.
            for p in procs.values():
                p.stop()
            procs = start_servers(work)
            idle_h2 = idle_memory(procs, h2=True)
    finally:
        for p in procs.values():
            p.stop()
        if not os.environ.get("BENCH_KEEP"):
            shutil.rmtree(work, ignore_errors=True)
    results = {
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d"),
        "method": {"seconds": SECONDS, "warmup": WARMUP, "rounds": ROUNDS, "idle_connections": IDLE,
                   "proxy_core": PROXY_CORE, "load_and_upstream_core": LOAD_CORE, "tls": ciphers},
        "runs": runs,
        "idle_kib_per_conn": idle,
        "idle_h2_kib_per_conn": idle_h2,
        "ratios": {name: ratio(runs, *spec) for name, spec in RATIOS.items()},
        "ratio_rounds": {name: round_ratios(runs, *spec) for name, spec in RATIOS.items()},
    }
    os.makedirs(os.path.join(ROOT, "bench"), exist_ok=True)
    with open(os.path.join(ROOT, "bench", "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    print(f"machine: {results['machine']}")
    print(f"{'contender':15} {'load':10} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'CPU us/req':>10} {'RSS MiB':>8} {'errors':>6}")
    for r in sorted(runs, key=lambda r: (r["protocol"], r["connections"], contenders().index(r["contender"]))):
        print(f"{r['contender']:15} {r['protocol'] + ' c=' + str(r['connections']):10} {r['rps']:9.0f} {r['p50_ms']:8.2f} "
              f"{r['p99_ms']:8.2f} {r['cpu_us_per_req']:10.1f} {r['rss_mib']:8.1f} {r['errors']:6}")
    for c, v in idle.items():
        print(f"idle {c:15} {v:8.2f} KiB per TLS connection")
    for c, v in idle_h2.items():
        print(f"idle h2 {c:12} {v:8.2f} KiB per TLS connection (HTTP/2, no stream)")
    for k, v in results["ratios"].items():
        rounds = results["ratio_rounds"].get(k) or []
        print(f"{k:32} {v}" + (f"   (each round: {' '.join(f'{x:.2f}' for x in rounds)})" if rounds else ""))
    print("written: bench/results.json")


if __name__ == "__main__":
    main()
