#!/usr/bin/env python3
"""Instructions per request, by route, under valgrind's callgrind (`make bench-instructions`).

The wall-clock harness (`bench.py`) compares the gateway with nginx, but on a
shared VM its rounds move by ±10 % from one minute to the next, more than most
single changes to the request path. This counts what the gateway's own code
executes, exactly and repeatably: the gateway runs under callgrind with the
same servers, routes and pre-made requests as `bench.py` (wrk, 64
connections); for each route the counters are zeroed once the connections are
open, and dumped after a fixed time. A request is one call of
`ProxyRequest.admit` (read from the profile itself, so the requests counted
and the instructions counted come from the same window).

What it does not see: the kernel, and what an instruction costs (cache misses,
atomic operations, the CPU's SHA extensions: valgrind hides them, so
SHA-256 runs swift-crypto's portable code here and costs ~40,000 instructions
on the full route that the real CPU does in far fewer). Compare builds with
it, not with nginx.

Atomic operations a request are counted too: executions of the binary's
`lock`-prefixed instructions (and `xchg` with memory, atomic without the
prefix), read from the profile's per-instruction counts. Nearly all are
Swift's reference counting (`swift_retain`, `swift_release`); each is one
instruction here but 20 or more cycles on some CPUs (on a 2026-12 Intel
host, a fifth of the full route's time), so they are counted apart.

Environment: BENCH_ROUTES (default gateway_plain,gateway_full; also
gateway_unsigned), BENCH_SECONDS (per route, default 14), BENCH_OUT (where the
callgrind files go, default bench/instructions/). Writes a table on stdout and
BENCH_OUT/instructions.json.
"""
import functools
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402

ROUTES = [r for r in os.environ.get("BENCH_ROUTES", "gateway_plain,gateway_full").split(",") if r]
SECONDS = int(os.environ.get("BENCH_SECONDS", "14"))
OUT = os.environ.get("BENCH_OUT", os.path.join(os.path.dirname(os.path.abspath(__file__)), "instructions"))
ADMIN = "http://127.0.0.1:19901/metrics"
# A request: one call of this function (every request is admitted once).
PER_REQUEST = "$s7Gateway12ProxyRequestC5admitSbyF"
# What each group of symbols is, for the table (first match wins).
GROUPS = [("$s7Gateway", "gateway"), ("$s7Filters", "filters"), ("$s8Passport", "passport"),
          ("$s7NIOCore", "nio"), ("$s8NIOPosix", "nio"), ("$s6NIOSSL", "nio"), ("$s8NIOHTTP1", "nio"),
          ("$ss", "swift stdlib"), ("$sS", "swift stdlib"), ("swift_", "swift runtime"), ("_swift", "swift runtime"),
          ("bool swift", "swift runtime"), ("void swift", "swift runtime"), ("CCryptoBoringSSL", "crypto"),
          ("$s6Crypto", "crypto"), ("crypto_", "crypto"), ("CNIOBoringSSL", "tls"), ("bssl::", "tls"), ("_aesni", "tls"),
          ("./malloc", "malloc"), ("./string", "libc")]
# Objects whose symbols all belong to one group (no source file names to go by).
OBJECT_GROUPS = [("libmimalloc", "malloc")]


def group(name, obj=""):
    for part, g in OBJECT_GROUPS:
        if part in obj:
            return g
    for prefix, g in GROUPS:
        if name.startswith(prefix):
            return g
    if "chacha" in name or "poly" in name or "sha256" in name:
        return "crypto"
    if "aes" in name or "gcm" in name or "tls" in name:
        return "tls"
    if "swift" in name or "RefCount" in name or "tuple_destroy" in name:
        return "swift runtime"
    return "other"


def requests_in(profile):
    """Calls of `ProxyRequest.admit` in a callgrind file."""
    tree = subprocess.run(["callgrind_annotate", "--tree=caller", "--threshold=100", profile],
                          capture_output=True, text=True, check=True).stdout
    for block in tree.split("\n\n"):
        star = [line for line in block.split("\n") if "*  " in line]
        if star and star[0].rstrip().split(" [")[0].endswith(PER_REQUEST):
            return sum(int(m.replace(",", "")) for m in re.findall(r"\(([\d,]+)x\)", block))
    return 0


def by_group(profile):
    """Exclusive instructions by group of symbols."""
    text = subprocess.run(["callgrind_annotate", "--threshold=100", profile], capture_output=True, text=True,
                          check=True).stdout
    out = {}
    for line in text.splitlines():
        m = re.match(r"\s*([\d,]+) \(\s*[\d.]+%\)\s+(.*)", line)
        if not m or m.group(2).startswith(("PROGRAM TOTALS", "./misc", "./nptl")):
            continue
        obj = re.search(r" \[(.*)\]$", m.group(2))
        name = re.sub(r" \[.*\]$", "", m.group(2)).replace("???:", "")
        if "NIOThread" in name or "setupThread" in name or "ThreadOps" in name:
            continue  # the thread's entry points: inclusive of everything
        g = group(name, obj.group(1) if obj else "")
        out[g] = out.get(g, 0) + int(m.group(1).replace(",", ""))
    return out


@functools.lru_cache(maxsize=None)
def lock_addresses(binary):
    """Addresses of the binary's atomic read-modify-write instructions (each
    object disassembled once a run, not once a route)."""
    # Read line by line: the disassembly of the release binary is about 300 MB of text.
    atomic = re.compile(r"\s*([0-9a-f]+):\s+(?:lock |xchg\s+%\w+,\s*\(|xchg\s+\S*\()")
    found = set()
    with subprocess.Popen(["objdump", "-d", "--no-show-raw-insn", binary], stdout=subprocess.PIPE, text=True) as p:
        for line in p.stdout:
            m = atomic.match(line)
            if m:
                found.add(int(m.group(1), 16))
    if p.returncode != 0:
        raise SystemExit(f"objdump failed on {binary} (exit {p.returncode})")
    return found


def atomics(profile):
    """Executions of atomic read-modify-write instructions (a profile made
    with --dump-instr=yes), by (object, function), in every object whose
    file is on disk: the gateway's binary and the shared libraries it calls
    (libc's locks and cancellation points, the allocator's). Callgrind gives
    a shared object's instructions at their offsets in its file, as objdump
    numbers them."""
    fn, ob, addr, skip = None, None, 0, False
    cost = {}
    event = 2  # the column of Ir: after the positions (`instr line` with --dump-instr=yes)
    # Compressed names, "(n) name" once and "(n)" after, are numbered
    # separately for objects, files and functions.
    names = {"ob": {}, "fl": {}, "fn": {}}
    kinds = {"ob=": "ob", "cob=": "ob", "fl=": "fl", "fi=": "fl", "fe=": "fl", "cfi=": "fl", "cfl=": "fl",
             "fn=": "fn", "cfn=": "fn"}

    def name(kind, token):
        m = re.match(r"\((\d+)\)(?: (.*))?", token)
        if not m:
            return token
        if m.group(2):
            names[kind][m.group(1)] = m.group(2)
        return names[kind].get(m.group(1), token)
    for line in open(profile, errors="replace"):
        key = line.split("=", 1)[0] + "=" if "=" in line[:5] else ""
        if line.startswith("positions:"):
            event = len(line.split()) - 1
        elif key in kinds:
            value = name(kinds[key], line[len(key):].strip())
            if key == "fn=":
                fn = value
            elif key == "ob=":
                ob = value
        elif line.startswith("calls="):
            skip = True  # the next line is the call's inclusive cost, not the instruction's own
        elif line[:1] in "0123456789+-*":
            parts = line.split()
            position = parts[0]
            if position.startswith("0x"):
                addr = int(position, 16)
            elif position[0] in "+-":
                step = int(position[1:], 16) if position[1:].startswith("0x") else int(position[1:])
                addr += step if position[0] == "+" else -step
            if skip:
                skip = False
            elif len(parts) > event:
                k = (ob, fn, addr)
                cost[k] = cost.get(k, 0) + int(parts[event])
    objects = {o for o, _, _ in cost if o}
    locks = {o: lock_addresses(o) for o in objects if os.path.isfile(o)}
    for o in sorted(objects - set(locks)):
        bench.log(f"no file for {o}: its atomic operations are not counted")
    by = {}
    for (o, f, a), c in cost.items():
        if a in locks.get(o, ()):
            by[(os.path.basename(o), f)] = by.get((os.path.basename(o), f), 0) + c
    return by


def main():
    for tool in ["valgrind", "callgrind_annotate", "callgrind_control", "objcopy", "objdump", "wrk"]:
        if not shutil.which(tool):
            raise SystemExit(f"missing {tool}: run `make bench-instructions` (it installs valgrind and the bench's tools)")
    if not os.path.exists(bench.GATEWAY):
        raise SystemExit(f"missing {bench.GATEWAY}: run `make bench-instructions` (it builds the release binary)")
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    os.makedirs(OUT, exist_ok=True)
    work = tempfile.mkdtemp(prefix="gateway-instructions-")
    # Valgrind 3.19 cannot read the DWARF 5 the Swift compiler writes: a copy
    # without debug sections (the symbol table, all the profile needs, stays).
    binary = os.path.join(work, "gateway")
    subprocess.run(["objcopy", "--strip-debug", bench.GATEWAY, binary], check=True)
    bench.ONLY[:] = ["gateway_full"]
    procs = {}
    results = {}
    try:
        procs = bench.start_servers(work)
        # One gateway under valgrind serves every route here, from
        # `filters.d` on the plain route's port (bench.py runs the app routes
        # in a second process on a port of their own).
        for name in ("gateway", "gateway_app"):
            if name in procs:
                procs.pop(name).stop()
        for route in ROUTES:
            bench.PORTS[route] = bench.PORTS["gateway_plain"]
        profile = os.path.join(OUT, "callgrind.out")
        for old in [f for f in os.listdir(OUT) if f.startswith("callgrind.out")]:
            os.remove(os.path.join(OUT, old))
        wait = bench.wait_port
        bench.wait_port = lambda port, timeout=20: wait(port, 180)  # starting under valgrind is slow
        procs["gateway"] = bench.Proc("gateway", ["valgrind", "--tool=callgrind", "--dump-instr=yes",
                                                  f"--callgrind-out-file={profile}",
                                                  binary, "serve", "--config", os.path.join(work, "filters.d"),
                                                  "--state", work, "--threads", "1", "--no-access-log",
                                                  "--log-level", "warning"],
                                      bench.PROXY_CORE, work, bench.PORTS["gateway_plain"], True)
        bench.wait_port = wait
        pid = str(procs["gateway"].p.pid)
        for n, route in enumerate(ROUTES, start=1):
            target = bench.url(route)
            from_file = route in bench.FROM_FILE
            # Warm-up: connections, caches, the pool to the upstream.
            headers = bench.file_args(route, work, 3, rate=3000) if from_file else []
            bench.run_wrk(target, 64, 3, parse=False, headers=headers)
            headers = bench.file_args(route, work, SECONDS + 3, rate=3000) if from_file else []
            box = {}
            load = threading.Thread(target=lambda: box.update(r=bench.run_wrk(
                target, 64, SECONDS, headers=headers, check_wrap=route in bench.UNREPEATABLE)))
            load.start()
            time.sleep(3)  # wrk's connections open (their handshakes are not a request's cost)
            subprocess.run(["callgrind_control", "-z", pid], capture_output=True, check=True)
            time.sleep(SECONDS - 6)
            subprocess.run(["callgrind_control", "-d", route, pid], capture_output=True, check=True)
            load.join()
            if box["r"]["errors"]:
                raise SystemExit(f"{route}: {box['r']['errors']} requests were not answered 2xx")
            dump = f"{profile}.{n}"
            count = requests_in(dump)
            total = int(re.search(r"^summary: (\d+)", open(dump).read(), re.M).group(1))
            if count == 0:
                raise SystemExit(f"{route}: no request in the profile {dump}")
            groups = {g: round(v / count) for g, v in sorted(by_group(dump).items(), key=lambda x: -x[1])}
            held = atomics(dump)
            atomic = sum(held.values())
            top = {f"{re.sub(r'[(].*', '', f)[:60]} [{o}]": round(v / count, 1)
                   for (o, f), v in sorted(held.items(), key=lambda x: -x[1])[:8]}
            by_object = {}
            for (o, _), v in held.items():
                by_object[o] = by_object.get(o, 0) + v
            results[route] = {"requests": count, "instructions_per_request": round(total / count), "by_group": groups,
                              "atomics_per_request": round(atomic / count, 1), "atomics_by_function": top,
                              "atomics_by_object": {o: round(v / count, 1) for o, v in
                                                    sorted(by_object.items(), key=lambda x: -x[1])},
                              "profile": dump}
            bench.log(f"{route:18} {count:7d} requests  {total / count:9.0f} instructions a request"
                      f"  {atomic / count:6.1f} atomic operations a request")
    finally:
        for p in procs.values():
            p.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n{'instructions a request':24}" + "".join(f"{r:>18}" for r in results))
    print(f"{'total':24}" + "".join(f"{results[r]['instructions_per_request']:18d}" for r in results))
    names = sorted({g for r in results.values() for g in r["by_group"]},
                   key=lambda g: -max(r["by_group"].get(g, 0) for r in results.values()))
    for g in names:
        print(f"  {g:22}" + "".join(f"{results[r]['by_group'].get(g, 0):18d}" for r in results))
    print(f"{'atomic operations':24}" + "".join(f"{results[r]['atomics_per_request']:18.1f}" for r in results))
    with open(os.path.join(OUT, "instructions.json"), "w") as f:
        json.dump({"machine": bench.machine(), "date": time.strftime("%Y-%m-%d"), "seconds": SECONDS,
                   "routes": results}, f, indent=2)
    print(f"\nprofiles in {OUT} (callgrind_annotate --inclusive=yes FILE)")


if __name__ == "__main__":
    main()
