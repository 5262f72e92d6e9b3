"""Shared timing helpers for the benchmark scripts: run a command many times, keep wall time and peak RSS."""
import os
import statistics
import subprocess
import tempfile
import time


def peak_rss(argv, cwd=None):
    """The peak RSS in KiB of one run of argv, measured by /usr/bin/time. Not from Python's own wait4: a child that
    Python spawns starts as a copy of (or shares) the interpreter's memory until exec, and the kernel counts that
    high-water mark, so every figure would read at least Python's ~15 MiB. None when /usr/bin/time is missing
    (Debian package `time`)."""
    if not os.access("/usr/bin/time", os.X_OK):
        return None
    with tempfile.NamedTemporaryFile("r") as out:
        subprocess.run(["/usr/bin/time", "-f", "%M", "-o", out.name] + argv, cwd=cwd,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        text = out.read().strip().splitlines()
    return int(text[-1]) if text and text[-1].isdigit() else None


def run_once(argv, cwd=None):
    """Runs argv once; returns (seconds, peak RSS in KiB or None, exit status). Output is discarded. The time is of
    the command alone; the peak comes from a second run under /usr/bin/time."""
    start = time.perf_counter()
    p = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    status = p.wait()
    elapsed = time.perf_counter() - start
    return elapsed, peak_rss(argv, cwd), status


def median_ms(argv, runs, cwd=None):
    """Median wall time in ms over `runs` runs (after one warm-up), and the peak RSS of one more run."""
    spawn_ms(argv, cwd)
    times = [spawn_ms(argv, cwd)[0] for _ in range(runs)]
    return statistics.median(times), peak_rss(argv, cwd)


def spawn_ms(argv, cwd=None, env=None):
    """One run of argv with output discarded: (wall ms, CPU ms). Spawned with posix_spawn and reaped with wait4, so the
    wall time carries little of Python's own cost and the CPU time (user + system, from the kernel's accounting of
    the child alone) stays steady on a busy machine."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    here = os.getcwd()
    try:
        # posix_spawn has no working-directory action in Python: change ours around the spawn (a shell would be timed).
        if cwd is not None:
            os.chdir(cwd)
        start = time.perf_counter()
        pid = os.posix_spawnp(argv[0], argv, os.environ if env is None else env,
                              file_actions=[(os.POSIX_SPAWN_DUP2, devnull, 1), (os.POSIX_SPAWN_DUP2, devnull, 2)])
        _, _, usage = os.wait4(pid, 0)
        elapsed = time.perf_counter() - start
    finally:
        os.chdir(here)
        os.close(devnull)
    return elapsed * 1000, (usage.ru_utime + usage.ru_stime) * 1000


def interleaved(argvs, runs, cwd=None):
    """Runs each argv `runs` times, taking turns (a, b, a, b, …) so both see the same machine load; one warm-up each.
    Returns, per argv, (median wall ms, median CPU ms)."""
    for argv in argvs:
        spawn_ms(argv, cwd)
    samples = [[] for _ in argvs]
    for _ in range(runs):
        for i, argv in enumerate(argvs):
            samples[i].append(spawn_ms(argv, cwd))
    return [(statistics.median(w for w, _ in s), statistics.median(c for _, c in s)) for s in samples]


def build_release():
    """Builds the shipped binary and returns its path; `IMGTOOL=PATH` (or `IMGTOOL_BIN`) measures that binary
    instead, with no build (a release build takes minutes on a busy machine)."""
    for key in ("IMGTOOL", "IMGTOOL_BIN"):
        if os.environ.get(key):
            return os.environ[key]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([os.path.join(root, "scripts", "build-release")], check=True, capture_output=True, text=True)
    return out.stdout.strip().splitlines()[-1]


def mib(kib):
    """A peak RSS for printing: MiB, or why there is none."""
    return f"{kib / 1024:.1f} MiB" if kib is not None else "n/a (install the time package)"
