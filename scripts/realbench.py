#!/usr/bin/env python3
"""Real-process benchmark of meshd: N `meshd agent` processes on 127.1.x.y loopback.

Usage:
    python3 scripts/realbench.py [--nodes 100,200] [--runs 3] [--binary target/release/meshd]
                                 [--quiet 30] [--settle 0] [--seed S] [--encrypt]
                                 [--crash-only-500]

--encrypt gives every agent the same cluster key (MESHD_ENCRYPT_KEY, made with `meshd keygen`).

Per run: node 0 (the seed) starts, then all N-1 joiners at once against it. Measured:
  convergence   last start -> every node lists all N ALIVE (max over nodes of each node's first
                poll that showed it)
  quiet window  CPU (scheduler run time of every thread), RSS, UDP payload bytes sent (router_mesh_bytes_total
                {direction="sent"}, push-pull stream bytes included), false DOWN of live nodes
  crash         kill -9 of a random non-seed node -> first survivor showing it SUSPECTED/DOWN,
                and -> every survivor showing it DOWN
  leave         SIGTERM of another random non-seed node -> every survivor shows it LEAVING (or
                no longer lists it)
Times come from polling every node's /ha/status over HTTP with 32 threads; each node is polled
again as soon as the previous sweep is over, so a node's time is late by at most one sweep
period: the longest sweep is printed as the resolution.

Addresses: node i is 127.1.(i//250).(i%250+1) with the default ports 39527/39528 (the test
suites use 127.0.x.y). Python 3.11 standard library only.
"""
import argparse
import concurrent.futures as cf
import json
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

PHASE_DEADLINE = 120.0
POOL = cf.ThreadPoolExecutor(max_workers=32)

MEMBERLIST = {  # row -> (N=100, N=200) as given in the issue
    "convergence_s": ("2.3 s [2.3]", "3.2 s [133]"),
    "first_suspicion_s": ("2.0 s", "2.1 s"),
    "crash_down_s": ("10.4 s [10.6]", "12.0 s [12.9]"),
    "leave_s": ("0.69 s [0.84]", "0.85 s [57]"),
    "cpu": ("0.0021", "0.0019"),
    "rss_mib": ("11.8", "12.1"),
    "bytes_sent": ("91", "91"),
    "udp_bytes": ("91 + push-pull on TCP", "91 + push-pull on TCP"),
    "false_down": ("0", "0"),
}
GOALS = {
    "convergence_s": "≤ 1 s (N=100); every run ≤ 3 s (N=200)",
    "first_suspicion_s": "—",
    "crash_down_s": "≤ 5 s (N=100)",
    "leave_s": "≤ 0.35 s (N=100); every run ≤ 1 s (N=200)",
    "cpu": "≤ 0.001",
    "rss_mib": "≤ 6",
    "bytes_sent": "≤ memberlist's (91)",
    "udp_bytes": "—",
    "false_down": "0",
}
ROWS = [
    ("convergence_s", "convergence, last start → every node lists all N ALIVE (s)"),
    ("first_suspicion_s", "first suspicion after kill -9 (s)"),
    ("crash_down_s", "kill -9 → every survivor shows DOWN (s)"),
    ("leave_s", "SIGTERM → every survivor shows it left (s)"),
    ("cpu", "CPU per node, quiet (core-s/s)"),
    ("rss_mib", "RSS per node, median (MiB)"),
    ("bytes_sent", "UDP payload bytes sent per node, quiet: SWIM datagrams (B/s)"),
    ("udp_bytes", "… all UDP payload: SWIM + every QUIC packet of push-pull (B/s)"),
    ("false_down", "false DOWN of a live node in the quiet window"),
]


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def ip(i):
    return f"127.1.{i // 250}.{i % 250 + 1}"


def name(i):
    return f"b{i}"


def http_get(i, path, timeout=1.0):
    """Returns (bytes, time the answer arrived) or (None, time)."""
    try:
        with urllib.request.urlopen(f"http://{ip(i)}:39528{path}", timeout=timeout) as r:
            body = r.read()
        return body, time.monotonic()
    except Exception:
        return None, time.monotonic()


ALIVE_COUNT = re.compile(rb'"alive_count":(\d+)')


def member_state(body, who):
    """State string of member `who` in a /ha/status body, or None if it is not listed."""
    idx = body.find(b'"name":"' + who.encode() + b'"')
    if idx < 0:
        return None
    s = body.find(b'"state":"', idx)
    if s < 0:
        return None
    s += 9
    return body[s:body.find(b'"', s)].decode()


def poll_until(nodes, check, deadline_s=PHASE_DEADLINE, path="/ha/status"):
    """Polls `path` (/ha/status) of every node in `nodes` until check(body) is true for each.

    check returns True when that node is done. Returns (done_time per node, longest sweep
    seconds, timed_out). A node that does not answer is polled again next sweep."""
    pending = set(nodes)
    done = {}
    longest = 0.0
    end = time.monotonic() + deadline_s
    while pending and time.monotonic() < end:
        t0 = time.monotonic()
        futs = {POOL.submit(http_get, i, path): i for i in pending}
        for f in cf.as_completed(futs):
            i = futs[f]
            body, t = f.result()
            if body is not None and check(i, body, t):
                done[i] = t
                pending.discard(i)
        longest = max(longest, time.monotonic() - t0)
    return done, longest, bool(pending)


def proc_cpu_seconds(pid):
    """CPU time of every thread of `pid`, in seconds: the scheduler's nanosecond count
    (/proc/PID/task/*/schedstat), since utime+stime come in 10 ms ticks and a quiet agent
    earns about one tick in a 30 s window."""
    total = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0.0
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass  # the thread ended in between
    return total / 1e9


def proc_rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


METRIC = re.compile(r'^([a-zA-Z_:]+)(\{[^}]*\})?\s+([0-9.eE+-]+|NaN)$')


def metrics(i):
    body, _ = http_get(i, "/metrics", timeout=2.0)
    out = {}
    if body is None:
        return None
    for line in body.decode().splitlines():
        m = METRIC.match(line)
        if m and not m.group(1).startswith("router_mesh_peer_connections"):
            out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return out


def metrics_all(nodes):
    return dict(zip(nodes, POOL.map(metrics, nodes)))


class Cluster:
    def __init__(self, binary, n, workdir, key=None):
        self.binary, self.n, self.workdir, self.key = binary, n, workdir, key
        self.procs = {}

    def start(self, i):
        args = [self.binary, "agent", "--mesh-server-name", name(i), "--mesh-host", ip(i),
                "--host", ip(i)]
        if i != 0:
            args += ["--mesh-peer-urls", f"{ip(0)}:39527"]
        out = open(os.path.join(self.workdir, f"{name(i)}.out"), "wb")
        err = open(os.path.join(self.workdir, f"{name(i)}.err"), "wb")
        env = dict(os.environ, RUST_LOG=os.environ.get("REALBENCH_RUST_LOG", "warn"))
        if self.key:
            env["MESHD_ENCRYPT_KEY"] = self.key
        try:
            self.procs[i] = subprocess.Popen(args, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                             env=env)
        finally:
            out.close()
            err.close()

    def kill_all(self):
        for p in self.procs.values():
            if p.poll() is None:
                try:
                    p.kill()
                except ProcessLookupError:
                    pass
        for p in self.procs.values():
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                log(f"pid {p.pid} did not exit after SIGKILL")
        left = [p.pid for p in self.procs.values() if p.poll() is None]
        if left:
            log(f"LEFTOVER processes: {left}")
        return left


def one_run(binary, n, quiet_s, rng, crash_only, key=None, settle_s=0.0):
    r = {"n": n}
    workdir = tempfile.mkdtemp(prefix=f"realbench-{n}-")
    c = Cluster(binary, n, workdir, key)
    try:
        log(f"N={n}: starting seed, logs in {workdir}")
        c.start(0)
        # the seed must answer before the joiners start (they would retry with backoff otherwise)
        end = time.monotonic() + 20
        while http_get(0, "/ha/health")[0] is None:
            if time.monotonic() > end:
                raise RuntimeError("seed did not come up within 20 s")
            time.sleep(0.05)
        log(f"N={n}: starting {n - 1} joiners at once")
        t_start0 = time.monotonic()
        for i in range(1, n):
            c.start(i)
        t_last = time.monotonic()
        r["start_spread_s"] = t_last - t_start0
        everyone = list(range(n))

        def converged(i, body, t):
            m = ALIVE_COUNT.search(body)
            return m is not None and int(m.group(1)) == n
        done, sweep, timed_out = poll_until(everyone, converged)
        r["conv_sweep_s"] = sweep
        if timed_out:
            r["convergence_s"] = None
            log(f"N={n}: convergence TIMED OUT after {PHASE_DEADLINE:.0f} s: "
                f"{n - len(done)} nodes never listed {n} ALIVE")
            return r
        r["convergence_s"] = max(done.values()) - t_last
        r["convergence_p50_s"] = statistics.median(done.values()) - t_last
        r["convergence_seed_s"] = done[0] - t_last
        log(f"N={n}: converged {r['convergence_s']:.2f} s after last start (half the nodes "
            f"{r['convergence_p50_s']:.2f} s, seed {r['convergence_seed_s']:.2f} s) "
            f"(starting took {r['start_spread_s']:.2f} s; poll sweep ≤ {sweep:.2f} s)")

        pids = {i: c.procs[i].pid for i in everyone}
        if not crash_only:
            if settle_s > 0:
                log(f"N={n}: settling {settle_s:.0f} s before the quiet window")
                time.sleep(settle_s)
            log(f"N={n}: quiet window {quiet_s:.0f} s")
            before_status = poll_until(everyone, lambda i, b, t: True)[0]
            m0 = metrics_all(everyone)
            cpu0 = {i: proc_cpu_seconds(pids[i]) for i in everyone}
            t0 = time.monotonic()
            # a few status sweeps during the window, to catch a transient DOWN
            bad = set()
            sweeps = 3
            for k in range(sweeps):
                time.sleep(quiet_s / (sweeps + 1))
                def alive_all(i, body, t):
                    m = ALIVE_COUNT.search(body)
                    if m is None or int(m.group(1)) != n:
                        bad.add(i)
                    return True
                poll_until(everyone, alive_all, deadline_s=5)
            time.sleep(max(0.0, quiet_s - (time.monotonic() - t0)))
            cpu1 = {i: proc_cpu_seconds(pids[i]) for i in everyone}
            t1 = time.monotonic()
            m1 = metrics_all(everyone)
            window = t1 - t0
            rss = [proc_rss_kib(pids[i]) / 1024 for i in everyone]
            r["cpu"] = sum(cpu1[i] - cpu0[i] for i in everyone) / window / n
            r["rss_mib"] = statistics.median(rss)
            r["rss_max_mib"] = max(rss)
            key_b = 'meshd_udp_bytes_total{direction="sent",kind="swim"}'
            key_q = 'meshd_udp_bytes_total{direction="sent",kind="quic"}'
            key_pk = 'router_mesh_batches_total{direction="sent"}'
            key_pp = 'router_mesh_snapshot_trigger_total'
            ok = [i for i in everyone if m0.get(i) and m1.get(i)]
            if not ok:
                log(f"N={n}: no node answered /metrics; byte counts unavailable")
                ok, m0, m1 = everyone, {i: {} for i in everyone}, {i: {} for i in everyone}
                r["metrics_missing"] = True
            r["bytes_sent"] = sum(m1[i].get(key_b, 0) - m0[i].get(key_b, 0) for i in ok) / window / len(ok)
            quic = sum(m1[i].get(key_q, 0) - m0[i].get(key_q, 0) for i in ok) / window / len(ok)
            r["udp_bytes"] = r["bytes_sent"] + quic
            if not any(key_b in m1[i] for i in ok):
                log(f"N={n}: this binary has no meshd_udp_bytes_total; byte rows unavailable")
                r["metrics_missing"] = True
            r["packets_sent"] = sum(m1[i].get(key_pk, 0) - m0[i].get(key_pk, 0) for i in ok) / window / len(ok)
            r["pushpull"] = sum(m1[i].get(key_pp, 0) - m0[i].get(key_pp, 0) for i in ok)
            down_gauge = sum(m1[i].get('meshd_members{state="down"}', 0) for i in ok)
            susp = sum(m1[i].get("meshd_suspicions_raised_total", 0)
                       - m0[i].get("meshd_suspicions_raised_total", 0) for i in ok)
            refuted = sum(m1[i].get("meshd_suspicions_refuted_total", 0)
                          - m0[i].get("meshd_suspicions_refuted_total", 0) for i in ok)
            r["false_down"] = len(bad) + int(down_gauge)
            r["suspicions_quiet"] = int(susp)
            r["refutations_quiet"] = int(refuted)
            if r.get("metrics_missing"):
                r["bytes_sent"] = r["packets_sent"] = r["udp_bytes"] = None
                r["bytes_sent_"] = 0
            log(f"N={n}: cpu {r['cpu']:.5f} core-s/s/node, RSS median {r['rss_mib']:.1f} MiB "
                f"(max {r['rss_max_mib']:.1f}), sent {r['bytes_sent']} B/s/node of SWIM in "
                f"{r['packets_sent']} msgs/s/node, {r['udp_bytes']} B/s/node of UDP with "
                f"push-pull over QUIC ({r['pushpull']:.0f} push-pull exchange "
                f"sides in the window), false DOWN {r['false_down']}, suspicions raised "
                f"{r['suspicions_quiet']}, refutations {r['refutations_quiet']}")

        victim = rng.randrange(1, n)
        survivors = [i for i in everyone if i != victim]
        log(f"N={n}: kill -9 {name(victim)} (pid {pids[victim]})")
        first_susp = {}
        t_kill = time.monotonic()
        c.procs[victim].kill()
        vname = name(victim)

        def is_down(i, body, t):
            st = member_state(body, vname)
            if st in ("SUSPECTED", "DOWN") and i not in first_susp:
                first_susp[i] = t
            return st == "DOWN"
        done, sweep, timed_out = poll_until(survivors, is_down)
        r["crash_sweep_s"] = sweep
        r["first_suspicion_s"] = (min(first_susp.values()) - t_kill) if first_susp else None
        if timed_out:
            r["crash_down_s"] = None
            log(f"N={n}: crash detection TIMED OUT after {PHASE_DEADLINE:.0f} s: "
                f"{len(survivors) - len(done)} survivors never showed DOWN")
        else:
            r["crash_down_s"] = max(done.values()) - t_kill
            r["crash_down_p50_s"] = statistics.median(done.values()) - t_kill
            r["crash_down_first_s"] = min(done.values()) - t_kill
            log(f"N={n}: first suspicion {r['first_suspicion_s']:.2f} s, first DOWN "
                f"{r['crash_down_first_s']:.2f} s, half DOWN {r['crash_down_p50_s']:.2f} s, DOWN everywhere "
                f"{r['crash_down_s']:.2f} s (poll sweep ≤ {sweep:.2f} s)")
        if crash_only:
            return r

        leaver = rng.choice([i for i in survivors if i != 0])
        rest = [i for i in survivors if i != leaver]
        lname = name(leaver)
        log(f"N={n}: SIGTERM {lname}")
        t_term = time.monotonic()
        c.procs[leaver].send_signal(signal.SIGTERM)

        def left(i, body, t):
            return member_state(body, lname) in ("LEAVING", None)
        done, sweep, timed_out = poll_until(rest, left)
        r["leave_sweep_s"] = sweep
        if timed_out:
            r["leave_s"] = None
            log(f"N={n}: leave TIMED OUT after {PHASE_DEADLINE:.0f} s")
        else:
            r["leave_s"] = max(done.values()) - t_term
            try:
                code = c.procs[leaver].wait(timeout=10)
            except subprocess.TimeoutExpired:
                code = "still running"
            r["leave_exit"] = code
            log(f"N={n}: leave reached every survivor in {r['leave_s']:.3f} s "
                f"(poll sweep ≤ {sweep:.2f} s), leaver exited with {code}")
        return r
    finally:
        left_over = c.kill_all()
        r["leftover"] = left_over


def fmt(vals, key):
    xs = [v for v in vals if v is not None]
    timeouts = len(vals) - len(xs)
    if not xs:
        if not vals:
            return "—"
        return "timeout" if key.endswith("_s") else "n/a"
    med = statistics.median(xs)
    worst = max(xs)
    if key == "false_down":
        s = f"{int(sum(xs))} (in {len(xs)} runs)"
    elif key == "cpu":
        s = f"{med:.5f} [{worst:.5f}]"
    elif key in ("rss_mib",):
        s = f"{med:.1f} [{worst:.1f}]"
    elif key in ("bytes_sent", "udp_bytes"):
        s = f"{med:.0f} [{worst:.0f}]"
    elif key == "leave_s":
        s = f"{med:.3f} [{worst:.3f}]"
    else:
        s = f"{med:.2f} [{worst:.2f}]"
    if timeouts and key.endswith("_s"):
        s += f" + {timeouts} timeout(s)"
    return s


def require_release_build(binary):
    """Refuses a binary built by `cargo bench` (same path, speed-optimised, twice the code)."""
    version = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout
    if "opt-level z" not in version:
        sys.exit(f"{binary} says {version.strip()!r}, not the release profile's opt-level z "
                 "(cargo bench overwrites target/release/meshd): run cargo build --release")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", default="100,200")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--binary", default="target/release/meshd")
    ap.add_argument("--quiet", type=float, default=30.0, help="quiet window seconds (30)")
    ap.add_argument("--settle", type=float, default=0.0,
                    help="seconds to wait after convergence before the quiet window (0): past "
                         "the agents' first vitals writes, for the steady state")
    ap.add_argument("--seed", type=int, default=None, help="random seed for victim choice")
    ap.add_argument("--encrypt", action="store_true",
                    help="every agent seals its gossip with one cluster key (from `meshd keygen`)")
    ap.add_argument("--crash-only-500", action="store_true",
                    help="shortcut: N=500, one run, convergence and crash detection only")
    a = ap.parse_args()
    if a.crash_only_500:
        sizes, runs, crash_only = [500], 1, True
    else:
        sizes, runs, crash_only = [int(x) for x in a.nodes.split(",")], a.runs, False
    binary = os.path.abspath(a.binary)
    if not os.access(binary, os.X_OK):
        sys.exit(f"no executable at {binary} (cargo build --release)")
    require_release_build(binary)
    # limits: each agent needs a few fds in this process only while it is spawned
    import resource
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)
    nproc = resource.getrlimit(resource.RLIMIT_NPROC)
    with open("/proc/sys/kernel/pid_max") as f:
        pid_max = int(f.read())
    with open("/proc/sys/kernel/threads-max") as f:
        threads_max = int(f.read())
    with open("/proc/meminfo") as f:
        mem_avail = int(next(l for l in f if l.startswith("MemAvailable")).split()[1]) // 1024
    log(f"limits: nofile {nofile}, nproc {nproc}, pid_max {pid_max}, threads-max {threads_max}, "
        f"MemAvailable {mem_avail} MiB, {os.cpu_count()} CPUs")
    rng = random.Random(a.seed)
    results = {n: [] for n in sizes}
    key = None
    if a.encrypt:
        key = subprocess.run([binary, "keygen"], check=True, capture_output=True,
                             text=True).stdout.strip()
        log("every agent seals its gossip with one cluster key (--encrypt)")

    def on_term(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)
    try:
        for n in sizes:
            for k in range(runs):
                log(f"=== N={n} run {k + 1}/{runs}")
                results[n].append(one_run(binary, n, a.quiet, rng, crash_only, key, a.settle))
                time.sleep(2)  # let sockets of the killed processes go away
    except KeyboardInterrupt:
        log("interrupted: processes killed; table of the finished runs follows")

    print()
    print(f"meshd real-process benchmark, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
          f"{os.cpu_count()} CPUs, `{' '.join(sys.argv)}`")
    print()
    print("median [worst] over the runs; memberlist's figures from the issue")
    print()
    hdr = "| row | " + " | ".join(f"meshd N={n} ({len(results[n])} runs)" for n in sizes)
    hdr += " | memberlist N=100 | memberlist N=200 | goal |"
    print(hdr)
    print("|" + "---|" * (len(sizes) + 4))
    for key, label in ROWS:
        if crash_only and key not in ("convergence_s", "first_suspicion_s", "crash_down_s"):
            continue
        cells = [fmt([r.get(key) for r in results[n] if key in r], key) for n in sizes]
        print(f"| {label} | " + " | ".join(cells) + f" | {MEMBERLIST[key][0]} | "
              f"{MEMBERLIST[key][1]} | {GOALS[key]} |")
    print()
    for n in sizes:
        for k, r in enumerate(results[n]):
            extras = {x: (round(v, 4) if isinstance(v, float) else v) for x, v in r.items()}
            print(f"N={n} run {k + 1}: {json.dumps(extras)}")
    print()
    print("Resolution: each value is late by at most one poll sweep of all nodes "
          "(`*_sweep_s` above: the longest sweep of that phase, 32 HTTP threads).")
    leftovers = [p for n in sizes for r in results[n] for p in r.get("leftover", [])]
    print(f"Leftover processes after teardown: {leftovers or 'none'}")


if __name__ == "__main__":
    main()
