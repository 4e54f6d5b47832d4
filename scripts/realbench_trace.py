#!/usr/bin/env python3
"""Convergence tail diagnostic: starts N agents like scripts/realbench.py (seed, then all joiners
at once on 127.1.x.y) and prints, every second until all converge, which nodes do not yet list
all N ALIVE and which members they lack. Usage: python3 scripts/realbench_trace.py [N] [binary]"""
import collections
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import realbench as rb  # noqa: E402

n = int(sys.argv[1]) if len(sys.argv) > 1 else 100
binary = os.path.abspath(sys.argv[2] if len(sys.argv) > 2 else "target/release/meshd")
c = rb.Cluster(binary, n, tempfile.mkdtemp(prefix="realbench-trace-"))
try:
    c.start(0)
    while rb.http_get(0, "/ha/health")[0] is None:
        time.sleep(0.05)
    for i in range(1, n):
        c.start(i)
    t = time.monotonic()
    while time.monotonic() - t < rb.PHASE_DEADLINE:
        time.sleep(1.0)
        missing, not_alive, lagging = collections.Counter(), collections.Counter(), []
        for i in range(n):
            body, _ = rb.http_get(i, "/ha/status")
            if body is None:
                continue
            states = {m["name"]: m["state"] for m in json.loads(body)["nodes"]}
            if sum(s == "ALIVE" for s in states.values()) != n:
                lagging.append(rb.name(i))
                for j in range(n):
                    s = states.get(rb.name(j))
                    if s is None:
                        missing[rb.name(j)] += 1
                    elif s != "ALIVE":
                        not_alive[(rb.name(j), s)] += 1
        print(f"t={time.monotonic() - t:.1f}s lagging {lagging[:10]} ({len(lagging)}); lacking "
              f"(member: #nodes) {missing.most_common(8)}; not ALIVE {not_alive.most_common(4)}",
              flush=True)
        if not lagging:
            break
finally:
    c.kill_all()
