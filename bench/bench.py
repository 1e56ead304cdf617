#!/usr/bin/env python3
"""The idmap-overlay benchmark. Run it through bench/run.sh, which builds the
binaries and starts this inside a private mount namespace.

Everything it mounts lives in that namespace and under --work: a tmpfs at
WORK/r holds the state directories (like /run), the layers and targets are
plain directories on the disk filesystem below WORK. It never touches
/run/idmap-overlay and never unmounts anything it did not mount.

Sections (see docs/BENCHMARKS.md for what each measures):
  1. temporary mounts per overlay   (mountinfo watcher peak, strace counts)
  2. mount-table change events      (POLLPRI wake-ups on /proc/self/mountinfo)
  3. mount / umount latency         (whole process, tool, Rust floor and C floor,
                                     interleaved); build variants
  3b. in-process cycles             (library API against the in-process floors)
  4. scale                          (100 concurrent overlays, 2,000 unrelated mounts)
  5. gc and inspect --leaks         (10,000 records, 2,000 leaked temp mounts)
  namespaces axis (issue 19)        (mount+umount beside 0 to 1,000 other mount
                                     namespaces: tool, C floor, C floor with the
                                     kernel checks, complete-scan floor)
"""

import argparse
import collections
import datetime
import json
import math
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time

STRATEGIES = ["per-layer", "common-dir", "detached"]
IMPLS = ["tool", "floor"]
# The whole-process latency runs the C floor too (same argv as the Rust one).
LATENCY_IMPLS = ["tool", "floor", "cfloor"]
MAP_TOOL = "0:100000:65536"
MAP_LINE = "0 100000 65536"


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def pct(values, q):
    """The q-quantile (0..1) of values, linear interpolation."""
    v = sorted(values)
    if not v:
        return float("nan")
    k = (len(v) - 1) * q
    lo, hi = math.floor(k), math.ceil(k)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


def summary(values):
    return {
        "n": len(values),
        "median": statistics.median(values) if values else float("nan"),
        "p25": pct(values, 0.25),
        "p75": pct(values, 0.75),
        "min": min(values) if values else float("nan"),
        "max": max(values) if values else float("nan"),
    }


def parse_cycles(text):
    """The ms of each cycle from a `cycles` program's output (ns per line)."""
    return [int(line) / 1e6 for line in text.split()]


# ------------------------------------------------ the namespaces axis
# (issue 19): other mount namespaces, each a copy of the harness's table
# plus this many small tmpfs mounts, like a container's.
NS_MOUNTS_EACH = 30
NS_LAYERS = 50
# The programs timed at each point, in the order they run in a cycle. "check"
# is the C floor with --kernel-checks.
NS_IMPLS = ["tool", "cfloor", "check"]
# Exit statuses that still make a timed cycle (its umount) in the case where
# the namespaces hold copies of the overlay: the tool keeps its record
# `detached` and may exit 0 or 32 (depending on who holds the copies); the
# C floor with checks exits 64 when IN_UNMOUNT did not come (the superblock
# lives on in the copies), which is the right answer there.
NS_UMOUNT_OK_BETWEEN = {"tool": {0, 32}, "cfloor": {0}, "check": {0, 64}}


def ns_points(quick):
    """The points of the namespaces axis: (other namespaces, when they are
    made): "before" the mount, or "between" mount and umount (they then hold
    copies of the overlay)."""
    if quick:
        return [(0, "before"), (200, "before"), (200, "between")]
    return [(0, "before"), (200, "before"), (1000, "before"), (200, "between")]


def parse_nsscan(text):
    """bench/cfloor/nsscan's output: one dict per scan (namespaces, mounts,
    overlays, via, ms in-process)."""
    out = []
    for line in text.splitlines():
        if not line.strip():
            continue
        kv = dict(f.split("=", 1) for f in line.split())
        out.append({"namespaces": int(kv["namespaces"]), "mounts": int(kv["mounts"]),
                    "overlays": int(kv["overlays"]), "via": kv["via"], "ms": int(kv["ns"]) / 1e6})
    return out


def parse_holder(line, word):
    """nsholder's `ready N NANOSECONDS` or `released NANOSECONDS`: the ms it
    took (and, for ready, how many namespaces). None if the line is not the
    expected word (the holder died: see its stderr)."""
    f = line.split()
    if not f or f[0] != word:
        return None
    if word == "ready" and len(f) == 3:
        return int(f[1]), int(f[2]) / 1e6
    if word == "released" and len(f) == 2:
        return int(f[1]) / 1e6
    return None


def tally(statuses):
    """Exit statuses counted, as JSON can keep them: {"0": 20, "32": 3}."""
    c = collections.Counter(statuses)
    return {str(k): c[k] for k in sorted(c)}


def ns_cycles(res, warmup):
    """A namespaces-axis plan's results, (label `impl:phase:round`, ms,
    status), as {impl: {round: {phase: (ms, status)}}}, warm-up rounds
    dropped."""
    out = {}
    for label, ms, st in res:
        impl, phase, r = label.split(":")
        if int(r) >= warmup:
            out.setdefault(impl, {}).setdefault(int(r), {})[phase] = (ms, st)
    return out


def ns_summarize(cycles, umount_ok):
    """One program's cycles at one point: mount, umount and cycle times over
    the cycles whose mount exited 0 and whose umount exited with a status in
    umount_ok, and every exit status seen."""
    good = [c for c in cycles.values()
            if c["mount"][1] == 0 and c["umount"][1] in umount_ok]
    return {"mount": summary([c["mount"][0] for c in good]),
            "umount": summary([c["umount"][0] for c in good]),
            "cycle": summary([c["mount"][0] + c["umount"][0] for c in good]),
            "mount_exits": tally([c["mount"][1] for c in cycles.values()]),
            "umount_exits": tally([c["umount"][1] for c in cycles.values()]),
            "failures": len(cycles) - len(good)}


class NsHolder:
    """bench/cfloor/nsholder as a context manager: n other mount namespaces
    from __init__ until release() (or, on any error, until it is killed by
    its pid on the way out)."""

    def __init__(self, binary, n, mounts, mountpoints, stderr):
        self.n = n
        self.p = subprocess.Popen([binary, str(n), str(mounts), mountpoints],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=stderr, text=True)
        got = parse_holder(self.p.stdout.readline(), "ready")
        if got is None or got[0] != n:
            self.kill()
            raise RuntimeError(f"nsholder {n}: did not make its namespaces (exit "
                               f"{self.p.returncode}); see log/children.stderr")
        self.made_ms = got[1]
        self.released_ms = None

    def release(self):
        """Closes every namespace fd (the holder does, when its stdin closes)
        and waits for it to exit: the namespaces are gone on return."""
        self.p.stdin.close()
        got = parse_holder(self.p.stdout.readline(), "released")
        try:
            self.p.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.kill()
        if got is None or self.p.returncode != 0:
            raise RuntimeError(f"nsholder {self.n}: release failed (exit {self.p.returncode})")
        self.released_ms = got
        return got

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()  # our own child, by its pid
        self.p.wait()
        for f in (self.p.stdin, self.p.stdout):
            if not f.closed:
                try:
                    f.close()
                except BrokenPipeError:
                    pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.kill()
        return False


def mountinfo():
    with open("/proc/self/mountinfo") as f:
        return [line.split() for line in f]


def fstype(m):
    return m[m.index("-") + 1]


def mounted_under(path):
    path = path.rstrip("/")
    return [m for m in mountinfo() if m[4] == path or m[4].startswith(path + "/")]


def cpu_busy_s():
    """CPU-seconds all processes have used (from /proc/stat), and ours."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    hz = os.sysconf("SC_CLK_TCK")
    busy = (sum(v[:8]) - v[3] - v[4]) / hz
    t = os.times()
    return busy, t.user + t.system + t.children_user + t.children_system


def wait_idle(max_wait):
    """Waits (up to max_wait s) for a 3 s window in which the machine is
    under 10% busy: other people's builds make every number noisier."""
    deadline = time.time() + max_wait
    while True:
        b0, _ = cpu_busy_s()
        time.sleep(3)
        b1, _ = cpu_busy_s()
        busy = (b1 - b0) / 3 / os.cpu_count()
        if busy < 0.10 or time.time() > deadline:
            return busy
        log(f"machine {busy:.0%} busy with other work; waiting for it to calm down")


class Bench:
    def __init__(self, args):
        self.a = args
        self.work = os.path.realpath(args.work)
        self.quick = args.quick
        if self.quick:
            self.counts = [1, 10, 50]
            self.runs = args.runs or 5
            self.warmup = 1
            self.scale_n, self.scale_layers, self.unrelated = 10, 10, 100
            self.gc_records, self.gc_leaks = 1000, 200
        else:
            self.counts = [1, 10, 50, 100, 500]
            self.runs = args.runs or 60
            self.warmup = 3
            self.scale_n, self.scale_layers, self.unrelated = 100, 50, 2000
            self.gc_records, self.gc_leaks = 10000, 2000
        self.tool, self.floor, self.kit = args.tool, args.floor, args.benchkit
        self.cfloor = args.cfloor
        # In-process: rounds of cycles, each program in turn.
        self.inproc_rounds, self.inproc_cycles = (2, 5) if self.quick else (10, 30)
        # Namespaces axis: (warm-up, measured) cycles per point made before,
        # and for the case made between mount and umount (each of its cycles
        # makes and releases the namespaces again).
        self.ns_before = (1, 5) if self.quick else (2, 25)
        self.ns_between = (1, 3) if self.quick else (2, 15)
        self.results = {"sections": {}}
        self.seq = 0
        self.other_shares, self.retries = [], 0
        self.logdir = os.path.join(self.work, "log")

    # ----------------------------------------------------------------- setup
    def check_namespace(self):
        mine = os.readlink("/proc/self/ns/mnt")
        if not self.a.host_ns or mine == self.a.host_ns:
            sys.exit("bench: refusing to run in the host mount namespace; use bench/run.sh")
        shared = [m for m in mountinfo() if any(f.startswith("shared:") for f in m[6:m.index("-")])]
        if shared:
            sys.exit(f"bench: mounts here still propagate ({shared[0][4]}); run under "
                     "unshare -m --propagation private")

    def setup(self):
        self.check_namespace()
        os.makedirs(self.logdir, exist_ok=True)
        self.run_dir = os.path.join(self.work, "r")
        os.mkdir(self.run_dir, 0o700)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0700,size=512m", "bench-run",
                        self.run_dir], check=True)
        # Same length as each other (and as /run/idmap-overlay, give or take
        # the length of WORK) so lowerdir= strings compare like with like.
        self.state = os.path.join(self.run_dir, "s")
        self.floor_state = os.path.join(self.run_dir, "f")
        assert os.path.realpath(self.state) != "/run/idmap-overlay"
        os.makedirs(os.path.join(self.floor_state, "tmp"), 0o700)
        os.environ["IDMAP_OVERLAY_STATE_DIR"] = self.state
        os.environ.pop("RUST_LOG", None)
        self.snap = os.path.join(self.work, "snapshots")
        for i in range(1, max(self.counts) + 1):
            d = os.path.join(self.snap, str(i), "fs")
            os.makedirs(d)
            with open(os.path.join(d, f"file-{i}"), "w") as f:
                f.write(f"layer {i}\n")
        self.stderr = open(os.path.join(self.logdir, "children.stderr"), "a")
        self.baseline_table = len(mountinfo())

    def layers(self, n):
        return [os.path.join(self.snap, str(i), "fs") for i in range(1, n + 1)]

    def fake_id(self):
        """A temp-dir name shaped like the tool's generated ids."""
        self.seq += 1
        now = time.time_ns()
        return f"{now // 10**9:x}-{os.getpid():x}-{(now + self.seq) % 10**9:x}"

    def dirs(self, key):
        base = os.path.join(self.work, "c", key)
        target, up, wk = (os.path.join(base, x) for x in ("m", "up", "wk"))
        for d in (target, up, wk):
            os.makedirs(d, exist_ok=True)
        return target, up, wk

    def mount_argv(self, impl, strategy, n, target, up, wk, layers=None):
        layers = layers or self.layers(n)
        if impl == "tool":
            return [self.tool, "mount", "--lowerdir", ":".join(layers), "--upperdir", up,
                    "--workdir", wk, "--uidmap", MAP_TOOL, "--strategy", strategy, target]
        if n == 1:
            common, rels = layers[0], ["."]
        else:
            common = os.path.commonpath(layers)
            rels = [os.path.relpath(l, common) for l in layers]
        tmp = os.path.join(self.floor_state, "tmp", self.fake_id())
        return [self.floor_bin(impl), "mount", strategy, target, tmp, common, up, wk, MAP_LINE, *rels]

    def floor_bin(self, impl):
        return self.cfloor if impl == "cfloor" else self.floor

    def umount_argv(self, impl, target):
        return [self.tool, "umount", target] if impl == "tool" else [self.floor_bin(impl), "umount", target]

    # ------------------------------------------------------------ running
    def run(self, argv, **kw):
        return subprocess.run(argv, capture_output=True, text=True, **kw)

    def run_plan(self, lines, mode="run"):
        """lines: (label, argv); returns [(label, ms, status)]."""
        path = os.path.join(self.logdir, "plan.tsv")
        with open(path, "w") as f:
            for label, argv in lines:
                assert not any("\t" in a or "\n" in a for a in argv)
                f.write("\t".join([label, *argv]) + "\n")
        out = subprocess.run([self.kit, mode, path], stdout=subprocess.PIPE, stderr=self.stderr,
                             text=True, check=True).stdout
        res = []
        for line in out.splitlines():
            label, ns, status = line.split("\t")
            res.append((label, int(ns) / 1e6, int(status)))
        return res

    def quiet_plan(self, lines, what):
        """run_plan, quietly (see quietly)."""
        return self.quietly(lambda: self.run_plan(lines), what)

    def quietly(self, measure, what):
        """measure(), redone (after waiting for the machine to calm down) when
        other processes took more than 15% of the CPU (and 0.2 CPU-seconds)
        while it ran: timing runs share the machine with whatever else is on
        it. Kernel threads finishing our own unmounts count as others too."""
        for attempt in range(3):
            t0, (b0, o0) = time.time(), cpu_busy_s()
            res = measure()
            wall = time.time() - t0
            b1, o1 = cpu_busy_s()
            other_s = max(0.0, (b1 - b0) - (o1 - o0))
            other = other_s / wall / os.cpu_count()
            if other <= 0.15 or other_s < 0.2 or attempt == 2:
                break
            log(f"{what}: other processes took {other:.0%} of the CPU; measuring again")
            wait_idle(120)
        self.other_shares.append(other)
        self.retries += attempt
        return res

    def watcher(self, read):
        argv = [self.kit, "watch"] + (["--read"] if read else [])
        p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert p.stdout.readline().strip() == "ready"
        return p

    @staticmethod
    def stop(p):
        p.stdin.close()
        out = p.stdout.read()
        p.wait()
        return {k: int(v) for k, v in (l.split() for l in out.splitlines())}

    def strace_counts(self, argv):
        out = os.path.join(self.logdir, "strace.txt")
        r = self.run(["strace", "-f", "-c", "-o", out, *argv])
        counts = {}
        with open(out) as f:
            for line in f:
                tok = line.split()
                if len(tok) in (5, 6) and re.fullmatch(r"[\d.]+", tok[0]) and tok[-1].isidentifier():
                    counts[tok[-1]] = int(tok[3])
                    counts[tok[-1] + ":errors"] = int(tok[4]) if len(tok) == 6 else 0
        return r.returncode, counts

    def leftovers(self):
        """Mounts or records a config left behind (must be none)."""
        left = [m[4] for m in mountinfo() if m[4].startswith(self.work + "/c/")]
        left += [m[4] for m in mounted_under(os.path.join(self.state, "tmp"))]
        left += [m[4] for m in mounted_under(os.path.join(self.floor_state, "tmp"))]
        recs = os.listdir(os.path.join(self.state, "mounts")) if os.path.isdir(
            os.path.join(self.state, "mounts")) else []
        return left, [r for r in recs if r.endswith(".json")]

    def record_states(self):
        """The state of every record in the tool's state directory."""
        d = os.path.join(self.state, "mounts")
        states = []
        for name in sorted(os.listdir(d)) if os.path.isdir(d) else []:
            if name.endswith(".json"):
                try:
                    with open(os.path.join(d, name)) as f:
                        states.append(json.load(f).get("state", "?"))
                except (OSError, ValueError):
                    states.append("unreadable")
        return states

    def clean_config(self, target):
        """Unmounts an overlay the benchmark itself left at target (after a
        failure), checking it is one of ours by its source tag."""
        for m in reversed(mountinfo()):
            if m[4] == target:
                src = m[m.index("-") + 2]
                if src == "floor" or src.startswith("idmap-overlay:"):
                    self.run([self.floor, "umount", target])

    # ------------------------------------------------------ section 0
    def startup(self):
        log("process start baseline")
        lines = []
        for r in range(self.warmup + self.runs):
            lines += [(f"floor:{r}", [self.floor, "noop"]),
                      (f"cfloor:{r}", [self.cfloor, "noop"]),
                      (f"tool:{r}", [self.tool, "--version"]),
                      (f"true:{r}", ["/bin/true"])]
        res = self.quiet_plan(lines, "process start")
        out = {}
        for who in ("floor", "cfloor", "tool", "true"):
            v = [ms for l, ms, st in res if l.startswith(who + ":") and int(l.split(":")[1]) >= self.warmup]
            out[who] = summary(v)
        self.results["startup"] = out

    # ------------------------------------------------------ sections 1, 2
    def counts_and_events(self):
        sec = {}
        for strategy in STRATEGIES:
            for n in self.counts:
                for impl in IMPLS:
                    key = f"{impl}-{strategy}-{n}"
                    log(f"mounts/events {key}")
                    target, up, wk = self.dirs(key)
                    r = self.run(self.mount_argv(impl, strategy, n, target, up, wk))
                    entry = {"ok": r.returncode == 0}
                    if r.returncode != 0:
                        entry["exit"] = r.returncode
                        entry["error"] = (r.stderr.strip().splitlines() or ["?"])[-1]
                        sec[key] = entry
                        continue
                    u = self.run(self.umount_argv(impl, target))
                    if u.returncode != 0:
                        raise SystemExit(f"bench: {key}: umount failed: {u.stderr}")
                    # syscall counts
                    rc, mc = self.strace_counts(self.mount_argv(impl, strategy, n, target, up, wk))
                    rc2, uc = self.strace_counts(self.umount_argv(impl, target))
                    entry["syscalls_mount"], entry["syscalls_umount"] = mc, uc
                    # peak temporary mounts, read as a watcher sees them
                    w = self.watcher(read=True)
                    self.run(self.mount_argv(impl, strategy, n, target, up, wk))
                    self.run(self.umount_argv(impl, target))
                    peak = self.stop(w)
                    entry["peak_idmapped"] = peak["peak_idmapped"] - peak["baseline_idmapped"]
                    entry["peak_overlay"] = peak["peak_overlay"] - peak["baseline_overlay"]
                    entry["peak_table_delta"] = peak["peak_total"] - peak["baseline_total"]
                    # events: a tight watcher, mount and umount apart, 3 times
                    ev_m, ev_u = [], []
                    for _ in range(3):
                        w = self.watcher(read=False)
                        self.run(self.mount_argv(impl, strategy, n, target, up, wk))
                        ev_m.append(self.stop(w)["wakeups"])
                        w = self.watcher(read=False)
                        self.run(self.umount_argv(impl, target))
                        ev_u.append(self.stop(w)["wakeups"])
                    entry["events_mount"] = ev_m
                    entry["events_umount"] = ev_u
                    # where the floor's kernel time goes, per phase
                    if impl == "floor":
                        phases = {}
                        for _ in range(15):
                            env = dict(os.environ, FLOOR_TIMINGS="1")
                            for argv in (self.mount_argv(impl, strategy, n, target, up, wk),
                                         self.umount_argv(impl, target)):
                                rr = self.run(argv, env=env)
                                for line in rr.stderr.splitlines():
                                    if line.startswith("phases "):
                                        for kv in line.split()[1:]:
                                            k, v = kv.split("=")
                                            phases.setdefault(k, []).append(int(v) / 1e6)
                        entry["phases"] = {k: statistics.median(v) for k, v in phases.items()}
                    left, recs = self.leftovers()
                    if left or recs:
                        raise SystemExit(f"bench: {key} left {left} {recs}")
                    sec[key] = entry
        self.results["sections"]["counts"] = sec

    # ---------------------------------------------------------- section 3
    def latency(self):
        """One batch per layer count, every strategy and both programs
        interleaved in it (tool mount, tool umount, floor mount, floor
        umount, next strategy, ...), so that strategies are compared under
        the same conditions as tool and floor are."""
        counts = self.results["sections"]["counts"]
        sec = {}
        for n in self.counts:
            # The C floor runs where the Rust floor worked (same calls, same limits).
            cells = [(s, i) for s in STRATEGIES for i in LATENCY_IMPLS
                     if counts[f"{'floor' if i == 'cfloor' else i}-{s}-{n}"]["ok"]]
            if not cells:
                continue
            log(f"latency {n} layers: {', '.join(f'{i} {s}' for s, i in cells)}")
            dirs = {c: self.dirs(f"{c[1]}-{c[0]}-{n}") for c in cells}
            lines = []
            for r in range(self.warmup + self.runs):
                for (s, i) in cells:
                    target, up, wk = dirs[(s, i)]
                    lines.append((f"{i}:{s}:mount:{r}", self.mount_argv(i, s, n, target, up, wk)))
                    lines.append((f"{i}:{s}:umount:{r}", self.umount_argv(i, target)))
            res = self.quiet_plan(lines, f"latency {n} layers")
            for (s, i) in cells:
                def get(phase):
                    return {int(l.rsplit(":", 1)[1]): (ms, st) for l, ms, st in res
                            if l.startswith(f"{i}:{s}:{phase}:")}
                mount, umount = get("mount"), get("umount")
                keep = range(self.warmup, self.warmup + self.runs)
                good = [r for r in keep if mount[r][1] == 0 and umount[r][1] == 0]
                sec[f"{i}-{s}-{n}"] = {
                    "mount": summary([mount[r][0] for r in good]),
                    "umount": summary([umount[r][0] for r in good]),
                    "cycle": summary([mount[r][0] + umount[r][0] for r in good]),
                    "failures": len(keep) - len(good),
                }
                self.clean_config(dirs[(s, i)][0])
            left, recs = self.leftovers()
            if left or recs:
                raise SystemExit(f"bench: latency {n} left {left} {recs}")
        self.results["sections"]["latency"] = sec

    # ------------------------------------------------- idmapped upper
    def idmapped_upper(self):
        """Issue 22: the tool's mount + umount with --idmapped-upper against
        the same without it, interleaved, for the strategies that work at
        the largest common layer count (50 in a full run). Each variant has
        its own upper and work directories: an upper written idmapped is
        refused to a plain mount."""
        counts = self.results["sections"]["counts"]
        n = 50 if 50 in self.counts else self.counts[-1]
        strategies = [s for s in STRATEGIES if counts[f"tool-{s}-{n}"]["ok"]]
        variants = [(s, v) for s in strategies for v in ("plain", "idmapped")]
        log(f"idmapped upper, {n} layers: {', '.join(strategies)}")
        dirs = {c: self.dirs(f"upper-{c[1]}-{c[0]}-{n}") for c in variants}
        lines = []
        for r in range(self.warmup + self.runs):
            for (s, v) in variants:
                target, up, wk = dirs[(s, v)]
                argv = self.mount_argv("tool", s, n, target, up, wk)
                if v == "idmapped":
                    argv.insert(2, "--idmapped-upper")
                lines.append((f"{s}:{v}:mount:{r}", argv))
                lines.append((f"{s}:{v}:umount:{r}", self.umount_argv("tool", target)))
        res = self.quiet_plan(lines, f"idmapped upper {n} layers")
        sec = {"layers": n, "strategies": {}}
        for (s, v) in variants:
            def get(phase):
                return {int(l.rsplit(":", 1)[1]): (ms, st) for l, ms, st in res
                        if l.startswith(f"{s}:{v}:{phase}:")}
            mount, umount = get("mount"), get("umount")
            keep = range(self.warmup, self.warmup + self.runs)
            good = [r for r in keep if mount[r][1] == 0 and umount[r][1] == 0]
            sec["strategies"].setdefault(s, {})[v] = {
                "mount": summary([mount[r][0] for r in good]),
                "umount": summary([umount[r][0] for r in good]),
                "cycle": summary([mount[r][0] + umount[r][0] for r in good]),
                "failures": len(keep) - len(good),
                "exits": tally([mount[r][1] for r in keep]),
            }
            self.clean_config(dirs[(s, v)][0])
        left, recs = self.leftovers()
        if left or recs:
            raise SystemExit(f"bench: idmapped upper left {left} {recs}")
        self.results["sections"]["idmapped_upper"] = sec

    # ------------------------------------------------- build variants
    def variants(self):
        """Detached, 50 layers: the tool as installed (static) and dynamically
        linked, the Rust floor as built and static, the C floor, interleaved."""
        if not (self.a.tool_dynamic and self.a.floor_static):
            return
        n = 50 if 50 in self.counts else self.counts[-1]
        bins = {"tool": self.tool, "tool-dynamic": self.a.tool_dynamic,
                "floor": self.floor, "floor-static": self.a.floor_static, "cfloor": self.cfloor}
        log(f"build variants, detached {n} layers")
        target, up, wk = self.dirs(f"variants-{n}")
        lines = []
        for r in range(self.warmup + self.runs):
            for name, path in bins.items():
                impl = "tool" if name.startswith("tool") else "floor"  # same argv for cfloor
                argv = self.mount_argv(impl, "detached", n, target, up, wk)
                argv[0] = path
                lines.append((f"{name}:mount:{r}", argv))
                lines.append((f"{name}:umount:{r}", [path] + self.umount_argv(impl, target)[1:]))
                lines.append((f"{name}:start:{r}", [path, "--version" if impl == "tool" else "noop"]))
        res = self.quiet_plan(lines, "build variants")
        out = {}
        for name in bins:
            get = lambda what: {int(l.split(":")[2]): (ms, st) for l, ms, st in res
                                if l.startswith(f"{name}:{what}:") and int(l.split(":")[2]) >= self.warmup}
            m, u, st = get("mount"), get("umount"), get("start")
            good = [r for r in m if m[r][1] == 0 and u[r][1] == 0]
            out[name] = {"mount": summary([m[r][0] for r in good]),
                         "umount": summary([u[r][0] for r in good]),
                         "cycle": summary([m[r][0] + u[r][0] for r in good]),
                         "start": summary([v[0] for v in st.values()]),
                         "failures": len(m) - len(good),
                         "size": os.path.getsize(bins[name])}
        self.clean_config(target)
        self.results["sections"]["variants"] = {"layers": n, "builds": out}

    # --------------------------------------------------------- section 3b
    def inproc(self):
        """Detached, 50 layers, mount + umount cycles in one process: the
        library API (bench/inproc-api) against the Rust and the C floor's
        `cycles`. Rounds rotate which program goes first; each round runs
        every program once with warm-up cycles of its own."""
        if not self.a.inproc_api:
            return
        n = 50 if 50 in self.counts else self.counts[-1]
        layers = self.layers(n)
        common = os.path.commonpath(layers)
        rels = [os.path.relpath(l, common) for l in layers]
        target, up, wk = self.dirs(f"inproc-{n}")
        warmup = self.warmup
        argv = {
            "api": [self.a.inproc_api, str(warmup), str(self.inproc_cycles), "detached", target,
                    up, wk, MAP_TOOL, *layers],
            "floor": [self.floor, "cycles", str(warmup), str(self.inproc_cycles), target, common,
                      up, wk, MAP_LINE, *rels],
            "cfloor": [self.cfloor, "cycles", str(warmup), str(self.inproc_cycles), target, common,
                       up, wk, MAP_LINE, *rels],
            "check": [self.cfloor, "--kernel-checks", "cycles", str(warmup), str(self.inproc_cycles),
                      target, common, up, wk, MAP_LINE, *rels],
        }
        log(f"in-process cycles, detached {n} layers: {self.inproc_rounds} rounds of "
            f"{self.inproc_cycles} cycles each")
        times = {k: [] for k in argv}
        for r in range(self.inproc_rounds):
            order = list(argv)[r % len(argv):] + list(argv)[:r % len(argv)]

            def measure():
                got = {}
                for k in order:
                    p = subprocess.run(argv[k], stdout=subprocess.PIPE, stderr=self.stderr,
                                       text=True)
                    if p.returncode != 0:
                        self.clean_config(target)
                        raise SystemExit(f"bench: in-process {k} failed (exit {p.returncode}); "
                                         f"see {self.logdir}/children.stderr")
                    got[k] = parse_cycles(p.stdout)
                return got

            for k, v in self.quietly(measure, f"in-process round {r + 1}").items():
                times[k] += v
        left, recs = self.leftovers()
        if left or recs:
            raise SystemExit(f"bench: in-process left {left} {recs}")
        self.results["sections"]["inproc"] = {
            "layers": n, "rounds": self.inproc_rounds, "cycles": self.inproc_cycles,
            "warmup": warmup, "impls": {k: summary(v) for k, v in times.items()},
            "loadavg": open("/proc/loadavg").read().split()[:3]}

    # ---------------------------------------------------------- section 4
    def scale(self):
        sec = {"overlays": self.scale_n, "layers": self.scale_layers, "unrelated": self.unrelated}
        fill = os.path.join(self.work, "unrelated")
        os.makedirs(fill)
        log(f"scale: mounting {self.unrelated} unrelated tmpfs")
        t = time.perf_counter()
        subprocess.run([self.kit, "fill", fill, str(self.unrelated)], check=True)
        sec["fill_s"] = time.perf_counter() - t
        sec["table_before"] = len(mountinfo())
        layers = self.layers(self.scale_layers)
        for strategy in STRATEGIES:
            for impl in IMPLS:
                key = f"{impl}-{strategy}"
                log(f"scale {key}: {self.scale_n} x {self.scale_layers} layers")
                targets = []
                mounts, umounts = [], []
                for k in range(self.scale_n):
                    base = os.path.join(self.work, "scale", key, str(k))
                    target, up, wk = (os.path.join(base, x) for x in ("m", "up", "wk"))
                    for d in (target, up, wk):
                        os.makedirs(d)
                    targets.append(target)
                    mounts.append((f"m{k}", self.mount_argv(impl, strategy, self.scale_layers,
                                                            target, up, wk, layers)))
                    umounts.append((f"u{k}", self.umount_argv(impl, target)))
                entry = {}
                for phase, plan in (("mount", mounts), ("umount", umounts)):
                    before = len(mountinfo())
                    wr, wc = self.watcher(read=True), self.watcher(read=False)
                    res = self.run_plan(plan, mode="parallel")
                    peak, events = self.stop(wr), self.stop(wc)
                    table = mountinfo()
                    per = [ms for l, ms, st in res if l != "WALL"]
                    entry[phase] = {
                        "wall_ms": [ms for l, ms, st in res if l == "WALL"][0],
                        "failures": sum(1 for l, ms, st in res if l != "WALL" and st != 0),
                        "statuses": sorted({st for l, ms, st in res if l != "WALL" and st != 0}),
                        "per_op": summary(per),
                        "events": events["wakeups"],
                        "watcher_wakeups": peak["wakeups"],
                        "watcher_read_ms": peak["read_ns"] / 1e6,
                        "table_before": before,
                        "peak_table": peak["peak_total"],
                        "peak_idmapped": peak["peak_idmapped"],
                        "overlays_after": sum(1 for m in table if fstype(m) == "overlay"),
                        "idmapped_after": sum(1 for m in table if "idmapped" in m[5].split(",")),
                        "table_after": len(table),
                    }
                left, recs = self.leftovers()
                entry["left_mounts"] = len([m for m in mountinfo() if m[4].startswith(
                    os.path.join(self.work, "scale", key) + "/")]) + len(left)
                entry["left_records"] = len(recs)
                # Whatever failed to unmount is ours: take it down, so the
                # next run starts from the same table.
                for target in targets:
                    self.clean_config(target)
                for m in mounted_under(os.path.join(self.state, "tmp")):
                    self.run([self.floor, "umount", m[4]])
                sec[key] = entry
        log("scale: unmounting the unrelated tmpfs")
        subprocess.run([self.kit, "unfill", fill, str(self.unrelated)], check=True)
        self.results["sections"]["scale"] = sec

    # ---------------------------------------------------------- section 5
    def gc_available(self):
        r = self.run([self.tool, "gc", "--help"])
        i = self.run([self.tool, "inspect", "--help"])
        return r.returncode == 0, i.returncode == 0

    def gc(self):
        has_gc, has_inspect = self.gc_available()
        sec = {"records": self.gc_records, "leaks": self.gc_leaks, "gc": has_gc,
               "inspect": has_inspect}
        self.results["sections"]["gc"] = sec
        if not (has_gc or has_inspect):
            log("gc/inspect: not implemented yet; skipped")
            return
        # A nested private namespace: its 12,000 mounts vanish with it.
        out = os.path.join(self.logdir, "gc.json")
        argv = ["unshare", "-m", "--propagation", "private", sys.executable, __file__,
                "--gc-child", out, "--work", self.work, "--tool", self.tool,
                "--floor", self.floor, "--cfloor", self.cfloor, "--benchkit", self.kit,
                "--md", "-", "--svg", "-",
                "--host-ns", os.readlink("/proc/self/ns/mnt")]
        if self.quick:
            argv.append("--quick")
        log(f"gc/inspect: {self.gc_records} records, {self.gc_leaks} leaked temporary mounts")
        r = subprocess.run(argv)
        if r.returncode != 0 or not os.path.exists(out):
            sec["error"] = f"the gc section failed (exit {r.returncode}); see the log above"
        else:
            with open(out) as f:
                sec.update(json.load(f))
        gstate = os.path.join(self.run_dir, "g")
        if os.path.isdir(gstate) and not mounted_under(gstate):
            shutil.rmtree(gstate)

    def gc_child(self, out):
        """Runs in its own private namespace (see gc())."""
        self.check_namespace()
        self.snap = os.path.join(self.work, "snapshots")
        self.stderr = open(os.path.join(self.logdir, "children.stderr"), "a")
        res = {}
        gstate = os.path.join(self.work, "r", "g")
        os.environ["IDMAP_OVERLAY_STATE_DIR"] = gstate
        base = os.path.join(self.work, "gc")
        targets = os.path.join(base, "t")
        os.makedirs(targets)
        snap = os.path.join(self.work, "snapshots")
        l1, l2 = os.path.join(snap, "1", "fs"), os.path.join(snap, "2", "fs")
        # A record template from the tool itself (common-dir, two layers).
        tpl_target = os.path.join(base, "template")
        os.makedirs(tpl_target)
        r = self.run([self.tool, "mount", "--json", "--lowerdir", f"{l1}:{l2}", "--uidmap",
                      MAP_TOOL, "--strategy", "common-dir", tpl_target])
        if r.returncode != 0:
            raise SystemExit(f"bench: template mount failed: {r.stderr}")
        template = json.loads(r.stdout)
        tid = template["id"]
        has_lock = os.path.exists(os.path.join(gstate, "locks", f"{tid}.lock"))
        self.run([self.tool, "umount", tpl_target]).check_returncode()
        # The overlays, in-process, the way the tool makes them.
        t = time.perf_counter()
        pop = subprocess.run([self.kit, "populate", gstate, snap, "1/fs", "2/fs", targets,
                              str(self.gc_records), str(self.gc_leaks)],
                             stdout=subprocess.PIPE, text=True, check=True).stdout
        res["populate_s"] = time.perf_counter() - t
        created = template.get("created")
        p = subprocess.Popen(["true"])  # a pid that is surely dead now
        p.wait()
        dead_pid = p.pid
        for line in pop.splitlines():
            rid, target, mid, umid = line.split("\t")
            rec = dict(template)
            rec.update({
                "id": rid, "target": target, "state": "mounted", "strategy": "common-dir",
                "lowerdirs": [l1, l2], "upperdir": None, "workdir": None,
                "temp_mounts": [os.path.join(gstate, "tmp", rid, "0")],
                "source": f"idmap-overlay:{rid}", "mount_id": int(mid),
                "mount_id_unique": int(umid), "pid": dead_pid, "created": created,
            })
            with open(os.path.join(gstate, "mounts", f"{rid}.json"), "w") as f:
                json.dump(rec, f, indent=2)
                f.write("\n")
            if has_lock:
                open(os.path.join(gstate, "locks", f"{rid}.lock"), "w").close()
        table = mountinfo()
        res["table"] = len(table)
        res["temp_before"] = len(mounted_under(os.path.join(gstate, "tmp")))

        def timed(argv, repeat, budget_s=40):
            times, last = [], None
            for _ in range(repeat):
                t = time.perf_counter()
                last = self.run(argv, timeout=600)
                times.append((time.perf_counter() - t) * 1e3)
                if sum(times) > budget_s * 1e3:
                    break
            return {"ms": summary(times), "exit": last.returncode,
                    "stdout_bytes": len(last.stdout),
                    "stderr_tail": last.stderr.strip().splitlines()[-3:]}, last

        if self.run([self.tool, "inspect", "--help"]).returncode == 0:
            log("gc child: inspect --leaks")
            res["inspect_leaks"], last = timed([self.tool, "inspect", "--leaks"], 5)
            res["inspect_leaks_json"], last = timed([self.tool, "inspect", "--leaks", "--json"], 3)
            try:
                rep = json.loads(last.stdout)
                res["inspect_leaks_json"]["top_keys"] = sorted(rep.keys())
            except ValueError:
                pass
            res["inspect_all"], _ = timed([self.tool, "inspect"], 3)
        if self.run([self.tool, "gc", "--help"]).returncode == 0:
            log("gc child: gc --dry-run")
            res["gc_dry"], _ = timed([self.tool, "gc", "--dry-run"], 5)
            log("gc child: gc")
            res["gc"], last = timed([self.tool, "gc", "--json"], 1)
            try:
                rep = json.loads(last.stdout)
                res["gc"]["cleaned"] = len(rep.get("cleaned", []))
                res["gc"]["failed"] = len(rep.get("failed", []))
            except ValueError:
                res["gc"]["cleaned"] = None
            res["temp_after"] = len(mounted_under(os.path.join(gstate, "tmp")))
            res["overlays_after"] = sum(1 for m in mountinfo() if m[4].startswith(targets + "/"))
            res["records_after"] = len([x for x in os.listdir(os.path.join(gstate, "mounts"))
                                        if x.endswith(".json")])
            res["gc_again"], _ = timed([self.tool, "gc", "--dry-run"], 1)
        # mount/umount with 10,000 records in the state directory
        log("gc child: mount/umount with the records present")
        tgt = os.path.join(base, "probe")
        up, wk = os.path.join(base, "up"), os.path.join(base, "wk")
        for d in (tgt, up, wk):
            os.makedirs(d)
        lines = []
        for r in range(5):
            lines.append((f"m:{r}", self.mount_argv("tool", "detached", 50, tgt, up, wk)))
            lines.append((f"u:{r}", self.umount_argv("tool", tgt)))
        resp = self.run_plan(lines)
        res["mount_with_records"] = summary([ms for l, ms, st in resp if l.startswith("m:") and st == 0])
        res["umount_with_records"] = summary([ms for l, ms, st in resp if l.startswith("u:") and st == 0])
        res["mount_with_records_failures"] = sum(1 for l, ms, st in resp if st != 0)
        with open(out, "w") as f:
            json.dump(res, f)

    # ------------------------------------------------ namespaces axis
    def namespaces(self):
        """Issue 19: a mount+umount cycle (50 layers, whole process) beside
        other mount namespaces, made before the mount or between mount and
        umount; the tool, the C floor, the C floor with the kernel checks and
        the complete-scan floor timed in one interleaved run per point."""
        if not (self.a.nsscan and self.a.nsholder):
            return
        counts = self.results["sections"]["counts"]
        detached = all(counts.get(f"{i}-detached-{NS_LAYERS}", {}).get("ok") for i in IMPLS)
        strategy = "detached" if detached else "common-dir"
        sec = {"layers": NS_LAYERS, "strategy": strategy, "mounts_each": NS_MOUNTS_EACH,
               "before": list(self.ns_before), "between": list(self.ns_between), "points": []}
        self.results["sections"]["namespaces"] = sec
        left, recs = self.leftovers()
        if left or recs:
            sec["error"] = f"not started: earlier sections left {left} {recs}"
            return
        a = self.ns_argv(strategy)
        sec["probe_check"] = self.ns_probe_check(a)
        for n, when in ns_points(self.quick):
            log(f"namespaces: {n} other mount namespaces made {when} mount and umount"
                if when == "between" else f"namespaces: {n} other mount namespaces")
            try:
                point = self.ns_before_point(n, a) if when == "before" else \
                    self.ns_between_point(n, a)
            except RuntimeError as e:
                sec["error"] = str(e)
                log(f"namespaces: {e}; section stopped")
                break
            sec["points"].append(point)
            # Whatever a failed step left behind, so the next point starts
            # clean: our overlays unmounted, records to gc, or stop.
            for impl in NS_IMPLS:
                self.clean_config(a[impl]["target"])
            left, recs = self.leftovers()
            if recs:
                self.run([self.tool, "gc"])
                left, recs = self.leftovers()
            if left or recs:
                sec["error"] = f"after {n} {when}: left {left} {recs}; section stopped"
                log(f"namespaces: {sec['error']}")
                break
        sec["loadavg"] = open("/proc/loadavg").read().split()[:3]

    def ns_argv(self, strategy):
        """Each program's mount and umount argv, on dirs of its own."""
        argv = {}
        for impl in NS_IMPLS:
            target, up, wk = self.dirs(f"ns-{impl}")
            base = "tool" if impl == "tool" else "cfloor"
            m = self.mount_argv(base, strategy, NS_LAYERS, target, up, wk)
            u = self.umount_argv(base, target)
            if impl == "check":
                m.insert(1, "--kernel-checks")
                u.insert(1, "--kernel-checks")
            argv[impl] = {"mount": m, "umount": u, "target": target, "up": up, "wk": wk}
        return argv

    def ns_probe_check(self, a):
        """Does the in-use probe tell in use from free on this kernel and
        filesystem? Its upper and work dir must probe busy while the C floor
        with checks has its overlay mounted, and free after its umount (which
        must have seen IN_UNMOUNT, exit 0). Otherwise its times mean little:
        the report says so."""
        c = a["check"]

        def probe():
            p = self.run([self.cfloor, "probe", c["up"], c["wk"]])
            if p.returncode != 0:
                return [f"exit {p.returncode}: " + (p.stderr.strip().splitlines() or ["?"])[-1]]
            return [line.split()[-1] for line in p.stdout.splitlines()]

        m = self.run(c["mount"])
        if m.returncode != 0:
            return {"ok": False, "error": f"mount exit {m.returncode}: "
                    + (m.stderr.strip().splitlines() or ["?"])[-1]}
        out = {"mounted": probe()}
        out["umount_exit"] = self.run(c["umount"]).returncode
        out["unmounted"] = probe()
        out["ok"] = (out["mounted"] == ["busy", "busy"] and out["unmounted"] == ["free", "free"]
                     and out["umount_exit"] == 0)
        return out

    def ns_seen(self, repeat):
        """What the complete scan sees now (run untimed, output kept): the
        count of namespaces, mounts and overlays it walked, and its
        in-process time."""
        p = self.run([self.a.nsscan, "--repeat", str(repeat)])
        if p.returncode != 0:
            raise RuntimeError(f"nsscan failed (exit {p.returncode}): {p.stderr.strip()}")
        scans = parse_nsscan(p.stdout)
        last = scans[-1]
        return {"namespaces": last["namespaces"], "mounts": last["mounts"],
                "overlays": last["overlays"], "via": last["via"],
                "ms": summary([x["ms"] for x in scans])}

    def ns_holder(self, n):
        return NsHolder(self.a.nsholder, n, NS_MOUNTS_EACH, os.path.join(self.work, "ns-mnt"),
                        self.stderr)

    def ns_before_point(self, n, a):
        """n namespaces made once, then the cycles: each round runs the tool,
        the C floor and the C floor with checks (mount, umount) and one
        complete scan, one after another, every process timed by benchkit."""
        warmup, runs = self.ns_before
        holder = self.ns_holder(n) if n else None
        try:
            seen = self.ns_seen(5)
            lines = []
            for r in range(warmup + runs):
                for impl in NS_IMPLS:
                    lines.append((f"{impl}:mount:{r}", a[impl]["mount"]))
                    lines.append((f"{impl}:umount:{r}", a[impl]["umount"]))
                lines.append((f"scan:run:{r}", [self.a.nsscan]))
            res = self.quiet_plan(lines, f"namespaces {n}")
            if holder:
                holder.release()
        finally:
            if holder:
                holder.kill()
        cyc = ns_cycles(res, warmup)
        scans = list(cyc.get("scan", {}).values())
        return {"n": n, "when": "before",
                "impls": {i: ns_summarize(cyc.get(i, {}), {0}) for i in NS_IMPLS},
                "scan": summary([c["run"][0] for c in scans if c["run"][1] == 0]),
                "scan_exits": tally([c["run"][1] for c in scans]),
                "seen": seen,
                "made_ms": holder.made_ms if holder else None,
                "released_ms": holder.released_ms if holder else None}

    def ns_between_point(self, n, a):
        """Each cycle: the three mounts; n namespaces made (each holds a copy
        of the three overlays); the three umounts and one complete scan;
        the namespaces released; `idmap-overlay gc`, which now finds the
        tool's record (kept `detached` by its umount) with nothing left of
        its overlay, and drops it. Any exit status is recorded, none aborts."""
        warmup, runs = self.ns_between
        cycles = {i: {} for i in NS_IMPLS + ["scan", "gc"]}
        made, released, seen, records = [], [], None, []

        def cycle(first):
            got = {}
            for label, ms, st in self.run_plan([(f"{i}:mount", a[i]["mount"]) for i in NS_IMPLS]):
                got[label] = (ms, st)
            with self.ns_holder(n) as h:
                plan = [(f"{i}:umount", a[i]["umount"]) for i in NS_IMPLS]
                plan.append(("scan:run", [self.a.nsscan]))
                for label, ms, st in self.run_plan(plan):
                    got[label] = (ms, st)
                # Untimed: what the tool's umount left of its record, and
                # (once) what the scan sees: the copies, 3 per namespace.
                got["records"] = self.record_states()
                got["seen"] = self.ns_seen(1) if first else None
                h.release()
            for label, ms, st in self.run_plan([("gc:run", [self.tool, "gc"])]):
                got[label] = (ms, st)
            return got, h.made_ms, h.released_ms

        for r in range(warmup + runs):
            got, mk, rl = self.quietly(lambda: cycle(r == 0), f"namespaces {n} between, cycle {r + 1}")
            if r == 0:
                seen = got["seen"]
            for impl in NS_IMPLS:
                self.clean_config(a[impl]["target"])
            left, recs = self.leftovers()
            if left or recs:
                raise RuntimeError(f"{n} between, cycle {r + 1}: left {left} {recs} after "
                                   f"gc (exit {got['gc:run'][1]})")
            if r < warmup:
                continue
            for impl in NS_IMPLS:
                cycles[impl][r] = {"mount": got[f"{impl}:mount"], "umount": got[f"{impl}:umount"]}
            cycles["scan"][r], cycles["gc"][r] = got["scan:run"], got["gc:run"]
            records += got["records"]
            made.append(mk)
            released.append(rl)
        return {"n": n, "when": "between",
                "impls": {i: ns_summarize(cycles[i], NS_UMOUNT_OK_BETWEEN[i]) for i in NS_IMPLS},
                "scan": summary([ms for ms, st in cycles["scan"].values() if st == 0]),
                "scan_exits": tally([st for ms, st in cycles["scan"].values()]),
                "gc": summary([ms for ms, st in cycles["gc"].values()]),
                "gc_exits": tally([st for ms, st in cycles["gc"].values()]),
                "records_after_umount": dict(collections.Counter(records)),
                "seen": seen,
                "made_ms": statistics.median(made) if made else None,
                "released_ms": statistics.median(released) if released else None}


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", required=True)
    ap.add_argument("--tool", required=True)
    ap.add_argument("--floor", required=True)
    ap.add_argument("--benchkit", required=True)
    ap.add_argument("--md", required=True)
    ap.add_argument("--svg", required=True)
    ap.add_argument("--raw", help="also write the raw results as JSON here")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--runs", type=int)
    ap.add_argument("--tool-desc", default="")
    ap.add_argument("--max-wait", type=int, default=600,
                    help="seconds to wait for an idle machine before starting (not in --quick)")
    ap.add_argument("--cfloor", required=True, help="the C floor (bench/cfloor)")
    ap.add_argument("--inproc-api", help="bench/inproc-api, for the in-process section")
    ap.add_argument("--tool-dynamic", help="the tool linked dynamically (variants table)")
    ap.add_argument("--floor-static", help="the Rust floor built static (variants table)")
    ap.add_argument("--host-ns", help="the mount namespace run.sh started in (must differ)")
    ap.add_argument("--nsscan", help="bench/cfloor/nsscan.c built: the complete-scan floor")
    ap.add_argument("--nsholder", help="bench/cfloor/nsholder.c built: the other namespaces")
    ap.add_argument("--gc-child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    b = Bench(args)
    if args.gc_child:
        b.gc_child(args.gc_child)
        return
    idle = wait_idle(0 if args.quick else args.max_wait)
    started = time.time()
    cpu0 = cpu_busy_s()
    b.setup()
    try:
        b.results["env"] = {
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "kernel": platform.release(),
            "cpu": next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                         if l.startswith("model name")), "?"),
            "cpus": os.cpu_count(),
            "tool": args.tool_desc,
            "quick": args.quick,
            "runs": b.runs,
            "warmup": b.warmup,
            "counts": b.counts,
            "work_len": len(b.work),
            "state_dir": b.state,
            "fs_layers": fstype(max((m for m in mountinfo() if m[4] == "/" or b.work.startswith(
                m[4] + "/")), key=lambda m: len(m[4]))),
        }
        b.results["env"]["loadavg_start"] = open("/proc/loadavg").read().split()[:3]
        b.startup()
        b.counts_and_events()
        b.latency()
        b.idmapped_upper()
        b.variants()
        b.inproc()
        b.scale()
        b.gc()
        b.namespaces()
        b.results["env"]["duration_s"] = time.time() - started
        b.results["env"]["loadavg_end"] = open("/proc/loadavg").read().split()[:3]
        cpu1 = cpu_busy_s()
        wall = time.time() - started
        b.results["env"]["busy_before"] = idle
        b.results["env"]["timed_other_max"] = max(b.other_shares or [0])
        b.results["env"]["timed_retries"] = b.retries
        b.results["env"]["other_cpu_share"] = max(0.0, ((cpu1[0] - cpu0[0]) - (cpu1[1] - cpu0[1]))
                                                  / wall / os.cpu_count())
    finally:
        b.stderr.close()
        subprocess.run(["umount", b.run_dir])
    if args.raw:
        with open(args.raw, "w") as f:
            json.dump(b.results, f, indent=1)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import report
    report.write(b.results, args.md, args.svg)
    log(f"done in {time.time() - started:.0f}s: {args.md}, {args.svg}")


if __name__ == "__main__":
    main()
