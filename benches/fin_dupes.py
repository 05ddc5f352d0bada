#!/usr/bin/env python3
"""Duplicates per kill -9: how many messages a consumer had already FINed come back after
nsqd is killed under load and restarted (a benchmark, not a test: it prints a table).

    python3 benches/fin_dupes.py [--rounds 5] [--rate 10000] LABEL=NSQD [LABEL=NSQD ...]
    e.g. ... before=../h15-before/target/release/nsqd after=target/release/nsqd

Per round and binary: a fresh data directory, nsqd on ports picked here, a producer MPUBing
at a fixed rate (raw protocol V2, bodies numbered), a consumer FINing everything and keeping
the ids it FINed, kill -9 after --kill-after seconds, a restart on the same directory, and a
drain of the channel. Columns: messages acknowledged, FINs sent before the kill, messages
delivered after the restart, of those already FINed (duplicates), of the duplicates those
whose FIN was sent over 50 ms before the kill (so not merely racing it), and acknowledged
messages never delivered (lost). Extra nsqd flags go after `--`. Standard library only.
"""

import argparse
import json
import os
import signal
import socket
import statistics
import struct
import subprocess
import tempfile
import threading
import time
import urllib.request

TOPIC, CHANNEL = "dupes", "c"
RACE_WINDOW = 0.05  # seconds


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Nsqd:
    def __init__(self, binary, data, tcp, http, flags, log):
        self.http = http
        self.proc = subprocess.Popen(
            [binary, "--data-path", data, "--tcp-address", f"127.0.0.1:{tcp}",
             "--http-address", f"127.0.0.1:{http}", "--broadcast-address", "127.0.0.1", *flags],
            stdout=log, stderr=subprocess.STDOUT)
        for _ in range(200):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{http}/ping", timeout=1).read()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"{binary} did not answer /ping")

    def post(self, path):
        req = urllib.request.Request(f"http://127.0.0.1:{self.http}{path}", method="POST")
        urllib.request.urlopen(req, timeout=5).read()

    def channel_stats(self):
        with urllib.request.urlopen(
                f"http://127.0.0.1:{self.http}/stats?format=json&topic={TOPIC}", timeout=5) as r:
            doc = json.load(r)
        doc = doc.get("data", doc)  # NSQ before 1.0 wrapped it
        for t in doc.get("topics", []):
            for c in t.get("channels", []):
                if c["channel_name"] == CHANNEL:
                    return c
        return None

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.kill9()


def connect(tcp):
    s = socket.create_connection(("127.0.0.1", tcp))
    s.sendall(b"  V2")
    return s


def read_frames(sock, buf):
    """Reads more bytes; returns (frames, rest). Raises OSError/EOFError when the peer is gone."""
    data = sock.recv(1 << 20)
    if not data:
        raise EOFError
    buf += data
    frames, at = [], 0
    while len(buf) - at >= 8:
        size, kind = struct.unpack_from(">ii", buf, at)
        if len(buf) - at < 4 + size:
            break
        frames.append((kind, buf[at + 8:at + 4 + size]))
        at += 4 + size
    return frames, buf[at:]


def produce(tcp, rate, stop, acked):
    """MPUBs `rate` numbered messages a second in batches every 10 ms until `stop` or error."""
    per_batch = max(1, rate // 100)
    seq = 0
    try:
        sock = connect(tcp)
        buf = b""
        next_at = time.monotonic()
        while not stop.is_set():
            bodies = [b"%012d" % n + b"x" * 88 for n in range(seq, seq + per_batch)]
            payload = struct.pack(">i", len(bodies)) + b"".join(
                struct.pack(">i", len(b)) + b for b in bodies)
            sock.sendall(b"MPUB %s\n" % TOPIC.encode() + struct.pack(">i", len(payload)) + payload)
            while True:
                frames, buf = read_frames(sock, buf)
                if any(kind == 0 and body == b"OK" for kind, body in frames):
                    break
                if any(kind == 1 for kind, _ in frames):
                    raise RuntimeError(frames)
            seq += per_batch
            acked[0] = seq
            next_at += 0.01
            time.sleep(max(0.0, next_at - time.monotonic()))
    except (OSError, EOFError):
        pass  # nsqd was killed


def consume(tcp, stop, on_message, idle=None):
    """Subscribes and FINs every message (one send per read, as clients batch) until `stop`,
    an error, or `idle` seconds without a message. Calls on_message(id, body) before FINing."""
    try:
        sock = connect(tcp)
        sock.sendall(b"SUB %s %s\nRDY 1000\n" % (TOPIC.encode(), CHANNEL.encode()))
        sock.settimeout(0.2)
        buf, last = b"", time.monotonic()
        while not stop.is_set():
            try:
                frames, buf = read_frames(sock, buf)
            except socket.timeout:
                if idle is not None and time.monotonic() - last > idle:
                    return
                continue
            out = []
            for kind, body in frames:
                if kind == 2:
                    msg_id, payload = body[10:26], body[26:]
                    on_message(msg_id, payload)
                    out.append(b"FIN " + msg_id + b"\n")
                    last = time.monotonic()
                elif kind == 0 and body == b"_heartbeat_":
                    out.append(b"NOP\n")
            if out:
                sock.sendall(b"".join(out))
        sock.close()
    except (OSError, EOFError):
        pass


def one_round(binary, flags, rate, kill_after, work):
    data = tempfile.mkdtemp(dir=work)
    tcp, http = free_port(), free_port()
    log = open(data + ".log", "ab")
    nsqd = Nsqd(binary, data, tcp, http, flags, log)
    nsqd.post(f"/topic/create?topic={TOPIC}")
    nsqd.post(f"/channel/create?topic={TOPIC}&channel={CHANNEL}")
    stop, acked, fined, seen = threading.Event(), [0], {}, set()

    def before(msg_id, body):
        fined[msg_id] = time.monotonic()
        seen.add(body[:12])

    threads = [threading.Thread(target=produce, args=(tcp, rate, stop, acked)),
               threading.Thread(target=consume, args=(tcp, stop, before))]
    for t in threads:
        t.start()
    time.sleep(kill_after)
    killed_at = time.monotonic()
    nsqd.kill9()
    stop.set()
    for t in threads:
        t.join()
    fins_sent = len(fined)
    nsqd = Nsqd(binary, data, tcp, http, flags, log)
    after, dupes, old = [0], [0], [0]

    def drain(msg_id, body):
        after[0] += 1
        if msg_id in fined:
            dupes[0] += 1
            # A FIN sent this close to the kill may not have reached nsqd at all.
            old[0] += killed_at - fined[msg_id] > RACE_WINDOW
        seen.add(body[:12])

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        consume(tcp, threading.Event(), drain, idle=1.0)
        stats = nsqd.channel_stats()
        if stats and stats["depth"] == 0 and stats["in_flight_count"] == 0 \
                and stats.get("deferred_count", 0) == 0:
            break
    nsqd.stop()
    log.close()
    lost = sum(1 for n in range(acked[0]) if b"%012d" % n not in seen)
    return acked[0], fins_sent, after[0], dupes[0], old[0], lost


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("builds", nargs="+", help="LABEL=path/to/nsqd")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--rate", type=int, default=10000, help="messages per second published")
    p.add_argument("--kill-after", type=float, default=5.0, help="seconds of load before kill -9")
    args, flags = p.parse_known_args()
    flags = [f for f in flags if f != "--"]
    work = tempfile.mkdtemp(prefix="fin_dupes.")
    results = {}
    print(f"{args.rate} msg/s of 100 B, kill -9 after {args.kill_after} s, "
          f"nsqd flags: {' '.join(flags) or '(defaults)'}")
    print(f"{'build':<10}{'round':>6}{'acked':>9}{'FINs sent':>11}{'after restart':>15}"
          f"{'duplicates':>12}{'FIN >50ms old':>15}{'lost':>6}")
    for r in range(1, args.rounds + 1):
        for build in args.builds:  # alternating, so the machine's noise hits all alike
            label, binary = build.split("=", 1)
            row = one_round(os.path.abspath(binary), flags, args.rate, args.kill_after, work)
            results.setdefault(label, []).append(row)
            print(f"{label:<10}{r:>6}{row[0]:>9}{row[1]:>11}{row[2]:>15}{row[3]:>12}"
                  f"{row[4]:>15}{row[5]:>6}", flush=True)
    for label, rows in results.items():
        print(f"{label:<10} median duplicates per kill -9: {statistics.median(r[3] for r in rows):.0f}"
              f" (total {sum(r[3] for r in rows)}; of those FINed over 50 ms before the kill:"
              f" {sum(r[4] for r in rows)}), lost {sum(r[5] for r in rows)}")
    subprocess.run(["rm", "-rf", work], check=False)


if __name__ == "__main__":
    main()
