"""Shared timing helpers for the benchmark scripts: run a command many times, keep wall time and peak RSS."""
import os
import statistics
import subprocess
import time


def run_once(argv, cwd=None):
    """Runs argv once; returns (seconds, peak RSS in KiB, exit status). Output is discarded."""
    start = time.perf_counter()
    p = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(p.pid, 0)
    elapsed = time.perf_counter() - start
    p.returncode = os.waitstatus_to_exitcode(status)
    return elapsed, usage.ru_maxrss, p.returncode


def median_ms(argv, runs, cwd=None):
    """Median wall time in ms over `runs` runs (after one warm-up), and the largest peak RSS seen."""
    run_once(argv, cwd)
    times, peak = [], 0
    for _ in range(runs):
        t, rss, _ = run_once(argv, cwd)
        times.append(t)
        peak = max(peak, rss)
    return statistics.median(times) * 1000, peak


def build_release():
    """Builds the shipped binary and returns its path."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([os.path.join(root, "scripts", "build-release")], check=True, capture_output=True, text=True)
    return out.stdout.strip().splitlines()[-1]
