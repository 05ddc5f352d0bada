#!/usr/bin/env python3
"""Single-message PUB from many connections against several nsqd builds, in alternating rounds.

For each nsqd given (ours and/or NSQ's own), each concurrency and each round, starts that nsqd
on a fresh data directory, runs `nsq_bench writer --batch-size 1`, and records msgs/s, ack
latency percentiles, nsqd CPU time per message (from /proc), and, for ours, messages per
fsync (from /stats' `retained`). Prints the medians as a table; `--json` writes every round.

    benches/single_pub.py --bench target/release/nsq_bench \
        --nsqd before=/tmp/old/nsqd --nsqd after=target/release/nsqd \
        --nsqd go=../shared/nsq-reference/bin/nsqd --concurrency 1,8,32,128 -- --sync-every 1

Arguments after `--` go to every nsqd (Go's nsqd gets only those it knows: it has no
--sync-every semantics of ours, so pass `--go-args` for it separately if needed).
"""

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def wait_for(port, deadline=10.0):
    end = time.time() + deadline
    while time.time() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nsqd did not listen on {port}")


def one_round(name, nsqd, extra, bench, concurrency, runfor, size):
    data = tempfile.mkdtemp(prefix="single-pub-")
    tcp, http = free_port(), free_port()
    args = [nsqd, "--data-path", data, "--tcp-address", f"127.0.0.1:{tcp}",
            "--http-address", f"127.0.0.1:{http}", "--broadcast-address", "127.0.0.1"] + extra
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(tcp)
        cpu_before = cpu_seconds(proc.pid)
        out = subprocess.run(
            [bench, "writer", "--nsqd-tcp-address", f"127.0.0.1:{tcp}", "--batch-size", "1",
             "--concurrency", str(concurrency), "--runfor", str(runfor), "--size", str(size),
             "--topic", "single_pub", "--json"],
            check=True, capture_output=True, text=True).stdout
        cpu = cpu_seconds(proc.pid) - cpu_before
        report = json.loads(out)
        fsyncs = None
        try:
            with urllib.request.urlopen(
                    f"http://127.0.0.1:{http}/stats?format=json&topic=single_pub", timeout=5) as r:
                stats = json.load(r)
            retained = (stats.get("topics") or [{}])[0].get("retained") or {}
            if retained.get("fsyncs"):
                fsyncs = retained["fsynced_messages"] / retained["fsyncs"]
        except (OSError, ValueError, KeyError, IndexError):
            pass
        published = report["published"]
        lat = report["ack_latency_ms"]
        return {
            "nsqd": name, "concurrency": concurrency, "msgs_per_s": report["published_per_s"],
            "p50_ms": lat["p50"], "p99_ms": lat["p99"], "p999_ms": lat["p99.9"],
            "cpu_us_per_msg": cpu / published * 1e6 if published else None,
            "msgs_per_fsync": fsyncs,
        }
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(data, ignore_errors=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bench", required=True, help="nsq_bench binary")
    p.add_argument("--nsqd", action="append", required=True, help="NAME=PATH, repeatable")
    p.add_argument("--go", action="append", default=[],
                   help="names (of --nsqd) that are NSQ's Go nsqd: they get --go-args, not the rest")
    p.add_argument("--go-args", default="", help="arguments for Go's nsqd, space separated")
    p.add_argument("--concurrency", default="1,8,32,128")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--runfor", type=int, default=5)
    p.add_argument("--size", type=int, default=200)
    p.add_argument("--json", help="write every round here")
    p.add_argument("args", nargs="*", help="arguments for our nsqd")
    a = p.parse_args()
    builds = [tuple(n.split("=", 1)) for n in a.nsqd]
    rows = []
    for conc in [int(c) for c in a.concurrency.split(",")]:
        for rnd in range(a.rounds):
            for name, path in builds:
                extra = a.go_args.split() if name in a.go else a.args
                r = one_round(name, path, extra, a.bench, conc, a.runfor, a.size)
                r["round"] = rnd
                rows.append(r)
                print(f"  {name} c={conc} round {rnd}: {r['msgs_per_s']:.0f}/s "
                      f"p99 {r['p99_ms']:.2f} ms", file=sys.stderr)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)
    med = lambda xs: statistics.median(xs) if xs else None
    fmt = lambda v, spec: "-" if v is None else format(v, spec)
    print(f"{'nsqd':10} {'conns':>5} {'msgs/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'p99.9 ms':>8} "
          f"{'CPU us/msg':>10} {'msgs/fsync':>10}")
    for conc in sorted({r["concurrency"] for r in rows}):
        for name, _ in builds:
            rs = [r for r in rows if r["nsqd"] == name and r["concurrency"] == conc]
            col = lambda k: med([r[k] for r in rs if r[k] is not None])
            print(f"{name:10} {conc:5} {fmt(col('msgs_per_s'), '9.0f')} {fmt(col('p50_ms'), '7.2f')} "
                  f"{fmt(col('p99_ms'), '7.2f')} {fmt(col('p999_ms'), '8.2f')} "
                  f"{fmt(col('cpu_us_per_msg'), '10.1f')} {fmt(col('msgs_per_fsync'), '10.1f')}")


if __name__ == "__main__":
    main()
