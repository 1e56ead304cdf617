"""Tests of the benchmark harness itself: `bench/run.sh --selftest`.

Needs python3 and a C compiler ($CC, default cc) only: no root, no mounts,
a few seconds. What it checks: the statistics, the parsing of the `cycles`
output, the report's ratios and verdicts against the goals (from synthetic
results whose answers are known), that the report and chart are written,
and that the C floor builds warning-free and keeps its command-line contract.
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


class CFloor(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.TemporaryDirectory()
        cls.bin = os.path.join(cls.dir.name, "floor")
        cc = os.environ.get("CC", "cc")
        p = subprocess.run([cc, "-O2", "-Wall", "-Wextra", "-Werror", "-o", cls.bin,
                            os.path.join(HERE, "cfloor", "floor.c")],
                           capture_output=True, text=True)
        if p.returncode != 0:
            raise AssertionError(f"floor.c does not build warning-free:\n{p.stderr}")

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
        # other): their usage texts must say the same.
        rust = read(HERE, "floor", "src", "main.rs")
        literal = re.search(r'eprintln!\(\s*"(usage: .*?)"\s*\)', rust, re.S).group(1)
        self.assertEqual(self.run_floor().stderr, literal.replace("\\n", "\n") + "\n")


class RunScript(unittest.TestCase):
    def test_installs_nothing(self):
        text = read(HERE, "run.sh")
        self.assertNotIn("apt-get", text)


if __name__ == "__main__":
    unittest.main()
