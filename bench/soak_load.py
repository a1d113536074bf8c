#!/usr/bin/env python3
"""The load of bench/soak.sh: mixed traffic against a running node, through API.md only.

Usage: soak_load.py API STREAM WEB SCHEDULER PID DURATION SAMPLE_SECS SETTLE_SECS WORKERS

Each of WORKERS threads is one signed-in user doing, at random: feeds (with a second page),
sign-ins and logouts, wrong passwords, comments (list and post), Range playback (windows,
suffixes, HEAD, If-None-Match), uploads (raw and multipart), deletes of its own videos, and
web pages. One more thread cuts connections on purpose: uploads cut mid-body and playbacks cut
mid-file, with a TCP reset. Every SAMPLE_SECS the RSS and open fd count of PID are sampled
from /proc; after the load stops and SETTLE_SECS have passed, once more. Prints a Markdown
report and exits 1 when a target is missed (RSS at the end of the load 5 % or more above
RSS at its first minute, fds not back to the idle figure, any 5xx).
"""

import http.client
import json
import os
import random
import re
import socket
import struct
import sys
import threading
import time
import urllib.parse

API, STREAM, WEB, SCHED = sys.argv[1:5]
PID = int(sys.argv[5])
DURATION, SAMPLE, SETTLE, WORKERS = (int(a) for a in sys.argv[6:10])
PWD = "password1"
# An MP4 signature (what the upload's sniffing looks at), then incompressible bytes.
SIG = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2"
SMALL = SIG + os.urandom(256 * 1024 - len(SIG))
BIG = SIG + os.urandom(4 * 1024 * 1024 - len(SIG))

stop = threading.Event()
lock = threading.Lock()
counts = {}  # (action, status class or "conn-error") -> n
fives = []  # (action, status, body) of every 5xx, first ones kept
videos = {}  # ready video id -> size: what playback and comments pick from


CLASSES = ["2xx", "3xx", "4xx", "5xx", "cut", "conn-error"]


def count(action, status, body=b""):
    """`status` None: the connection failed; 0: a connection cut on purpose, as planned."""
    key = (action, "conn-error" if status is None else "cut" if status == 0 else
           f"{status // 100}xx")
    with lock:
        counts[key] = counts.get(key, 0) + 1
        if status is not None and status >= 500 and len(fives) < 20:
            fives.append((action, status, body[:200]))


class Client:
    """Keep-alive connections to the services, reopened after any failure."""

    def __init__(self):
        self.conns = {}

    def call(self, action, base, method, path, body=None, headers=None):
        headers = dict(headers or {})
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        for attempt in (1, 2):
            reused = base in self.conns
            try:
                conn = self.conns.get(base)
                if conn is None:
                    conn = self.conns[base] = http.client.HTTPConnection(base, timeout=30)
                conn.request(method, path, body=body, headers=headers)
                res = conn.getresponse()
                data = res.read()
                break
            except (OSError, http.client.HTTPException):
                self.close(base)
                # A kept-alive connection the server closed meanwhile: one retry on a new one.
                if not (reused and attempt == 1):
                    count(action, None)
                    return None, None, b""
        count(action, res.status, data)
        if res.getheader("Connection", "").lower() == "close":
            self.close(base)
        return res.status, res, data

    def close(self, base=None):
        for b in [base] if base else list(self.conns):
            conn = self.conns.pop(b, None)
            if conn is not None:
                conn.close()


def register(c, name):
    status, _, data = c.call("setup", API, "POST", "/user", {"user_name": name, "pwd": PWD})
    assert status == 201, (status, data)
    return json.loads(data)["session_id"]


def upload(c, action, name, sid, data, multipart=False):
    status, _, body = c.call(action, API, "POST", f"/user/{name}/videos", {"name": "soak clip"},
                             {"X-Session-Id": sid})
    if status != 201:
        return None
    vid = json.loads(body)["id"]
    headers = {"X-Session-Id": sid}
    if multipart:
        b = "soakboundary%d" % random.randrange(1 << 30)
        data = (f"--{b}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.mp4\"\r\n"
                f"Content-Type: video/mp4\r\n\r\n").encode() + data + f"\r\n--{b}--\r\n".encode()
        headers["Content-Type"] = f"multipart/form-data; boundary={b}"
    else:
        headers["Content-Type"] = "video/mp4"
    status, _, _ = c.call(action, STREAM, "POST", f"/upload/{vid}", data, headers)
    return vid if status == 201 else None


def pick():
    with lock:
        return random.choice(list(videos.items())) if videos else (None, 0)


class Worker(threading.Thread):
    def __init__(self, i):
        super().__init__(daemon=True)
        self.name_ = f"soak_w{i}"
        self.c = Client()
        self.sid = register(self.c, self.name_)
        self.own = []
        self.etags = {}
        for data in (BIG, SMALL, SMALL):
            self.add(upload(self.c, "setup", self.name_, self.sid, data), len(data))

    def add(self, vid, size):
        if vid:
            self.own.append(vid)
            with lock:
                videos[vid] = size

    def auth(self):
        return {"X-Session-Id": self.sid}

    def feed(self):
        status, _, data = self.c.call("feed", API, "GET", "/videos?limit=20")
        nxt = json.loads(data).get("next") if status == 200 else None
        if nxt:
            self.c.call("feed", API, "GET", "/videos?limit=20&cursor=" + urllib.parse.quote(nxt))
        self.c.call("feed", API, "GET", f"/user/{self.name_}/videos?limit=10", headers=self.auth())

    def signin(self):
        status, _, data = self.c.call("sign-in", API, "POST", f"/user/{self.name_}", {"pwd": PWD})
        if status == 200:
            sid = json.loads(data)["session_id"]
            self.c.call("sign-in", API, "GET", f"/user/{self.name_}", headers={"X-Session-Id": sid})
            self.c.call("sign-in", API, "DELETE", f"/user/{self.name_}",
                        headers={"X-Session-Id": sid})

    def wrong_password(self):
        who = random.choice(["soak_victim", "soak_nobody"])
        self.c.call("wrong-password", API, "POST", f"/user/{who}", {"pwd": "not-the-password"})

    def comments(self):
        vid, _ = pick()
        if vid:
            self.c.call("comments", API, "GET", f"/videos/{vid}/comments?limit=20")
            text = "soak comment %d" % random.randrange(1 << 30)
            self.c.call("comments", API, "POST", f"/videos/{vid}/comments", {"content": text},
                        self.auth())

    def playback(self):
        vid, size = pick()
        if not vid:
            return
        h = self.auth()
        kind = random.random()
        if kind < 0.6:
            a = random.randrange(size)
            h["Range"] = f"bytes={a}-{min(size - 1, a + random.randrange(256 * 1024))}"
        elif kind < 0.7:
            h["Range"] = f"bytes=-{random.randrange(1, 65536)}"
        elif kind < 0.8:
            self.c.call("playback", STREAM, "HEAD", f"/videos/{vid}", headers=h)
            return
        elif kind < 0.9 and vid in self.etags:
            h["If-None-Match"] = self.etags[vid]
        elif size > len(SMALL):
            h["Range"] = "bytes=0-1048575"  # the start of a big file, as a player asks
        status, res, _ = self.c.call("playback", STREAM, "GET", f"/videos/{vid}", headers=h)
        if status in (200, 206) and res.getheader("ETag"):
            self.etags[vid] = res.getheader("ETag")

    def upload(self):
        self.add(upload(self.c, "upload", self.name_, self.sid, SMALL, random.random() < 0.5),
                 len(SMALL))

    def delete(self):
        if len(self.own) <= 3:
            return
        vid = self.own.pop(1)  # never the big one at index 0
        with lock:
            videos.pop(vid, None)
        self.c.call("delete", API, "DELETE", f"/user/{self.name_}/videos/{vid}",
                    headers=self.auth())

    def web(self):
        vid, _ = pick()
        path = random.choice(["/", f"/watch/{vid}" if vid else "/", f"/u/{self.name_}"])
        self.c.call("web", WEB, "GET", path)

    def run(self):
        actions = [(self.feed, 18), (self.signin, 6), (self.wrong_password, 6),
                   (self.comments, 14), (self.playback, 30), (self.upload, 7),
                   (self.delete, 7), (self.web, 12)]
        funcs, weights = zip(*actions)
        while not stop.is_set():
            random.choices(funcs, weights)[0]()
        self.c.close()


def reset_close(s):
    # SO_LINGER 0: close sends a reset, the way a crashed or killed client goes away.
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


class Aborter(threading.Thread):
    """Cuts uploads mid-body and playbacks mid-file."""

    def __init__(self):
        super().__init__(daemon=True)
        self.c = Client()
        self.name_ = "soak_cutter"
        self.sid = register(self.c, self.name_)
        self.big = upload(self.c, "setup", self.name_, self.sid, BIG)

    def raw(self, base, head, body=b"", read=0):
        host, port = base.rsplit(":", 1)
        try:
            s = socket.create_connection((host, int(port)), timeout=10)
            s.sendall(head.encode() + body)
            got = 0
            while got < read:
                chunk = s.recv(65536)
                if not chunk:
                    break
                got += len(chunk)
            reset_close(s)
            count("aborted", 0)
        except OSError:
            count("aborted", None)

    def cut_upload(self):
        status, _, data = self.c.call("aborted-setup", API, "POST", f"/user/{self.name_}/videos",
                                      {"name": "cut"}, {"X-Session-Id": self.sid})
        if status != 201:
            return
        vid = json.loads(data)["id"]
        total = 2 * 1024 * 1024
        if random.random() < 0.5:
            head = (f"POST /upload/{vid} HTTP/1.1\r\nHost: {STREAM}\r\nX-Session-Id: {self.sid}\r\n"
                    f"Content-Type: video/mp4\r\nContent-Length: {total}\r\n\r\n")
            body = SIG + os.urandom(random.randrange(1024, 512 * 1024))
        else:
            b = "cutboundary"
            head = (f"POST /upload/{vid} HTTP/1.1\r\nHost: {STREAM}\r\nX-Session-Id: {self.sid}\r\n"
                    f"Content-Type: multipart/form-data; boundary={b}\r\n"
                    f"Content-Length: {total}\r\n\r\n")
            body = (f"--{b}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.mp4\""
                    f"\r\nContent-Type: video/mp4\r\n\r\n").encode() + SIG + os.urandom(65536)
        self.raw(STREAM, head, body)
        time.sleep(0.2)
        # The video stays pending; its owner deletes it, as a page would after a failure.
        self.c.call("aborted-setup", API, "DELETE", f"/user/{self.name_}/videos/{vid}",
                    headers={"X-Session-Id": self.sid})

    def cut_playback(self):
        head = (f"GET /videos/{self.big} HTTP/1.1\r\nHost: {STREAM}\r\n"
                f"X-Session-Id: {self.sid}\r\n\r\n")
        self.raw(STREAM, head, read=random.randrange(1, 512 * 1024))

    def run(self):
        while not stop.is_set():
            random.choice([self.cut_upload, self.cut_playback])()
            time.sleep(0.1)
        self.c.close()


def proc_sample():
    with open(f"/proc/{PID}/status") as f:
        rss = int(re.search(r"^VmRSS:\s+(\d+)", f.read(), re.M).group(1))
    return rss, len(os.listdir(f"/proc/{PID}/fd"))


TCP_STATES = {"01": "ESTABLISHED", "06": "TIME_WAIT", "08": "CLOSE_WAIT", "0A": "LISTEN"}


def fd_kinds():
    """The process's open fds by kind: files by directory, TCP sockets by state and peer port."""
    names = {int(b.rsplit(":", 1)[1]): n for b, n in
             ((API, "api"), (STREAM, "stream"), (WEB, "web"), (SCHED, "scheduler"))}
    tcp = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                cols = line.split()
                peer_port = int(cols[2].rsplit(":", 1)[1], 16)
                state = TCP_STATES.get(cols[3], cols[3])
                peer = names.get(peer_port, f":{peer_port}")
                tcp[cols[9]] = f"tcp {state}" + (f" to {peer}" if peer_port else "")
    kinds = {}
    for fd in os.listdir(f"/proc/{PID}/fd"):
        try:
            target = os.readlink(f"/proc/{PID}/fd/{fd}")
        except OSError:
            continue
        m = re.match(r"socket:\[(\d+)\]", target)
        if m:
            kind = tcp.get(m.group(1), "socket (not tcp)")
        elif target.startswith("/"):
            kind = os.path.dirname(target)
        else:
            kind = re.sub(r"\d+", "N", target)
        kinds[kind] = kinds.get(kind, 0) + 1
    return kinds


def server_5xx():
    total = 0
    for base in (API, STREAM, WEB, SCHED):
        c = http.client.HTTPConnection(base, timeout=10)
        c.request("GET", "/metrics")
        text = c.getresponse().read().decode()
        c.close()
        for m in re.finditer(r'^\w+_http_requests_total\{[^}]*status="5\d\d"[^}]*\} (\S+)',
                             text, re.M):
            total += int(float(m.group(1)))
    return total


def requests_so_far():
    with lock:
        return sum(n for (a, _), n in counts.items() if a != "setup")


def main():
    idle_rss, idle_fds = proc_sample()
    idle_kinds = fd_kinds()
    c = Client()
    register(c, "soak_victim")
    c.close()
    threads = [Worker(i) for i in range(WORKERS)] + [Aborter()]
    samples = [(0, idle_rss, idle_fds, 0, 0)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for k in range(1, DURATION // SAMPLE + 1):
        time.sleep(max(0.0, start + k * SAMPLE - time.monotonic()))
        rss, fds = proc_sample()
        samples.append((k * SAMPLE, rss, fds, requests_so_far(), len(fives)))
    stop.set()
    for t in threads:
        t.join(60)
    elapsed = time.monotonic() - start
    time.sleep(SETTLE)
    end_rss, end_fds = proc_sample()
    end_kinds = fd_kinds()
    srv5 = server_5xx()

    mib = lambda kib: f"{kib / 1024:.1f}"
    total = requests_so_far()
    print(f"{DURATION} s of load by {WORKERS} users + 1 cutting connections, "
          f"{total} requests ({total / elapsed:.0f}/s), {os.cpu_count()} cores\n")
    print("| t (s) | RSS (MiB) | open fds | requests so far | 5xx so far |")
    print("|---:|---:|---:|---:|---:|")
    print(f"| 0 (idle, before load) | {mib(idle_rss)} | {idle_fds} | 0 | 0 |")
    for t, rss, fds, n, f in samples[1:]:
        print(f"| {t} | {mib(rss)} | {fds} | {n} | {f} |")
    print(f"| idle again ({SETTLE} s after the load) | {mib(end_rss)} | {end_fds} | {total} | "
          f"{len(fives)} |\n")

    print("| action | " + " | ".join(CLASSES) + " |")
    print("|---|" + "---:|" * len(CLASSES))
    for action in sorted({a for a, _ in counts}):
        row = [str(counts.get((action, k), 0)) for k in CLASSES]
        print(f"| {action} | " + " | ".join(row) + " |")
    print("\n(`cut`: a connection cut on purpose mid-upload or mid-playback, as planned.)\n")

    loaded = [s for s in samples if s[0] >= 60]
    ok = True
    if len(loaded) >= 2:
        # Growth is where the load ends against where its first minute ended; the peak in
        # between is shown too, since RSS under mixed load swings with what is in flight.
        base, last = loaded[0][1], loaded[-1][1]
        peak = max(s[1] for s in loaded)
        growth = (last - base) / base * 100
        good = growth < 5
        ok &= good
        print(f"- RSS growth after the first minute: {mib(base)} MiB at 60 s -> {mib(last)} MiB "
              f"at {loaded[-1][0]} s = {growth:+.1f} % (target < 5 %): "
              f"{'ok' if good else 'MISSED'}; peak in between {mib(peak)} MiB "
              f"({(peak - base) / base * 100:+.1f} %)")
    else:
        print("- RSS growth after the first minute: run at least 120 s to measure it")
    good = end_fds <= idle_fds
    ok &= good
    print(f"- open fds: {idle_fds} idle before, {end_fds} after (target: back to idle): "
          f"{'ok' if good else 'MISSED'}")
    for kind in sorted(set(idle_kinds) | set(end_kinds)):
        before, after = idle_kinds.get(kind, 0), end_kinds.get(kind, 0)
        if before != after:
            print(f"  - {kind}: {before} -> {after}")
    n5 = sum(n for (_, k), n in counts.items() if k == "5xx")
    good = n5 == 0 and srv5 == 0
    ok &= good
    print(f"- 5xx: {n5} seen by the clients, {srv5} in the services' metrics (target 0): "
          f"{'ok' if good else 'MISSED'}")
    for action, status, body in fives:
        print(f"  - {action}: {status} {body!r}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
