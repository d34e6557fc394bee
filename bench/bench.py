#!/usr/bin/env python3
"""The benchmark suite's driver (run it through bench/run, which installs the
tools and builds in release mode first).

It starts PostgreSQL scratch databases, the engine (on PostgreSQL and on
SQLite) and the baselines (bench_baseline's rouille servers, Python's
SimpleXMLRPCServer, pgbench, a static file server, the encoder by hand),
drives load with wrk (bench/rpc.lua), and prints one table: each figure, its
baseline, the ratio, the target, and pass/miss. Every figure is a ratio
against a baseline measured in the same run on the same machine.

    bench/bench.py [--smoke] [--record | --no-record] [--keep]

--smoke runs every scenario for a second or two with tiny loads (so the
suite cannot rot); it never fails on a missed target, only when something
crashed. A full run appends its results to BENCHMARKS.md unless
--no-record; --record also records a smoke run (marked as such).
"""

import argparse
import datetime
import http.client
import json
import os
import platform
import re
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import xmlrpc.client

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target")
ENGINE = os.path.join(TARGET, "release", "jobengine")
BASELINE = os.path.join(TARGET, "release", "examples", "bench_baseline")
LUA = os.path.join(ROOT, "bench", "rpc.lua")
FIXTURES = os.environ.get("BENCH_FIXTURES") or os.path.normpath(os.path.join(ROOT, "..", "shared", "fixtures"))
CLK = os.sysconf("SC_CLK_TCK")
MIB = 1024 * 1024

FULL = dict(
    mode="full", http_secs=6, rounds=5, pg_secs=10, pick_samples=40, pick_gap=0.25,
    enc_runs=3, song_secs=240, file_size=1 << 30, file_rounds=2, idle_secs=60, settle_max=8.0, seeded=1000,
)
SMOKE = dict(
    mode="smoke", http_secs=1, rounds=1, pg_secs=1, pick_samples=3, pick_gap=0.1,
    enc_runs=1, song_secs=30, file_size=16 << 20, file_rounds=1, idle_secs=2, settle_max=0.0, seeded=50,
)

START = time.time()

# Scenario groups, for --only while working on one figure.
GROUPS = ("reads", "writes", "conns", "pickup", "encoder", "files", "idle")


def say(msg):
    print(f"[{time.time() - START:6.1f}s] {msg}", file=sys.stderr, flush=True)


class Crash(Exception):
    """Something the suite needs broke: the run is not a benchmark any more."""


# ---------------------------------------------------------------- /proc ---

def proc_cpu(pid):
    """utime+stime of a process (all its threads), seconds."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK


def proc_status(pid, key):
    """A kB figure from /proc/PID/status (VmRSS, VmHWM), in KiB."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def threads_of(pid):
    return proc_status(pid, "Threads")


def machine_cpu():
    """(busy, total) CPU seconds since boot. Busy includes irq and softirq:
    loopback TCP's receive work runs in softirq and this kernel charges it
    to the sending process too (leaving it out made "foreign" negative)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    user, nice, system, idle, iowait, irq, softirq, steal = v
    busy = user + nice + system + irq + softirq + steal
    return busy / CLK, sum(v) / CLK


def pg_cpu():
    """CPU seconds of every postgres process, plus the backends already
    reaped (the postmaster's cutime+cstime)."""
    total = 0.0
    procs = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/comm") as f:
                if f.read().strip() != "postgres":
                    continue
            with open(f"/proc/{name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        procs[int(name)] = fields
    for pid, fields in procs.items():
        total += (int(fields[11]) + int(fields[12])) / CLK
        if int(fields[1]) not in procs:  # the postmaster
            total += (int(fields[13]) + int(fields[14])) / CLK
    return total


def settle(limit):
    """Waits (at most `limit` s) until the machine is quiet: under 25 % busy
    over half a second, twice in a row. Returns the last busy fraction."""
    deadline = time.time() + limit
    quiet = 0
    frac = 0.0
    while True:
        b0, t0 = machine_cpu()
        time.sleep(0.5)
        b1, t1 = machine_cpu()
        frac = (b1 - b0) / max(t1 - t0, 1e-9)
        quiet = quiet + 1 if frac < 0.25 else 0
        if quiet >= 2 or time.time() >= deadline:
            return frac


class RssWatch:
    """Samples VmRSS of some processes every 50 ms in a thread."""

    def __init__(self, pids):
        self.pids = pids
        self.start = {p: proc_status(p, "VmRSS") for p in pids}
        self.peak = dict(self.start)
        self.threads = {p: threads_of(p) for p in pids}
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self):
        while not self._stop.wait(0.05):
            for p in self.pids:
                self.peak[p] = max(self.peak[p], proc_status(p, "VmRSS"))
                self.threads[p] = max(self.threads[p], threads_of(p))

    def stop(self):
        self._stop.set()
        self._t.join()
        return self


# ------------------------------------------------------------- servers ---

class Server:
    """A process that prints `listening on http://ADDR` (stdout or stderr)."""

    def __init__(self, name, argv, workdir, env=None):
        self.name = name
        self.log_path = os.path.join(workdir, f"{name}.log")
        self.log = open(self.log_path, "wb")
        self.p = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, env=env,
                                  stdin=subprocess.DEVNULL)
        self.pid = self.p.pid
        deadline = time.time() + 60
        while True:
            with open(self.log_path, "rb") as f:
                m = re.search(rb"listening on http://(\S+)", f.read())
            if m:
                self.addr = m.group(1).decode()
                self.port = int(self.addr.rsplit(":", 1)[1])
                return
            if self.p.poll() is not None:
                raise Crash(f"{name} exited ({self.p.returncode}) before listening; see {self.log_path}:\n"
                            + self.tail())
            if time.time() > deadline:
                raise Crash(f"{name} did not start listening within 60 s; see {self.log_path}")
            time.sleep(0.05)

    def tail(self, n=15):
        with open(self.log_path, "rb") as f:
            return "\n".join(f.read().decode(errors="replace").splitlines()[-n:])

    def check(self):
        if self.p.poll() is not None:
            raise Crash(f"{self.name} died ({self.p.returncode}); last log lines:\n{self.tail()}")

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(15)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.log.close()

    def proxy(self):
        return xmlrpc.client.ServerProxy(f"http://{self.addr}/RPC2", allow_none=True)

    def http(self, method, path, body=None, headers=None):
        c = http.client.HTTPConnection(self.addr, timeout=60)
        try:
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            return r.status, r.read()
        finally:
            c.close()


# ------------------------------------------------------------ database ---

class Postgres:
    def __init__(self, base_url):
        self.base = urllib.parse.urlsplit(base_url)

    def url(self, db):
        return urllib.parse.urlunsplit(self.base._replace(path="/" + db))

    def psql(self, db, sql):
        r = subprocess.run(["psql", "-qAtX", "-v", "ON_ERROR_STOP=1", self.url(db), "-c", sql],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise Crash(f"psql on {db} failed: {r.stderr.strip()}")
        return r.stdout.strip()

    def create(self, db):
        self.psql("postgres", f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        self.psql("postgres", f"CREATE DATABASE {db}")

    def drop(self, db):
        try:
            self.psql("postgres", f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        except Crash as e:
            say(f"warning: {e}")

    def env(self):
        env = dict(os.environ)
        b = self.base
        env.update(PGHOST=b.hostname or "127.0.0.1", PGPORT=str(b.port or 5432),
                   PGUSER=urllib.parse.unquote(b.username or "postgres"))
        if b.password:
            env["PGPASSWORD"] = urllib.parse.unquote(b.password)
        return env


# -------------------------------------------------------------- drivers ---

def run_measured(argv, env=None):
    """Runs a load generator to the end; returns (stdout, its CPU seconds)."""
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)
    out = p.stdout.read()
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    p.stdout.close()
    if p.returncode != 0:
        raise Crash(f"{argv[0]} failed ({p.returncode}):\n{out[-2000:]}")
    return out, ru.ru_utime + ru.ru_stime


def ss_received(port):
    """bytes_received of every established connection to local `port`."""
    r = subprocess.run(["ss", "-Htin", "state", "established", f"( sport = :{port} )"],
                       capture_output=True, text=True)
    conns = []
    for line in r.stdout.splitlines():
        if not line.strip():
            continue
        if not line[0].isspace():
            conns.append(0)
        m = re.search(r"bytes_received:(\d+)", line)
        if m and conns:
            conns[-1] = int(m.group(1))
    return conns


class Suite:
    def __init__(self, cfg, args):
        self.cfg = cfg
        self.args = args
        self.work = tempfile.mkdtemp(prefix="jobengine-bench-")
        self.servers = []
        self.runs = []  # every load run, for the detail table
        self.rows = []  # the summary table
        self.notes = []
        self.pg = Postgres(os.environ.get("BENCH_DATABASE") or os.environ.get("JOBENGINE_TEST_DATABASE")
                           or "postgres://postgres@127.0.0.1:5432/postgres")
        self.dbs = ["jobengine_bench", "jobengine_bench_idle"]

    # ---- plumbing

    def start(self, name, argv, env=None):
        s = Server(name, argv, self.work, env)
        self.servers.append(s)
        say(f"{name} listening on {s.addr} (pid {s.pid})")
        return s

    def engine(self, name, database, env_extra=None):
        data = os.path.join(self.work, name)
        os.makedirs(data, exist_ok=True)
        env = dict(os.environ)
        env.pop("JOBENGINE_WORKERS", None)
        env.update(env_extra or {})
        return self.start(name, [ENGINE, "serve", "--listen", "127.0.0.1:0", "--database", database,
                                 "--data-dir", data], env)

    def stop(self, server):
        server.stop()
        self.servers.remove(server)

    def cleanup(self):
        for s in reversed(self.servers):
            try:
                s.stop()
            except Exception as e:  # noqa: BLE001 - cleanup goes on
                say(f"warning: stopping {s.name}: {e}")
        for db in self.dbs:
            self.pg.drop(db)
        if self.args.keep:
            say(f"kept {self.work}")
        else:
            shutil.rmtree(self.work, ignore_errors=True)

    def check_alive(self):
        for s in self.servers:
            s.check()

    # ---- one wrk run

    def wrk(self, label, server, conns, method="GetProgress", pg=False, keepalive=True, extra_env=None,
            secs=None):
        self.check_alive()
        secs = secs or self.cfg["http_secs"]
        busy_before = settle(self.cfg["settle_max"])
        env = dict(os.environ, BENCH_METHOD=method, BENCH_JOBS=str(self.cfg["seeded"]), **(extra_env or {}))
        watch = RssWatch([server.pid])
        starved = {}

        def check_starvation():
            got = ss_received(server.port)
            starved["seen"] = len(got)
            starved["answered"] = sum(1 for b in got if b >= 2000)
            starved["min_received"] = min(got) if got else 0

        timer = threading.Timer(secs * 0.6, check_starvation) if keepalive else None
        c0, p0, (m0, _) = proc_cpu(server.pid), pg_cpu() if pg else 0.0, machine_cpu()
        if timer:
            timer.start()
        out, wrk_cpu = run_measured(["wrk", "-t2", f"-c{conns}", f"-d{secs}s", "--timeout", "10s", "--latency",
                                     "-s", LUA, f"http://{server.addr}/RPC2"], env=env)
        if timer:
            timer.join()
        c1, p1, (m1, _) = proc_cpu(server.pid), pg_cpu() if pg else 0.0, machine_cpu()
        watch.stop()
        line = next((ln for ln in out.splitlines() if ln.startswith("BENCH ")), None)
        if line is None:
            raise Crash(f"wrk printed no summary:\n{out[-2000:]}")
        r = json.loads(line[6:])
        n = max(r["requests"], 1)
        server_cpu = c1 - c0
        pgc = p1 - p0
        run = dict(
            label=label, conns=conns, rps=r["requests"] / (r["duration_us"] / 1e6), requests=r["requests"],
            p50=r["p50_us"] / 1000, p90=r["p90_us"] / 1000, p99=r["p99_us"] / 1000, max=r["max_us"] / 1000,
            errors=r["connect"] + r["read"] + r["write"] + r["timeout"], non2xx=r["status"],
            timeouts=r["timeout"],
            starved=(conns - starved["answered"]) if keepalive and "answered" in starved else None,
            seen=starved.get("seen"), keepalive=keepalive,
            cpu_us=server_cpu / n * 1e6, pg_us=(pgc / n * 1e6) if pg else None,
            foreign=(m1 - m0) - server_cpu - wrk_cpu - pgc, busy_before=busy_before,
            rss_peak=watch.peak[server.pid], rss_start=watch.start[server.pid],
            threads=watch.threads[server.pid],
        )
        self.runs.append(run)
        st = "" if run["starved"] is None else f", starved {run['starved']}/{conns}"
        say(f"{label} @{conns}: {run['rps']:,.0f} req/s, p50 {run['p50']:.2f} ms, p99 {run['p99']:.2f} ms, "
            f"errors {run['errors']}, non-2xx {run['non2xx']}{st}, foreign CPU {run['foreign']:.1f} s")
        self.check_alive()
        return run

    def pgbench(self, label, script, clients):
        busy_before = settle(self.cfg["settle_max"])
        p0, (m0, _) = pg_cpu(), machine_cpu()
        out, cpu = run_measured(["pgbench", "-n", "-f", os.path.join(ROOT, "bench", "pgbench", script),
                                 "-c", str(clients), "-j", "2", "-T", str(self.cfg["pg_secs"]),
                                 "jobengine_bench"], env=self.pg.env())
        p1, (m1, _) = pg_cpu(), machine_cpu()
        tps = float(re.search(r"tps = ([\d.]+) \(without initial", out).group(1))
        lat = float(re.search(r"latency average = ([\d.]+) ms", out).group(1))
        done = int(re.search(r"number of transactions actually processed: (\d+)", out).group(1))
        run = dict(label=label, conns=clients, rps=tps, requests=done, p50=None, p90=None, p99=None, max=None,
                   mean=lat, errors=0, non2xx=0, timeouts=0, starved=None, seen=None, keepalive=True,
                   cpu_us=None, pg_us=(p1 - p0) / max(done, 1) * 1e6,
                   foreign=(m1 - m0) - cpu - (p1 - p0), busy_before=busy_before,
                   rss_peak=None, rss_start=None, threads=None)
        self.runs.append(run)
        say(f"{label} @{clients}: {tps:,.0f} tps, latency avg {lat:.2f} ms, foreign CPU {run['foreign']:.1f} s")
        return run

    # ---- rows

    def row(self, figure, value, base, ratio, target, ok):
        self.rows.append(dict(figure=figure, value=value, base=base, ratio=ratio, target=target, ok=ok))

    def ratio_row(self, figure, engine, base, unit, at_least=None, at_most=None, fmt="{:,.0f}", ratio=None):
        """`ratio` defaults to engine / base; the reads pass the median of
        their per-round ratios instead."""
        if ratio is None:
            ratio = engine / base if base else None
        if at_least is not None:
            target, ok = f"≥ {at_least:g}×", (ratio is not None and ratio >= at_least)
        elif at_most is not None:
            target, ok = f"≤ {at_most:g}×", (ratio is not None and ratio <= at_most)
        else:
            target, ok = "info", None
        self.row(figure, fmt.format(engine) + unit, fmt.format(base) + unit, ratio, target, ok)


# ------------------------------------------------------------- scenarios ---

def details_xml(audio, image=None):
    img = f"<ImageFile>{image}</ImageFile>" if image else ""
    return f"<EncoderJob><AudioFile>{audio}</AudioFile>{img}<Format>mp4</Format></EncoderJob>"


def upload(server, path):
    with open(path, "rb") as f:
        status, body = server.http("POST", "/files?name=" + os.path.basename(path), f.read())
    if status != 201:
        raise Crash(f"upload of {path} to {server.name} answered {status}: {body[:200]!r}")
    return body.decode().strip()


def seed(server, n, audio):
    """Creates bench-0000 … in one system.multicall."""
    proxy = server.proxy()
    multi = xmlrpc.client.MultiCall(proxy)
    for i in range(n):
        multi.CreateJob(f"bench-{i:04d}", "EncoderJob", details_xml(audio), "")
    bad = [r for r in multi() if r.get("ResultCode") != 0]
    if bad:
        raise Crash(f"seeding {server.name} failed: {bad[0]}")
    r = proxy.GetProgress("bench-0000")
    if r.get("ResultCode") != 0:
        raise Crash(f"GetProgress on {server.name} answered {r}")


def count_jobs(suite, backend):
    if backend["kind"] == "pg":
        return int(suite.pg.psql("jobengine_bench", "SELECT count(*) FROM jobs"))
    with sqlite3.connect(backend["db"], timeout=10) as c:
        return c.execute("SELECT count(*) FROM jobs").fetchone()[0]


def job_row(suite, backend, job):
    """(state, last_state_change as a UNIX time) straight from the store."""
    if backend["kind"] == "pg":
        out = suite.pg.psql("jobengine_bench",
                            f"SELECT state, extract(epoch FROM last_state_change) FROM jobs WHERE id = '{job}'")
        if not out:
            return None, None
        state, ts = out.split("|")
        return state, float(ts)
    with sqlite3.connect(backend["db"], timeout=10) as c:
        row = c.execute("SELECT state, last_state_change FROM jobs WHERE id = ?", (job,)).fetchone()
    if not row:
        return None, None
    t = datetime.datetime.strptime(row[1], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc)
    return row[0], t.timestamp()


def pct(values, p):
    v = sorted(values)
    if not v:
        return float("nan")
    k = (len(v) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


def scenario_pickup(suite, backend):
    """StartJob → InProgress with idle workers: the claim's own timestamp
    in the store minus the moment the client sent StartJob."""
    cfg = suite.cfg
    server = backend["engine"]
    proxy = server.proxy()
    picks, rpcs, lost = [], [], 0
    settle(cfg["settle_max"])
    for i in range(cfg["pick_samples"]):
        job = f"pick-{i:03d}"
        r = proxy.CreateJob(job, "EncoderJob", details_xml(backend["audio"]), "")
        if r["ResultCode"] != 0:
            raise Crash(f"CreateJob {job}: {r}")
        time.sleep(cfg["pick_gap"])  # the workers are parked again
        t0 = time.time()
        r = proxy.StartJob(job)
        rpcs.append((time.time() - t0) * 1000)
        if r["ResultCode"] != 0:
            raise Crash(f"StartJob {job}: {r}")
        deadline = time.time() + 10
        while True:
            time.sleep(0.02)
            state, ts = job_row(suite, backend, job)
            if state != "Started" or time.time() > deadline:
                break
        if state == "InProgress":
            picks.append((ts - t0) * 1000)
        else:
            lost += 1
        r = proxy.DeleteJob(job)
        if r["ResultCode"] != 0:
            raise Crash(f"DeleteJob {job}: {r}")
    name = backend["name"]
    if lost:
        suite.notes.append(f"pickup on {name}: {lost} of {cfg['pick_samples']} samples were not InProgress "
                           "when read (left out)")
    p50, p99 = pct(picks, 50), pct(picks, 99)
    say(f"pickup on {name}: p50 {p50:.2f} ms, p99 {p99:.2f} ms, max {max(picks or [0]):.2f} ms "
        f"({len(picks)} samples); StartJob call p50 {pct(rpcs, 50):.2f} ms")
    base = f"StartJob call p50 {pct(rpcs, 50):.2f} ms"
    suite.row(f"StartJob → InProgress p50, {name} ({len(picks)} samples)", f"{p50:.2f} ms", base, None,
              "≤ 5 ms", p50 <= 5)
    suite.row(f"StartJob → InProgress p99, {name}", f"{p99:.2f} ms", f"max {max(picks or [0]):.2f} ms", None,
              "≤ 20 ms", p99 <= 20)


SHIM = """#!/bin/bash
# bench shim for @TOOL@: times the real program (bash's clock, no forks) and,
# for the encoder, keeps its argv and frame list for the by-hand run. It
# never writes to stdout or stderr: the engine reads those.
start=$EPOCHREALTIME
if [ @TOOL@ = mencoder ]; then
  for a in "$@"; do case "$a" in mf://@*) cp "${a#mf://@}" "@LOG@.frames" 2>/dev/null;; esac; done
  printf '%s\\n' "$@" > "@LOG@.argv"
fi
@REAL@ "$@"
rc=$?
echo "@TOOL@ $start $EPOCHREALTIME $rc" >> "@LOG@"
exit $rc
"""

TOOLS = ("mencoder", "ffmpeg", "ffprobe")


def make_shims(work, log):
    """A directory of shims for the encoder and its probes, to put first in
    the engine's PATH, each appending to `log`; returns it and the real
    tools' paths."""
    d = os.path.join(work, "shim")
    os.makedirs(d, exist_ok=True)
    real = {}
    for tool in TOOLS:
        real[tool] = shutil.which(tool)
        if not real[tool]:
            raise Crash(f"{tool} is not installed (apt-get install -y mencoder ffmpeg)")
        path = os.path.join(d, tool)
        with open(path, "w") as f:
            f.write(SHIM.replace("@TOOL@", tool).replace("@REAL@", real[tool]).replace("@LOG@", log))
        os.chmod(path, 0o755)
    return d, real


def read_tool_log(path):
    """[(tool, start, end, rc)] in the order they ran."""
    steps = []
    with open(path) as f:
        for line in f:
            tool, start, end, rc = line.split()
            steps.append((tool, float(start), float(end), int(rc)))
    return sorted(steps, key=lambda s: s[1])


# What each tool does before and after the encoder (the pairs run side by
# side, so either may be logged first).
STEP_NAMES = {
    ("before", "ffprobe"): "ffprobe the audio",
    ("before", "ffmpeg"): "ffmpeg checks the image",
    ("after", "ffprobe"): "ffprobe the output",
    ("after", "ffmpeg"): "ffmpeg decodes the output",
}


def step_names(steps):
    """A name per logged tool run: (before|after the encoder, tool) → what it does."""
    encoder_at = next((s[1] for s in steps if s[0] == "mencoder"), None)
    names = []
    for tool, start, _, _ in steps:
        if tool == "mencoder":
            names.append("mencoder encodes")
            continue
        phase = "before" if encoder_at is None or start < encoder_at else "after"
        names.append(STEP_NAMES.get((phase, tool), f"{tool} ({phase} the encoder)"))
    return names


def long_track(suite, secs):
    """A sine tone of `secs` seconds as MP3 (a song's length, made by ffmpeg)."""
    path = os.path.join(suite.work, f"tone-{secs}s.mp3")
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"sine=frequency=440:duration={secs}",
                    "-c:a", "libmp3lame", "-b:a", "128k", path], check=True)
    return path


def scenario_encoder(suite, backend, real, audio, label, runs, at_most=None):
    """EncoderJobs of `audio` (a FileID on the engine) against the engine's
    own mencoder command run by hand, `runs` times each, interleaved."""
    cfg = suite.cfg
    server = backend["engine"]
    proxy = server.proxy()
    image = upload(server, os.path.join(FIXTURES, "cover.png"))
    log = backend["tool_log"]
    hand_dir = os.path.join(suite.work, "by-hand")
    os.makedirs(hand_dir, exist_ok=True)
    engine_t, hand_t, parts = [], [], []
    for i in range(runs):
        job = f"enc-{i}"
        r = proxy.CreateJob(job, "EncoderJob", details_xml(audio, image), "")
        if r["ResultCode"] != 0:
            raise Crash(f"CreateJob {job}: {r}")
        if os.path.exists(log):
            os.remove(log)
        settle(suite.cfg["settle_max"])
        t0 = time.time()
        proxy.StartJob(job)
        deadline = time.time() + 300
        while True:
            time.sleep(0.05)
            job_info = proxy.GetJob(job)["Job"]
            if job_info["State"] in ("Success", "Failed") or time.time() > deadline:
                break
        if job_info["State"] != "Success":
            raise Crash(f"EncoderJob {job} ended {job_info['State']}: {job_info['ErrorMessage']}")
        _, t_end = job_row(suite, backend, job)
        engine_t.append(t_end - t0)
        steps = read_tool_log(log)
        names = step_names(steps)
        part = {"StartJob to the first tool (pickup, work dir)": steps[0][1] - t0}
        for name, (_, a, b, _) in zip(names, steps):
            part[name] = b - a
        # Tools that run side by side overlap: only time when no tool ran counts.
        idle, busy_until = 0.0, steps[0][2]
        for _, start, end, _ in steps[1:]:
            idle += max(0.0, start - busy_until)
            busy_until = max(busy_until, end)
        part["the engine between tools (no tool running)"] = idle
        part["last tool to Success (hash, store the output)"] = t_end - max(s[2] for s in steps)
        parts.append(part)
        # The same command by hand: the same argv, frame list and inputs,
        # the output in a scratch dir.
        with open(log + ".argv") as f:
            argv = f.read().splitlines()
        args = list(argv)
        frames = os.path.join(hand_dir, "frames.txt")
        shutil.copy(log + ".frames", frames)
        out = None
        for k, a in enumerate(args):
            if a.startswith("mf://@"):
                args[k] = "mf://@" + frames
            if a == "-o" and k + 1 < len(args):
                out = os.path.join(hand_dir, os.path.basename(args[k + 1]))
                args[k + 1] = out
        settle(suite.cfg["settle_max"])
        t0 = time.perf_counter()
        r = subprocess.run([real["mencoder"]] + args, cwd=hand_dir, capture_output=True)
        hand_t.append(time.perf_counter() - t0)
        if r.returncode != 0:
            raise Crash(f"mencoder by hand failed ({r.returncode}): {r.stderr[-500:]!r}")
        os.remove(out)
        proxy.DeleteJob(job)
        say(f"encoder run {i}: engine {engine_t[-1]:.3f} s, by hand {hand_t[-1]:.3f} s; "
            + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in part.items()))
    e, h = statistics.median(engine_t), statistics.median(hand_t)
    suite.ratio_row(f"EncoderJob, {label}, wall (median of {runs}), {backend['name']}",
                    e, h, " s", at_most=at_most, fmt="{:.3f}")
    med = {k: statistics.median(p[k] for p in parts) for k in parts[0]}
    suite.notes.append(
        f"EncoderJob of the {label} on {backend['name']}: engine wall {e * 1000:.0f} ms (median), by hand {h * 1000:.0f} ms. "
        "Where the engine's time goes (medians; each tool timed by a bash shim, which adds about 1.5 ms "
        "per tool): " + "; ".join(f"{k} {v * 1000:.0f} ms" for k, v in med.items())
        + f". Command: mencoder {' '.join(argv)}")


def curl(argv):
    r = subprocess.run(["curl", "-sS", "-H", "Expect:", "-w", "%{http_code} %{time_total}"] + argv,
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise Crash(f"curl {' '.join(argv)} failed: {r.stderr.strip()}")
    code, secs = r.stdout.split()[-2:]
    return int(code), float(secs)


def transfer(suite, server, argv, expect):
    settle(suite.cfg["settle_max"])
    watch = RssWatch([server.pid])
    code, secs = curl(argv)
    watch.stop()
    if code != expect:
        raise Crash(f"curl {' '.join(argv)} answered {code}, expected {expect}")
    growth = (watch.peak[server.pid] - watch.start[server.pid]) / 1024
    return secs, growth


def scenario_files(suite, engine, static):
    cfg = suite.cfg
    size = cfg["file_size"]
    src = os.path.join(suite.work, "big.bin")
    with open(src, "wb") as f:
        f.truncate(size)  # sparse: reading it costs the client nothing
    res = {k: [] for k in ("eng_up", "st_up", "eng_down", "st_down")}
    grow = {k: [] for k in res}
    for _ in range(cfg["file_rounds"]):
        t, g = transfer(suite, static, ["-T", src, "-X", "PUT", "-o", "/dev/null", f"http://{static.addr}/up.bin"],
                        201)
        res["st_up"].append(t), grow["st_up"].append(g)
        idfile = os.path.join(suite.work, "fileid.txt")
        t, g = transfer(suite, engine, ["-T", src, "-X", "POST", "-o", idfile,
                                        f"http://{engine.addr}/files?name=big.bin"], 201)
        res["eng_up"].append(t), grow["eng_up"].append(g)
        with open(idfile) as f:
            fid = f.read().strip()
        t, g = transfer(suite, static, ["-o", "/dev/null", f"http://{static.addr}/up.bin"], 200)
        res["st_down"].append(t), grow["st_down"].append(g)
        t, g = transfer(suite, engine, ["-o", "/dev/null", f"http://{engine.addr}/files/{fid}"], 200)
        res["eng_down"].append(t), grow["eng_down"].append(g)
        engine.http("DELETE", f"/files/{fid}")
        os.remove(os.path.join(suite.work, "static", "up.bin"))
    mb = size / MIB
    label = f"{size // MIB} MiB" if size < (1 << 30) else f"{size / (1 << 30):g} GiB"
    for what, e, s in (("upload", "eng_up", "st_up"), ("download", "eng_down", "st_down")):
        e_rate, s_rate = mb / statistics.mean(res[e]), mb / statistics.mean(res[s])
        say(f"{what} {label}: engine {e_rate:,.0f} MiB/s (RSS +{max(grow[e]):.1f} MiB), "
            f"static {s_rate:,.0f} MiB/s (RSS +{max(grow[s]):.1f} MiB)")
        suite.ratio_row(f"file {what} of {label} (curl), PostgreSQL", e_rate, s_rate, " MiB/s", at_least=0.8)
        suite.row(f"file {what} of {label}: engine RSS growth", f"{max(grow[e]):.1f} MiB",
                  f"{max(grow[s]):.1f} MiB", None, "< 32 MiB", max(grow[e]) < 32)
    os.remove(src)


class Idle:
    """Watches a fresh engine that nobody talks to. For PostgreSQL it also
    counts the backends serving the engine's database: work the engine
    makes PostgreSQL do (a poll, say) shows there, not in its own CPU."""

    def __init__(self, server, secs, backends=None):
        self.server = server
        self.secs = secs
        self.backends = backends or (lambda: [])
        self.t0 = time.time()
        self.c0 = proc_cpu(server.pid)
        self.b0 = {pid: proc_cpu(pid) for pid in self.backends()}
        self.result = None
        self.timer = threading.Timer(secs, self._done)
        self.timer.daemon = True
        self.timer.start()

    def _done(self):
        dt = time.time() - self.t0
        b1 = {pid: proc_cpu(pid) for pid in self.backends()}
        pg = sum(b1[p] - self.b0.get(p, 0.0) for p in b1)
        self.result = dict(cpu=(proc_cpu(self.server.pid) - self.c0) / dt * 100, pg=pg / dt * 100,
                           rss=proc_status(self.server.pid, "VmRSS") / 1024, secs=dt,
                           threads=threads_of(self.server.pid), backends=len(b1))

    def wait(self):
        self.timer.join()
        return self.result


# ----------------------------------------------------------------- main ---

def build_rows_http(suite, backend, ceiling_runs, python_run, hello_run, hellojob_run):
    name = backend["name"]
    for method in ("GetProgress", "GetJob"):
        eng = [r for r in suite.runs if r["label"] == f"engine {name} {method}" and r["conns"] == 64]
        ceil = ceiling_runs
        # The machine's speed drifts within minutes, so each engine run is set
        # against the ceiling runs just before and just after it (rounds are
        # ceiling, engine runs, ceiling, ...); the figure is the median of
        # those ratios, and the values shown are medians too.
        def paired(key):
            around = [(a[key] + b[key]) / 2 for a, b in zip(ceil, ceil[1:])]
            return (statistics.median(r[key] for r in eng), statistics.median(r[key] for r in ceil),
                    statistics.median(e[key] / c for e, c in zip(eng, around)))
        e_rps, c_rps, rps_ratio = paired("rps")
        e_p99, c_p99, p99_ratio = paired("p99")
        suite.ratio_row(f"{method} @64 keep-alive, {name}: req/s vs {ceil[0]['label']}", e_rps, c_rps, "",
                        at_least=0.9, ratio=rps_ratio)
        suite.ratio_row(f"{method} @64, {name}: p99 vs {ceil[0]['label']}", e_p99, c_p99, " ms", at_most=1.2,
                        fmt="{:.2f}", ratio=p99_ratio)
        suite.ratio_row(f"{method} @64, {name}: req/s vs Python SimpleXMLRPCServer", e_rps, python_run["rps"], "",
                        at_least=1.5)
        # The same handler with no work, answering a reply of this call's size:
        # what the wire and wrk cost before the engine does anything.
        bare = hello_run if method == "GetProgress" else hellojob_run
        suite.ratio_row(f"{method} @64, {name}: req/s vs bare rouille (no work, same reply size)", e_rps,
                        bare["rps"], "")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="a few seconds per scenario, tiny loads")
    ap.add_argument("--record", action="store_true", help="append the results to BENCHMARKS.md (smoke too)")
    ap.add_argument("--no-record", action="store_true", help="do not append a full run to BENCHMARKS.md")
    ap.add_argument("--keep", action="store_true", help="keep the scratch directory and logs")
    ap.add_argument("--only", metavar="GROUPS", default=",".join(GROUPS),
                    help=f"comma-separated scenario groups to run, of {','.join(GROUPS)} (default: all); "
                         "a partial run is never recorded")
    args = ap.parse_args()
    cfg = SMOKE if args.smoke else FULL
    args.only = set(args.only.split(","))
    if not args.only <= set(GROUPS):
        raise SystemExit(f"--only takes groups of {','.join(GROUPS)}; got {','.join(sorted(args.only - set(GROUPS)))}")
    for path in (ENGINE, BASELINE):
        if not os.path.exists(path):
            raise SystemExit(f"{path} is missing: run bench/run (it builds in release mode first)")
    suite = Suite(cfg, args)
    crashed = None
    try:
        run_suite(suite)
    except Crash as e:
        crashed = str(e)
    except KeyboardInterrupt:
        crashed = "interrupted"
    finally:
        suite.cleanup()
    report(suite, crashed)
    return 1 if crashed else 0


def run_suite(suite):
    cfg = suite.cfg
    work = suite.work
    only = suite.args.only
    say(f"{cfg['mode']} run in {work}")
    for db in suite.dbs:
        suite.pg.create(db)
    pg_url = suite.pg.url("jobengine_bench")

    # Idle engines first: their minute runs beside everything else (an idle
    # process's own CPU time and RSS do not depend on the machine's load).
    idles = {}
    if "idle" in only:
        idle_pg = suite.engine("engine-idle-pg", suite.pg.url("jobengine_bench_idle"))
        idle_sq = suite.engine("engine-idle-sqlite", "sqlite:" + os.path.join(work, "idle.db"))
        time.sleep(1)

        def idle_backends():
            out = suite.pg.psql("postgres",
                                "SELECT pid FROM pg_stat_activity WHERE datname = 'jobengine_bench_idle'")
            return [int(x) for x in out.split()]

        idles = {"PostgreSQL": Idle(idle_pg, cfg["idle_secs"], idle_backends),
                 "SQLite": Idle(idle_sq, cfg["idle_secs"])}

    tool_log = os.path.join(work, "tools.log")
    shim_dir, real_tools = make_shims(work, tool_log)
    env_shim = {"PATH": shim_dir + os.pathsep + os.environ.get("PATH", "")}
    eng_pg = suite.engine("engine-pg", pg_url, env_shim)
    sq_db = os.path.join(work, "engine.db")
    eng_sq = suite.engine("engine-sqlite", "sqlite:" + sq_db, env_shim)
    backends = [
        dict(name="PostgreSQL", kind="pg", engine=eng_pg, tool_log=tool_log),
        dict(name="SQLite", kind="sqlite", engine=eng_sq, db=sq_db, tool_log=tool_log),
    ]
    audio = os.path.join(FIXTURES, "tone-20s.mp3")
    for b in backends:
        b["audio"] = upload(b["engine"], audio)
        seed(b["engine"], cfg["seeded"], b["audio"])
    say(f"seeded {cfg['seeded']} jobs on each backend")

    hello = suite.start("baseline-hello", [BASELINE, "hello", "127.0.0.1:0"])
    hellojob = suite.start("baseline-hellojob", [BASELINE, "hellojob", "127.0.0.1:0"])
    hello_idle_rss = proc_status(hello.pid, "VmRSS") / 1024
    n = str(cfg["seeded"])
    pgget = suite.start("baseline-pgget", [BASELINE, "pgget", "127.0.0.1:0", pg_url, n])
    sqget = suite.start("baseline-sqliteget", [BASELINE, "sqliteget", "127.0.0.1:0", sq_db, n])
    python = shutil.which("python3", path="/usr/bin") or sys.executable
    py_version = subprocess.run([python, "-c", "import platform; print(platform.python_version())"],
                                capture_output=True, text=True).stdout.strip()
    pysrv = suite.start("baseline-python", [python, os.path.join(ROOT, "bench", "xmlrpc_server.py"), "0"])
    pginsert = suite.start("baseline-pginsert", [BASELINE, "pginsert", "127.0.0.1:0", pg_url])
    sqinsert = suite.start("baseline-sqliteinsert", [BASELINE, "sqliteinsert", "127.0.0.1:0",
                                                     os.path.join(work, "insert.db")])
    static_dir = os.path.join(work, "static")
    os.makedirs(static_dir, exist_ok=True)
    static = suite.start("baseline-static", [BASELINE, "static", "127.0.0.1:0", static_dir])

    # Reads at 64 connections, ceilings and engine interleaved per round.
    if "reads" in only:
        ceilings = {"PostgreSQL": [], "SQLite": []}
        for _ in range(cfg["rounds"]):
            ceilings["PostgreSQL"].append(suite.wrk("rouille + pooled PG SELECT", pgget, 64, pg=True))
            suite.wrk("engine PostgreSQL GetProgress", eng_pg, 64, pg=True)
            suite.wrk("engine PostgreSQL GetJob", eng_pg, 64, "GetJob", pg=True)
            ceilings["SQLite"].append(suite.wrk("rouille + SQLite SELECT", sqget, 64))
            suite.wrk("engine SQLite GetProgress", eng_sq, 64)
            suite.wrk("engine SQLite GetJob", eng_sq, 64, "GetJob")
        # One more ceiling run each, so every engine run has a ceiling run
        # right before and right after it.
        ceilings["PostgreSQL"].append(suite.wrk("rouille + pooled PG SELECT", pgget, 64, pg=True))
        ceilings["SQLite"].append(suite.wrk("rouille + SQLite SELECT", sqget, 64))
        suite.stop(pgget)
        suite.stop(sqget)
        py = suite.wrk(f"Python {py_version} SimpleXMLRPCServer", pysrv, 64, keepalive=False)
        suite.stop(pysrv)
        hello64 = suite.wrk("rouille, no work", hello, 64)
        hellojob64 = suite.wrk("rouille, no work, a GetJob-sized reply", hellojob, 64, "GetJob")
        for b in backends:
            build_rows_http(suite, b, ceilings[b["name"]], py, hello64, hellojob64)

    # Writes: CreateJob at 16 connections against single-statement INSERTs.
    if "writes" in only:
        suite.pg.psql("jobengine_bench",
                      "CREATE TABLE bench_insert (id text PRIMARY KEY, job_type text NOT NULL, state text NOT NULL, "
                      "details text NOT NULL, callback text NOT NULL, progress int NOT NULL, "
                      "created_at timestamptz NOT NULL, last_state_change timestamptz NOT NULL); "
                      "CREATE TABLE bench_state (id int PRIMARY KEY, state text NOT NULL, progress int NOT NULL, "
                      "last_state_change timestamptz NOT NULL); "
                      "INSERT INTO bench_state SELECT g, 'Started', 0, now() FROM generate_series(1, 16) g")
        suite.pg.psql("jobengine_bench", "VACUUM ANALYZE bench_state")
        ins = suite.pgbench("pgbench single-row INSERT", "insert.sql", 16)
        audio_env = {"BENCH_AUDIO": backends[0]["audio"]}
        http_ins = suite.wrk("rouille + pooled PG INSERT", pginsert, 16, "CreateJob", pg=True, extra_env=audio_env)
        before = count_jobs(suite, backends[0])
        c_pg = suite.wrk("engine PostgreSQL CreateJob", eng_pg, 16, "CreateJob", pg=True, extra_env=audio_env)
        check_created(suite, backends[0], before, c_pg)
        suite.stop(pginsert)
        suite.ratio_row("CreateJob @16, PostgreSQL: req/s vs pgbench INSERT @16", c_pg["rps"], ins["rps"], "",
                        at_least=0.5)
        suite.ratio_row("CreateJob @16, PostgreSQL: req/s vs rouille + pooled PG INSERT", c_pg["rps"],
                        http_ins["rps"], "")
        upd = suite.pgbench("pgbench one-row UPDATE", "update.sql", 16)
        suite.row("pgbench one-row UPDATE @16 (ceiling of a state change)", f"{upd['rps']:,.0f} tps", "–", None,
                  "info", None)
        sq_ins = suite.wrk("rouille + SQLite INSERT (one writer)", sqinsert, 16, "CreateJob",
                           extra_env={"BENCH_AUDIO": backends[1]["audio"]})
        before = count_jobs(suite, backends[1])
        c_sq = suite.wrk("engine SQLite CreateJob", eng_sq, 16, "CreateJob",
                         extra_env={"BENCH_AUDIO": backends[1]["audio"]})
        check_created(suite, backends[1], before, c_sq)
        suite.ratio_row("CreateJob @16, SQLite: req/s vs rouille + SQLite INSERT (same pragmas)", c_sq["rps"],
                        sq_ins["rps"], "", at_least=0.5)

    # 256 keep-alive connections: every one answered, bounded memory.
    if "conns" in only:
        # At least 3 s: a burst of 256 connects overflows the listen backlog
        # (128), the kernel drops the excess and those clients retry after 1 s,
        # so a shorter run would count them as starved.
        secs256 = max(cfg["http_secs"], 3)
        h256 = suite.wrk("rouille, no work", hello, 256, secs=secs256)
        for b in backends:
            e256 = suite.wrk(f"engine {b['name']} GetProgress", b["engine"], 256, pg=b["kind"] == "pg", secs=secs256)
            ok = e256["starved"] == 0 and e256["seen"] == 256 and e256["timeouts"] == 0
            suite.row(f"256 keep-alive connections, {b['name']}: connections never answered",
                      f"{e256['starved']} of 256 (ss saw {e256['seen']})",
                      f"{h256['starved']} of 256 (bare rouille)", None, "0", ok)
            suite.row(f"256 keep-alive connections, {b['name']}: peak RSS",
                      f"{e256['rss_peak'] / 1024:.1f} MiB ({e256['threads']} threads)",
                      f"{h256['rss_peak'] / 1024:.1f} MiB (bare rouille)", None, "≤ 64 MiB",
                      e256["rss_peak"] / 1024 <= 64)
            suite.ratio_row(f"GetProgress @256, {b['name']}: req/s vs bare rouille @256", e256["rps"], h256["rps"], "")

    # Pickup, the encoder, big files.
    if "pickup" in only:
        for b in backends:
            scenario_pickup(suite, b)
    if "encoder" in only:
        scenario_encoder(suite, backends[0], real_tools, backends[0]["audio"], "20 s fixture", cfg["enc_runs"],
                         at_most=1.05)
        # The same fixed cost on a song's length: what a user waits for.
        secs = cfg["song_secs"]
        song = upload(backends[0]["engine"], long_track(suite, secs))
        scenario_encoder(suite, backends[0], real_tools, song, f"{secs} s track (info)", 1)
    if "files" in only:
        scenario_files(suite, eng_pg, static)

    for name, idle in idles.items():
        r = idle.wait()
        suite.row(f"idle engine, {name}: RSS", f"{r['rss']:.1f} MiB ({r['threads']} threads)",
                  f"{hello_idle_rss:.1f} MiB (bare rouille)", None, "≤ 20 MiB", r["rss"] <= 20)
        pg = f" + its {r['backends']} PostgreSQL backend(s) {r['pg']:.3f} %" if r["backends"] else ""
        suite.row(f"idle engine, {name}: CPU over {r['secs']:.0f} s", f"{r['cpu']:.3f} %{pg}", "–", None, "≤ 0.5 %",
                  r["cpu"] + r["pg"] <= 0.5)
    suite.check_alive()


def check_created(suite, backend, before, run):
    made = count_jobs(suite, backend) - before
    if abs(made - run["requests"]) > run["conns"]:
        suite.notes.append(f"CreateJob on {backend['name']}: wrk counted {run['requests']} answers but "
                           f"{made} jobs were created")
    else:
        suite.notes.append(f"CreateJob on {backend['name']}: {made} jobs created for {run['requests']} answers "
                           "(checked in the store)")


# --------------------------------------------------------------- report ---

def fmt_ratio(r):
    return "–" if r is None else f"{r:.2f}"


def verdict(ok):
    return "info" if ok is None else ("pass" if ok else "MISS")


def table(rows):
    out = ["| figure | engine | baseline | ratio | target | result |", "|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['figure']} | {r['value']} | {r['base']} | {fmt_ratio(r['ratio'])} | {r['target']} | "
                   f"{verdict(r['ok'])} |")
    return "\n".join(out)


def runs_table(runs):
    def f(v, spec="{:.2f}"):
        return "–" if v is None else spec.format(v)
    out = ["| run | conns | req/s | p50 ms | p90 ms | p99 ms | max ms | errors | non-2xx | starved | "
           "server CPU µs/req | PG CPU µs/req | peak RSS MiB | foreign CPU s |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        starved = "–" if r["starved"] is None else f"{r['starved']}/{r['conns']}"
        rss = None if r["rss_peak"] is None else r["rss_peak"] / 1024
        out.append(f"| {r['label']} | {r['conns']} | {r['rps']:,.0f} | {f(r['p50'])} | {f(r['p90'])} | "
                   f"{f(r['p99'])} | {f(r['max'])} | {r['errors']} | {r['non2xx']} | {starved} | "
                   f"{f(r['cpu_us'], '{:.0f}')} | {f(r['pg_us'], '{:.0f}')} | {f(rss, '{:.1f}')} | "
                   f"{f(r['foreign'], '{:.1f}')} |")
    return "\n".join(out)


def machine():
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        total = int(f.readline().split()[1]) // 1024
    git = lambda *a: subprocess.run(["git", "-C", ROOT] + list(a), capture_output=True, text=True).stdout.strip()
    commit = git("rev-parse", "--short", "HEAD")
    if git("status", "--porcelain", "--untracked-files=no"):
        commit += " (with uncommitted changes)"
    wrk_v = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split("\n")[0].split(" [")[0]
    pg_v = subprocess.run(["psql", "-qAtX", Postgres(os.environ.get("BENCH_DATABASE") or os.environ.get(
        "JOBENGINE_TEST_DATABASE") or "postgres://postgres@127.0.0.1:5432/postgres").url("postgres"), "-c",
        "SHOW server_version"], capture_output=True, text=True).stdout.strip()
    rustc = subprocess.run(["rustc", "-V"], capture_output=True, text=True).stdout.strip()
    return (f"{os.cpu_count()} × {model}, {total:,} MiB RAM, Linux {platform.release()}; "
            f"PostgreSQL {pg_v}; {wrk_v}; {rustc}; Python {platform.python_version()} (driver); commit {commit}")


def report(suite, crashed):
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    mach = machine()
    misses = [r for r in suite.rows if r["ok"] is False]
    text = [f"### {when}, {suite.cfg['mode']} run", "", f"Machine: {mach}", "", table(suite.rows), ""]
    if suite.notes:
        text += ["Notes:", ""] + [f"- {n}" for n in suite.notes] + [""]
    text += ["<details><summary>every load run</summary>", "", runs_table(suite.runs), "", "</details>", ""]
    if crashed:
        text += [f"**The run did not finish:** {crashed}", ""]
    body = "\n".join(text)
    print(body)
    print(f"{len(suite.rows) - len(misses)} of {len(suite.rows)} figures pass or are informational; "
          f"{len(misses)} missed.", file=sys.stderr)
    partial = suite.args.only != set(GROUPS)
    record = not partial and ((suite.cfg["mode"] == "full" and not suite.args.no_record) or suite.args.record)
    if record and suite.rows:
        path = os.path.join(ROOT, "BENCHMARKS.md")
        with open(path, "a") as f:
            f.write("\n" + body)
        say(f"results appended to {path}")


if __name__ == "__main__":
    sys.exit(main())
