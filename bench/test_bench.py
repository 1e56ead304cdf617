"""Tests of the benchmark harness itself: `bench/run.sh --selftest`.

Needs python3 and a C compiler ($CC, default cc) only: no root, no mounts,
a few seconds. What it checks: the statistics, the parsing of the `cycles`
output, the report's ratios and verdicts against the goals (from synthetic
results whose answers are known), that the report and chart are written,
and that the C floor builds warning-free and keeps its command-line contract.
The namespaces axis (issue 19): its parsing and summaries, its report table
and goal, and that nsscan.c and nsholder.c build warning-free and keep theirs
(the holder's protocol runs for real with 0 namespaces, which needs no root).
"""

import copy
import os
import re
import subprocess
import tempfile
import unittest
import xml.etree.ElementTree as ET

import bench
import report

HERE = os.path.dirname(os.path.abspath(__file__))


def read(*path):
    with open(os.path.join(*path)) as f:
        return f.read()


def stats(median, spread=0.1):
    return {"n": 10, "median": median, "p25": median - spread, "min": median - 2 * spread,
            "p75": median + spread, "max": median + 2 * spread}


def latency_entry(mount, umount):
    return {"mount": stats(mount), "umount": stats(umount), "cycle": stats(mount + umount),
            "failures": 0}


def results(tool=(2.0, 1.0), floor=(1.5, 0.5), cfloor=(1.2, 0.4), api=3.0, api_floor=1.5,
            api_cfloor=1.4):
    """Results as bench.py writes them, with the given medians (ms) for every
    strategy at 50 layers and 1 layer: mount, umount per whole-process
    program; one cycle per in-process program."""
    counts = [1, 50]
    sec_counts, lat = {}, {}
    for s in report.STRATEGIES:
        for n in counts:
            for impl in ("tool", "floor"):
                e = {"ok": True, "syscalls_mount": {"total": 100 + n, "openat2": n, "mount": 1},
                     "syscalls_umount": {"total": 20, "umount2": 1},
                     "peak_idmapped": 1, "peak_overlay": 1, "peak_table_delta": 2,
                     "events_mount": [1, 1, 2], "events_umount": [1, 1, 1]}
                if impl == "floor":
                    e["phases"] = {"userns": 0.2, "tree": 0.1, "create": 0.3, "umount2": 0.1}
                sec_counts[f"{impl}-{s}-{n}"] = e
            for impl, (m, u) in (("tool", tool), ("floor", floor), ("cfloor", cfloor)):
                lat[f"{impl}-{s}-{n}"] = latency_entry(m, u)
    builds = {k: {"mount": stats(m), "umount": stats(u), "cycle": stats(m + u),
                  "start": stats(0.5), "failures": 0, "size": 1_000_000}
              for k, (m, u) in (("tool", tool), ("tool-dynamic", (tool[0] + 0.3, tool[1] + 0.3)),
                                ("floor", floor), ("floor-static", floor), ("cfloor", cfloor))}
    return {
        "env": {"date": "2026-01-01 00:00 UTC", "kernel": "6.18", "cpu": "test", "cpus": 2,
                "tool": "test tool", "quick": False, "runs": 10, "warmup": 2, "counts": counts,
                "fs_layers": "ext4", "loadavg_start": ["0.1", "0.1", "0.1"]},
        "startup": {k: stats(v) for k, v in
                    (("floor", 0.6), ("cfloor", 0.4), ("tool", 0.7), ("true", 0.4))},
        "sections": {
            "counts": sec_counts,
            "latency": lat,
            "variants": {"layers": 50, "builds": builds},
            "inproc": {"layers": 50, "rounds": 3, "cycles": 10, "warmup": 2,
                       "loadavg": ["0.1", "0.1", "0.1"],
                       "impls": {"api": stats(api), "floor": stats(api_floor),
                                 "cfloor": stats(api_cfloor)}},
        },
    }


def ns_impls(tool, cfloor=2.0, check=4.6, tool_exits=None):
    """A namespaces-axis point's programs (cycle medians in ms)."""
    out = {}
    for impl, c in (("tool", tool), ("cfloor", cfloor), ("check", check)):
        out[impl] = {"mount": stats(c / 2), "umount": stats(c / 2), "cycle": stats(c),
                     "mount_exits": {"0": 10}, "umount_exits": {"0": 10}, "failures": 0}
    if tool_exits:
        out["tool"]["umount_exits"] = tool_exits
    return out


def ns_section(at0=4.0, at200=20.0, at1000=100.0):
    """A namespaces section as bench.py writes it, tool cycles as given."""
    def point(n, when, tool, **kw):
        return {"n": n, "when": when, "impls": ns_impls(tool, **kw), "scan": stats(1.0 + n / 40),
                "scan_exits": {"0": 10},
                "seen": {"namespaces": n + 4, "mounts": 50 * n + 60, "overlays": 2, "via": "ioctl",
                         "ms": stats(0.1 + n / 40)},
                "made_ms": n * 0.4 if n else None, "released_ms": n * 0.2 if n else None}
    between = point(200, "between", at0 * 1.5, tool_exits={"0": 8, "32": 2})
    between["impls"]["check"]["umount_exits"] = {"64": 10}
    between.update({"gc": stats(3.0), "gc_exits": {"0": 10},
                    "records_after_umount": {"detached": 10}})
    return {"layers": 50, "strategy": "detached", "mounts_each": 30, "before": [2, 25],
            "between": [2, 15], "loadavg": ["0.1", "0.1", "0.1"],
            "probe_check": {"mounted": ["busy", "busy"], "unmounted": ["free", "free"],
                            "umount_exit": 0, "ok": True},
            "points": [point(0, "before", at0), point(200, "before", at200),
                       point(1000, "before", at1000), between]}


def target_rows(r):
    """The Targets table's rows, as (target, measured, verdict)."""
    rows = []
    for line in report.Report(r).targets().splitlines()[2:]:
        cells = [c.strip() for c in line.strip("|").split(" | ")]
        rows.append(tuple(cells))
    return rows


def row(r, starts):
    found = [x for x in target_rows(r) if x[0].startswith(starts)]
    assert len(found) == 1, (starts, target_rows(r))
    return found[0]


class Statistics(unittest.TestCase):
    def test_quantiles_interpolate(self):
        self.assertEqual(bench.pct([4, 1, 3, 2], 0.5), 2.5)
        self.assertEqual(bench.pct([1, 2, 3, 4, 5], 0.25), 2)
        self.assertEqual(bench.pct([10], 0.75), 10)

    def test_summary(self):
        s = bench.summary([5, 1, 4, 2, 3])
        self.assertEqual((s["n"], s["median"], s["min"], s["max"]), (5, 3, 1, 5))
        self.assertEqual((s["p25"], s["p75"]), (2, 4))

    def test_cycles_output_in_ms(self):
        self.assertEqual(bench.parse_cycles("1500000\n2000000\n"), [1.5, 2.0])
        self.assertEqual(bench.parse_cycles(""), [])


class Targets(unittest.TestCase):
    def test_whole_process_against_the_c_floor(self):
        # tool 3.0 ms, C floor 1.6 ms: 1.875x, over the 1.2x goal.
        target, measured, verdict = row(results(), "whole process: detached")
        self.assertIn("3.00 ms vs 1.60 ms: **1.88x**", measured)
        self.assertTrue(verdict.startswith("**missed**"), verdict)
        # tool 1.9, C floor 1.6: 1.19x, met.
        _, measured, verdict = row(results(tool=(1.2, 0.7)), "whole process: detached")
        self.assertIn("**1.19x**", measured)
        self.assertEqual(verdict, "met")

    def test_whole_process_against_the_rust_floor(self):
        _, measured, verdict = row(results(), "whole process, the same against the Rust floor")
        self.assertIn("3.00 ms vs 2.00 ms: **1.50x**", measured)
        self.assertEqual(verdict, "–")

    def test_in_process_goal(self):
        _, measured, verdict = row(results(api=3.0, api_floor=1.5), "in-process: library API")
        self.assertIn("**2.00x**", measured)
        self.assertTrue(verdict.startswith("**missed**"), verdict)
        _, measured, verdict = row(results(api=1.8, api_floor=1.5), "in-process: library API")
        self.assertIn("**1.20x**", measured)
        self.assertEqual(verdict, "met")

    def test_against_containerd(self):
        # containerd: 1.62-1.66 ms against 0.82 ms, 1.98-2.02x.
        for api, where in ((3.0, "the same as"), (3.5, "worse than"), (1.6, "better than")):
            _, measured, verdict = row(results(api=api, api_floor=1.5), "in-process, against containerd")
            self.assertIn("containerd at 1.98–2.02x", measured)
            self.assertEqual(verdict, f"{where} containerd", api)

    def test_missing_sections_are_said_not_invented(self):
        r = results()
        del r["sections"]["inproc"]
        for key in [k for k in r["sections"]["latency"] if k.startswith("cfloor-")]:
            del r["sections"]["latency"][key]
        names = [x[0] for x in target_rows(r)]
        self.assertFalse(any(n.startswith("whole process: detached") for n in names), names)
        self.assertFalse(any(n.startswith("in-process") for n in names), names)
        self.assertIn("Not measured", report.Report(r).table_inproc())


class Tables(unittest.TestCase):
    def test_latency_has_both_floors(self):
        table = report.Report(results()).table_latency().splitlines()
        self.assertIn("tool / C floor", table[0])
        detached_50 = [l for l in table if l.startswith("| detached | 50 |")][0]
        self.assertTrue(detached_50.endswith("| **1.50x** | **1.88x** |"), detached_50)

    def test_inproc_table(self):
        table = report.Report(results()).table_inproc()
        self.assertIn("| 2.00x | 2.14x |", table)  # api 3.0 against 1.5 and 1.4
        self.assertIn("1.62–1.66", table)

    def test_variants_against_both_floors(self):
        table = report.Report(results()).table_variants().splitlines()
        tool = [l for l in table if l.startswith("| tool as installed")][0]
        self.assertTrue(tool.endswith("| 1.50x | 1.88x |"), tool)

    def test_write_makes_markdown_and_a_parsable_chart(self):
        with tempfile.TemporaryDirectory() as d:
            md, svg = os.path.join(d, "B.md"), os.path.join(d, "b.svg")
            report.write(copy.deepcopy(results()), md, svg)
            text = read(md)
            self.assertIn("## In-process: the library API", text)
            self.assertIn("![mount+umount time, events and temporary mounts per strategy](b.svg)", text)
            ET.parse(svg)


class NamespacesAxis(unittest.TestCase):
    def test_points(self):
        self.assertEqual(bench.ns_points(False),
                         [(0, "before"), (200, "before"), (1000, "before"), (200, "between")])
        quick = bench.ns_points(True)
        self.assertIn((0, "before"), quick)
        self.assertIn((200, "between"), quick)
        self.assertNotIn((1000, "before"), quick)

    def test_parse_nsscan(self):
        got = bench.parse_nsscan("namespaces=1004 mounts=50063 overlays=2 via=ioctl ns=27067749\n"
                                 "namespaces=4 mounts=63 overlays=0 via=proc ns=794092\n")
        self.assertEqual(got[0], {"namespaces": 1004, "mounts": 50063, "overlays": 2,
                                  "via": "ioctl", "ms": 27.067749})
        self.assertEqual(got[1]["via"], "proc")

    def test_parse_holder(self):
        self.assertEqual(bench.parse_holder("ready 200 38929700\n", "ready"), (200, 38.9297))
        self.assertEqual(bench.parse_holder("released 1500000\n", "released"), 1.5)
        # A holder that died says nothing (EOF) or something else.
        self.assertIsNone(bench.parse_holder("", "ready"))
        self.assertIsNone(bench.parse_holder("released 5\n", "ready"))

    def test_tally_keeps_every_status(self):
        self.assertEqual(bench.tally([0, 32, 0, -9]), {"-9": 1, "0": 2, "32": 1})
        self.assertEqual(bench.tally([]), {})

    def test_cycles_drop_warmup_and_split_by_program(self):
        res = [("tool:mount:0", 9.0, 0), ("tool:umount:0", 9.0, 0),
               ("tool:mount:1", 2.0, 0), ("tool:umount:1", 1.0, 32), ("scan:run:1", 0.5, 0)]
        got = bench.ns_cycles(res, warmup=1)
        self.assertEqual(got, {"tool": {1: {"mount": (2.0, 0), "umount": (1.0, 32)}},
                               "scan": {1: {"run": (0.5, 0)}}})

    def test_summarize_counts_a_tolerated_umount_status(self):
        cycles = {1: {"mount": (2.0, 0), "umount": (1.0, 0)},
                  2: {"mount": (2.0, 0), "umount": (3.0, 32)},
                  3: {"mount": (5.0, 32), "umount": (1.0, 2)}}
        strict = bench.ns_summarize(cycles, {0})
        self.assertEqual((strict["cycle"]["n"], strict["failures"]), (1, 2))
        between = bench.ns_summarize(cycles, {0, 32})
        self.assertEqual((between["cycle"]["n"], between["failures"]), (2, 1))
        self.assertEqual(between["cycle"]["median"], 4.0)  # 3.0 and 5.0
        self.assertEqual(between["umount_exits"], {"0": 1, "2": 1, "32": 1})
        self.assertEqual(between["mount_exits"], {"0": 2, "32": 1})

    def test_what_may_end_an_umount_between(self):
        # The tool keeps its record `detached` with copies alive (0 or 32);
        # the C floor with checks rightly finds no IN_UNMOUNT there (64).
        self.assertEqual(bench.NS_UMOUNT_OK_BETWEEN["tool"], {0, 32})
        self.assertEqual(bench.NS_UMOUNT_OK_BETWEEN["check"], {0, 64})


class NamespacesReport(unittest.TestCase):
    def rows(self, r):
        table = report.Report(r).table_namespaces().splitlines()
        self.assertEqual(table[0], "| other mount namespaces | tool mount+umount | C floor | C floor "
                         "with kernel checks | complete-scan floor | tool / tool at 0 |")
        return table[2:]

    def test_table_and_ratio_to_the_tool_at_0(self):
        r = results()
        r["sections"]["namespaces"] = ns_section(at0=4.0, at200=20.0, at1000=100.0)
        rows = self.rows(r)
        self.assertEqual(len(rows), 4)
        self.assertTrue(rows[0].startswith("| 0 | 4.00 (3.90–4.10) | 2.00 (1.90–2.10) | "
                                           "4.60 (4.50–4.70) | 1.00 (0.90–1.10) | **1.00x** |"),
                        rows[0])
        self.assertTrue(rows[2].startswith("| 1,000 | 100.00"), rows[2])
        self.assertTrue(rows[2].endswith("| **25.00x** |"), rows[2])
        self.assertTrue(rows[3].startswith("| 200, made between mount and umount"), rows[3])
        self.assertTrue(rows[3].endswith("| **1.50x** |"), rows[3])

    def test_goal_at_1000(self):
        r = results()
        r["sections"]["namespaces"] = ns_section(at0=4.0, at1000=100.0)
        _, measured, verdict = row(r, "1,000 other mount namespaces")
        self.assertIn("100.00 ms vs 4.00 ms: **25.00x**", measured)
        self.assertTrue(verdict.startswith("**missed**"), verdict)
        r["sections"]["namespaces"] = ns_section(at0=4.0, at1000=4.6)
        _, measured, verdict = row(r, "1,000 other mount namespaces")
        self.assertIn("**1.15x**", measured)
        self.assertEqual(verdict, "met")

    def test_issue_19_goals_at_0_against_the_floors(self):
        # At 0 namespaces: tool 4.0, C floor 2.0 (2.00x, over 1.5x), with
        # the C floor with checks 4.6 beside it.
        r = results(api=3.0, api_floor=1.5)
        r["sections"]["namespaces"] = ns_section(at0=4.0)
        r["sections"]["inproc"]["impls"]["check"] = stats(2.5)
        _, measured, verdict = row(r, "0 other namespaces: the installed binary")
        self.assertIn("4.00 ms vs 2.00 ms: **2.00x**; the C floor with kernel checks 4.60 ms: 0.87x",
                      measured)
        self.assertTrue(verdict.startswith("**missed**: the kernel checks alone cost the C floor "
                                           "2.30x"), verdict)
        _, measured, verdict = row(r, "0 other namespaces: the library API")
        self.assertIn("3.00 ms vs 1.50 ms: **2.00x**; the C floor with kernel checks 2.50 ms: 1.20x",
                      measured)
        self.assertTrue(verdict.startswith("**missed**"), verdict)
        r = results(api=2.6, api_floor=1.5)
        r["sections"]["namespaces"] = ns_section(at0=2.9)
        self.assertEqual(row(r, "0 other namespaces: the installed binary")[2], "met")
        self.assertEqual(row(r, "0 other namespaces: the library API")[2], "met")
        self.assertNotIn("kernel checks", report.Report(r).table_inproc())
        r["sections"]["inproc"]["impls"]["check"] = stats(2.5)
        self.assertIn("| C floor with kernel checks (`floor.c --kernel-checks cycles`) | 2.50",
                      report.Report(r).table_inproc())

    def test_idmapped_upper_goal_and_section(self):
        r = results()
        def variant(c):
            return {"mount": stats(c / 2), "umount": stats(c / 2), "cycle": stats(c),
                    "failures": 0, "exits": {"0": 10}}
        r["sections"]["idmapped_upper"] = {"layers": 50, "strategies": {
            "detached": {"plain": variant(7.0), "idmapped": variant(7.35)},
            "common-dir": {"plain": variant(8.0), "idmapped": variant(9.0)}}}
        _, measured, verdict = row(r, "`--idmapped-upper`, detached")
        self.assertIn("7.35 ms vs 7.00 ms: **+5.0%**", measured)
        self.assertEqual(verdict, "met")
        _, measured, verdict = row(r, "`--idmapped-upper`, common-dir")
        self.assertIn("**+12.5%**", measured)
        self.assertTrue(verdict.startswith("**missed**"), verdict)
        section = report.Report(r).upper_section()
        self.assertIn("| detached |", section)
        self.assertIn("**+5.0%** (0.35 ms)", section)
        del r["sections"]["idmapped_upper"]
        self.assertEqual(report.Report(r).upper_section(), "Not measured in this run.")
        self.assertFalse(any(x[0].startswith("`--idmapped") for x in target_rows(r)))

    def test_exit_statuses_are_shown(self):
        r = results()
        r["sections"]["namespaces"] = ns_section()
        text = report.Report(r).namespaces_section()
        self.assertIn("0 ×8, 32 ×2", text)       # the tool's umounts, between
        self.assertIn("exited 64 ×10 on umount", text)
        self.assertIn("its record after the umount: `detached` ×10", text)
        self.assertEqual(report.fmt_states({}), "none")
        self.assertIn("1,004 / 50,060 / 2", text)  # what the scan walked at 1,000
        self.assertIn("probed busy while its overlay was mounted", text)
        self.assertEqual(report.fmt_exits({"32": 1, "2": 3, "10": 1}), "2 ×3, 10 ×1, 32 ×1")

    def test_a_failed_probe_check_is_said(self):
        r = results()
        sec = ns_section()
        sec["probe_check"] = {"mounted": ["free", "free"], "unmounted": ["free", "free"],
                              "umount_exit": 0, "ok": False}
        r["sections"]["namespaces"] = sec
        self.assertIn("The probe's own check failed", report.Report(r).namespaces_section())

    def test_missing_or_failed_section_is_said_not_invented(self):
        r = results()
        names = [x[0] for x in target_rows(r)]
        self.assertFalse(any("mount namespaces" in n for n in names), names)
        self.assertIn("Not measured", report.Report(r).namespaces_section())
        r["sections"]["namespaces"] = dict(ns_section(), points=[], error="nsholder 1000: boom")
        self.assertIn("**Not measured: nsholder 1000: boom**", report.Report(r).namespaces_section())
        # Stopped after some points: what ran is shown, and why it stopped.
        sec = ns_section()
        sec["points"] = sec["points"][:2]
        sec["error"] = "after 200 before: left"
        r["sections"]["namespaces"] = sec
        text = report.Report(r).namespaces_section()
        self.assertIn("**Stopped early**: after 200 before: left", text)
        self.assertNotIn("Goal (issue 19)", text)

    def test_write_has_the_section(self):
        r = results()
        r["sections"]["namespaces"] = ns_section()
        with tempfile.TemporaryDirectory() as d:
            md, svg = os.path.join(d, "B.md"), os.path.join(d, "b.svg")
            report.write(r, md, svg)
            self.assertIn("## Beside other mount namespaces (issue 19)", read(md))


def build_c(name, out_dir):
    """Builds bench/cfloor/NAME.c as bench/run.sh does, but warnings are errors."""
    out = os.path.join(out_dir, name)
    cc = os.environ.get("CC", "cc")
    p = subprocess.run([cc, "-O2", "-Wall", "-Wextra", "-Werror", "-o", out,
                        os.path.join(HERE, "cfloor", f"{name}.c")],
                       capture_output=True, text=True)
    if p.returncode != 0:
        raise AssertionError(f"{name}.c does not build warning-free:\n{p.stderr}")
    return out


class CFloor(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.TemporaryDirectory()
        cls.bin = build_c("floor", cls.dir.name)

    @classmethod
    def tearDownClass(cls):
        cls.dir.cleanup()

    def run_floor(self, *args):
        return subprocess.run([self.bin, *args], capture_output=True, text=True)

    def test_noop(self):
        p = self.run_floor("noop")
        self.assertEqual((p.returncode, p.stdout, p.stderr), (0, "", ""))

    def test_bad_arguments_exit_1_with_usage(self):
        for args in ([], ["mount"], ["mount", "sideways", "t", "tmp", "c", "u", "w", "0 1 1", "a"],
                     ["cycles", "x", "1", "t", "c", "u", "w", "0 1 1", "a"], ["umount"]):
            p = self.run_floor(*args)
            self.assertEqual(p.returncode, 1, args)
            self.assertIn("usage:" if args[:1] != ["cycles"] else "not a count", p.stderr, args)

    def test_kernel_failure_exits_32(self):
        # Not mounted (as root) or not allowed (as anyone else): either way a
        # failed kernel call, mount(8)'s 32.
        p = self.run_floor("umount", os.path.join(self.dir.name, "not-a-mountpoint"))
        self.assertEqual(p.returncode, 32)
        self.assertTrue(p.stderr.startswith("floor: umount2: "), p.stderr)

    def test_same_usage_as_the_rust_floor(self):
        # The two floors take the same arguments (bench.py swaps one for the
        # other): their usage texts must say the same, and the C floor's adds
        # only its own line (--kernel-checks, probe).
        rust = read(HERE, "floor", "src", "main.rs")
        literal = re.search(r'eprintln!\(\s*"(usage: .*?)"\s*\)', rust, re.S).group(1)
        common = literal.replace("\\n", "\n") + "\n"
        usage = self.run_floor().stderr
        self.assertTrue(usage.startswith(common), usage)
        self.assertEqual(usage[len(common):],
                         "C floor only: floor --kernel-checks mount|umount|cycles ... | "
                         "floor probe DIR...\n")

    def test_kernel_checks_bad_arguments(self):
        for args in (["--kernel-checks"], ["--kernel-checks", "noop"],
                     ["--kernel-checks", "probe", "d"], ["probe"]):
            p = self.run_floor(*args)
            self.assertEqual(p.returncode, 1, args)
            self.assertIn("usage:", p.stderr, args)

    def test_kernel_checks_open_before_anything(self):
        # The probe and the checked umount open their directory first: a
        # missing one is a failed call (32) whoever runs it, nothing mounted.
        missing = os.path.join(self.dir.name, "missing")
        for args in (["probe", missing], ["--kernel-checks", "umount", missing]):
            p = self.run_floor(*args)
            self.assertEqual(p.returncode, 32, args)
            self.assertTrue(p.stderr.startswith(f"floor: {missing}: "), p.stderr)


class NsPrograms(unittest.TestCase):
    """bench/cfloor/nsscan.c and nsholder.c: warning-free builds, their
    command lines, and the holder's protocol with 0 namespaces (no root)."""

    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.TemporaryDirectory()
        cls.scan = build_c("nsscan", cls.dir.name)
        cls.holder = build_c("nsholder", cls.dir.name)

    @classmethod
    def tearDownClass(cls):
        cls.dir.cleanup()

    def test_nsscan_bad_arguments(self):
        for args in (["--repeat"], ["--repeat", "0"], ["--repeat", "x"], ["--bogus"]):
            p = subprocess.run([self.scan, *args], capture_output=True, text=True)
            self.assertEqual(p.returncode, 1, args)
            self.assertIn("usage: nsscan", p.stderr, args)

    def test_nsscan_output_parses_or_it_says_why(self):
        # Unprivileged or on an older kernel a call may fail (exit 2, said);
        # whatever it prints on success, bench.py reads.
        p = subprocess.run([self.scan, "--repeat", "2"], capture_output=True, text=True)
        if p.returncode != 0:
            self.assertEqual(p.returncode, 2)
            self.assertTrue(p.stderr.startswith("nsscan: "), p.stderr)
            return
        scans = bench.parse_nsscan(p.stdout)
        self.assertEqual(len(scans), 2)
        self.assertGreaterEqual(scans[0]["namespaces"], 1)
        self.assertIn(scans[0]["via"], ("ioctl", "proc"))

    def test_nsholder_bad_arguments(self):
        for args in ([], ["1", "1"], ["x", "1", "d"], ["1", "-1", "d"], ["100001", "1", "d"]):
            p = subprocess.run([self.holder, *args], capture_output=True, text=True)
            self.assertEqual(p.returncode, 1, args)

    def test_nsholder_protocol_with_no_namespace(self):
        mnt = os.path.join(self.dir.name, "mnt")
        with open(os.devnull, "w") as err, bench.NsHolder(self.holder, 0, 2, mnt, err) as h:
            self.assertGreaterEqual(h.made_ms, 0)
            self.assertGreaterEqual(h.release(), 0)
        self.assertEqual(h.p.returncode, 0)
        self.assertEqual(sorted(os.listdir(mnt)), ["0", "1"])  # mountpoints made, none used

    def test_nsholder_that_fails_is_said_and_reaped(self):
        bad = os.path.join(self.dir.name, "no", "such", "dir")
        with open(os.devnull, "w") as err:
            with self.assertRaisesRegex(RuntimeError, "did not make its namespaces"):
                bench.NsHolder(self.holder, 1, 1, bad, err)


class RunScript(unittest.TestCase):
    def test_installs_nothing(self):
        text = read(HERE, "run.sh")
        self.assertNotIn("apt-get", text)


if __name__ == "__main__":
    unittest.main()
