#!/usr/bin/env python3
"""Real-process benchmark of meshd's replicated stores: N `meshd agent` processes on 127.1.x.y
loopback (the addresses and cluster start of scripts/realbench.py), under a write load.

Usage:
    python3 scripts/storebench.py [--nodes 100] [--rate 1000] [--secs 60] [--mode one|all]
                                  [--binary target/release/meshd] [--seed S] [--encrypt]

Per run, once the cluster has converged:
  quiet      a window as long as the load, for the baseline CPU and bytes per node
  load       --rate writes a second cluster-wide for --secs seconds, each PUT of a fresh key of
             the lww store `bench` (16 writer threads, keep-alive connections): --mode one sends
             every write to node 0, --mode all spreads them over every node. Beside them, 10
             probe writes a second go to the store `probe`, whose changes every node streams
             to this script over SSE (GET /ha/stores/probe/watch): write -> visible at every
             node is measured on those (from the moment the PUT is sent to the last node's
             event). Halfway through, one node that does not write is killed (kill -9): the
             time until every survivor shows it DOWN, to compare with the quiet figures.
  settle     then every survivor must list every acknowledged key of `bench` (GET /ha/stores):
             acknowledged but missing = lost.
Measured: writes achieved per second, p50/p99 write -> visible at all, lost, CPU per node
(core-s/s) and UDP bytes sent per node per second during the load against the quiet window,
kill -9 -> DOWN everywhere under load.
"""
import argparse
import http.client
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import realbench as rb  # noqa: E402

PROBES_PER_S = 10
WRITERS = 16
SETTLE_S = 60.0


class Watchers:
    """One SSE stream per node on the probe store; records when each probe key arrived."""

    def __init__(self, nodes):
        self.seen = {}  # key -> {node: time}
        self.lock = threading.Lock()
        self.stop = False
        self.threads = [threading.Thread(target=self.follow, args=(i,), daemon=True) for i in nodes]
        for t in self.threads:
            t.start()

    def follow(self, i):
        while not self.stop:
            try:
                s = socket.create_connection((rb.ip(i), 39528), timeout=2)
                s.sendall(b"GET /ha/stores/probe/watch HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
                s.settimeout(1.0)
                buf = b""
                while not self.stop:
                    try:
                        chunk = s.recv(65536)
                    except socket.timeout:
                        continue
                    if not chunk:
                        break
                    now = time.monotonic()
                    buf += chunk
                    while b"\n" in buf:
                        line, buf = buf.split(b"\n", 1)
                        if line.startswith(b"data:"):
                            self.record(i, line[5:], now)
            except OSError:
                time.sleep(0.2)

    def record(self, i, data, now):
        try:
            body = json.loads(data)
        except ValueError:
            return
        keys = [body["key"]] if "key" in body else [e["key"] for e in body.get("entries", [])]
        with self.lock:
            for k in keys:
                self.seen.setdefault(k, {}).setdefault(i, now)


def put(conn, path, value):
    body = json.dumps({"value": value})
    conn.request("PUT", path, body=body, headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    resp.read()
    return resp.status


def writer(rate_each, secs, targets, prefix, acked, stop_at, errors):
    """Writes fresh keys at `rate_each` a second to `targets` in turn until `stop_at`."""
    conns = {}
    n = 0
    t0 = time.monotonic()
    while True:
        due = t0 + n / rate_each
        now = time.monotonic()
        if due >= stop_at:
            break
        if due > now:
            time.sleep(due - now)
        target = targets[n % len(targets)]
        key = f"{prefix}-{n}"
        try:
            conn = conns.get(target)
            if conn is None:
                conn = conns[target] = http.client.HTTPConnection(rb.ip(target), 39528, timeout=5)
            if put(conn, f"/ha/stores/bench/{key}", n) == 200:
                acked.append(key)
            else:
                errors.append(key)
        except (OSError, http.client.HTTPException):
            conns.pop(target, None)
            errors.append(key)
        n += 1


def prober(secs, targets, stop_at, sent):
    conns = {}
    n = 0
    t0 = time.monotonic()
    while True:
        due = t0 + n / PROBES_PER_S
        if due >= stop_at:
            break
        now = time.monotonic()
        if due > now:
            time.sleep(due - now)
        target = targets[n % len(targets)]
        key = f"p{n}"
        try:
            conn = conns.get(target)
            if conn is None:
                conn = conns[target] = http.client.HTTPConnection(rb.ip(target), 39528, timeout=5)
            t = time.monotonic()
            if put(conn, f"/ha/stores/probe/{key}", n) == 200:
                sent[key] = t
        except (OSError, http.client.HTTPException):
            conns.pop(target, None)
        n += 1


def window_stats(c, nodes, seconds, during=None):
    pids = {i: c.procs[i].pid for i in nodes}
    m0 = rb.metrics_all(nodes)
    cpu0 = {i: rb.proc_cpu_seconds(pids[i]) for i in nodes}
    t0 = time.monotonic()
    if during:
        during()
    time.sleep(max(0.0, seconds - (time.monotonic() - t0)))
    live = [i for i in nodes if c.procs[i].poll() is None]
    cpu1 = {i: rb.proc_cpu_seconds(pids[i]) for i in live}
    window = time.monotonic() - t0
    m1 = rb.metrics_all(live)
    keys = ['meshd_udp_bytes_total{direction="sent",kind="swim"}',
            'meshd_udp_bytes_total{direction="sent",kind="quic"}']
    ok = [i for i in live if m0.get(i) and m1.get(i)]
    sent = sum(m1[i].get(k, 0) - m0[i].get(k, 0) for i in ok for k in keys) / window / max(1, len(ok))
    cpu = sum(cpu1[i] - cpu0[i] for i in live) / window / max(1, len(live))
    rss = statistics.median(rb.proc_rss_kib(pids[i]) / 1024 for i in live)
    return {"cpu": cpu, "udp_bytes": sent, "rss_mib": rss, "window": window}


def run(args, rng):
    n = args.nodes
    key = None
    if args.encrypt:
        key = subprocess.check_output([args.binary, "keygen"]).decode().strip()
    workdir = tempfile.mkdtemp(prefix=f"storebench-{n}-")
    c = rb.Cluster(args.binary, n, workdir, key)
    r = {"n": n, "rate": args.rate, "secs": args.secs, "mode": args.mode}
    try:
        rb.log(f"N={n}: starting the cluster, logs in {workdir}")
        c.start(0)
        end = time.monotonic() + 20
        while rb.http_get(0, "/ha/health")[0] is None:
            if time.monotonic() > end:
                raise RuntimeError("seed did not come up")
            time.sleep(0.05)
        for i in range(1, n):
            c.start(i)
        everyone = list(range(n))
        done, _, timed_out = rb.poll_until(
            everyone, lambda i, b, t: (m := rb.ALIVE_COUNT.search(b)) is not None and int(m.group(1)) == n)
        if timed_out:
            raise RuntimeError("cluster did not converge")
        rb.log(f"N={n}: converged; quiet window {args.secs} s")
        # The node killed under load writes nothing, so no acknowledged write dies with it.
        victim = rng.choice([i for i in everyone if i != 0])
        writers_at = [0] if args.mode == "one" else [i for i in everyone if i != victim]
        quiet = window_stats(c, everyone, args.secs)
        rb.log(f"N={n}: quiet: cpu {quiet['cpu']:.5f}, UDP sent {quiet['udp_bytes']:.0f} B/s/node")

        watchers = Watchers(everyone)
        time.sleep(1.0)
        acked, errors, sent = [], [], {}
        crash = {}

        def load():
            stop_at = time.monotonic() + args.secs
            threads = [threading.Thread(target=writer, args=(
                args.rate / WRITERS, args.secs, writers_at[w::WRITERS] or writers_at, f"w{w}",
                acked, stop_at, errors)) for w in range(WRITERS)]
            threads.append(threading.Thread(target=prober, args=(args.secs, writers_at, stop_at, sent)))
            for t in threads:
                t.start()
            time.sleep(args.secs / 2)
            survivors = [i for i in everyone if i != victim]
            vname = rb.name(victim)
            rb.log(f"N={n}: kill -9 {vname} under load")
            t_kill = time.monotonic()
            c.procs[victim].kill()
            done, _, timed_out = rb.poll_until(
                survivors, lambda i, b, t: rb.member_state(b, vname) == "DOWN", deadline_s=60)
            crash["down_s"] = None if timed_out else max(done.values()) - t_kill
            for t in threads:
                t.join()
            crash["load_s"] = time.monotonic() - started
        started = time.monotonic()
        loaded = window_stats(c, everyone, args.secs, during=load)
        rb.log(f"N={n}: load done: {len(acked)} acknowledged, {len(errors)} not, "
               f"cpu {loaded['cpu']:.5f}, UDP sent {loaded['udp_bytes']:.0f} B/s/node; "
               f"kill -9 -> DOWN everywhere {crash.get('down_s')}")
        survivors = [i for i in everyone if i != victim]
        # settle: every survivor lists every acknowledged key
        want = len(acked)

        def complete(i, body, t):
            try:
                stores = json.loads(body)["stores"]
            except (ValueError, KeyError):
                return False
            return any(s["name"] == "bench" and s["keys"] >= want for s in stores)
        t_settle = time.monotonic()
        done, _, _ = rb.poll_until(survivors, complete, deadline_s=SETTLE_S, path="/ha/stores")
        settled = time.monotonic() - t_settle
        lost_nodes = sorted(set(survivors) - set(done))
        # How far short the nodes that did not settle are.
        short = []
        for i in lost_nodes:
            body, _ = rb.http_get(i, "/ha/stores", timeout=5.0)
            held = 0
            if body is not None:
                held = next((s["keys"] for s in json.loads(body)["stores"] if s["name"] == "bench"), 0)
            short.append(want - held)
        r["keys_short_max"] = max(short) if short else 0
        r["keys_short_median"] = statistics.median(short) if short else 0
        watchers.stop = True
        delays = []
        incomplete = 0
        for key_, t_sent in sent.items():
            arrivals = watchers.seen.get(key_, {})
            got = [arrivals[i] for i in survivors if i in arrivals]
            if len(got) == len(survivors):
                delays.append(max(got) - t_sent)
            else:
                incomplete += 1
        delays.sort()
        r.update({
            "writes_acked": len(acked), "writes_failed": len(errors),
            "load_s": crash["load_s"], "achieved_rate": len(acked) / crash["load_s"],
            "probes": len(sent), "probes_incomplete": incomplete,
            "visible_p50_s": statistics.median(delays) if delays else None,
            "visible_p99_s": delays[min(len(delays) - 1, int(round(0.99 * (len(delays) - 1))))] if delays else None,
            "nodes_missing_keys": len(lost_nodes), "settle_s": settled,
            "cpu_quiet": quiet["cpu"], "cpu_load": loaded["cpu"],
            "udp_bytes_quiet": quiet["udp_bytes"], "udp_bytes_load": loaded["udp_bytes"],
            "rss_quiet_mib": quiet["rss_mib"], "rss_load_mib": loaded["rss_mib"],
            "crash_down_under_load_s": crash.get("down_s"),
        })
        rb.log(f"N={n}: {json.dumps(r)}")
        return r
    finally:
        c.kill_all()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=100)
    ap.add_argument("--rate", type=float, default=1000.0)
    ap.add_argument("--secs", type=float, default=60.0)
    ap.add_argument("--mode", choices=["one", "all"], default="all")
    ap.add_argument("--binary", default="target/release/meshd")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--encrypt", action="store_true")
    args = ap.parse_args()
    rb.require_release_build(os.path.abspath(args.binary))
    rng = random.Random(args.seed)
    r = run(args, rng)
    f = lambda v, spec: "n/a" if v is None else format(v, spec)  # noqa: E731
    print(f"\nmeshd store benchmark, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
          f"{os.cpu_count()} CPUs, `scripts/storebench.py --nodes {args.nodes} --rate {args.rate:g} "
          f"--secs {args.secs:g} --mode {args.mode}{' --encrypt' if args.encrypt else ''}`\n")
    print("| row | value |\n|---|---|")
    rows = [
        ("writes acknowledged (per second achieved)", f"{r['writes_acked']} in {r['load_s']:.0f} s ({r['achieved_rate']:.0f}/s); {r['writes_failed']} failed"),
        ("write → visible at every node, p50 / p99 (10 probe writes a second)",
         f"{f(r['visible_p50_s'], '.3f')} / {f(r['visible_p99_s'], '.3f')} s over {r['probes']} probes ({r['probes_incomplete']} not seen everywhere)"),
        ("acknowledged writes missing at a survivor after settling",
         f"{r['nodes_missing_keys']} nodes short (by {r['keys_short_median']} keys in the median, {r['keys_short_max']} at most) after {r['settle_s']:.1f} s"),
        ("CPU per node, quiet → under load (core-s/s)", f"{r['cpu_quiet']:.5f} → {r['cpu_load']:.5f}"),
        ("UDP bytes sent per node per s, quiet → under load", f"{r['udp_bytes_quiet']:.0f} → {r['udp_bytes_load']:.0f}"),
        ("RSS per node, median, quiet → under load (MiB)", f"{r['rss_quiet_mib']:.1f} → {r['rss_load_mib']:.1f}"),
        ("kill -9 → DOWN at every survivor, under load", f"{f(r['crash_down_under_load_s'], '.2f')} s"),
    ]
    for k, v in rows:
        print(f"| {k} | {v} |")


if __name__ == "__main__":
    main()
