#!/usr/bin/env python3
"""Builds the qcow2 corpus of CheckDifferentialTests: real images made by qemu-img and qemu-io, some then damaged by a
few bytes, one case per class of damage QEMU's iotests 060, 061, 108 and 138 make (refcount too low, leaked cluster,
L2 entry past EOF, overlapping metadata, OFLAG_COPIED wrong, compressed cluster past EOF, bad snapshot L1 table,
dirty bit with lazy refcounts, corrupt bit, bad bitmaps), plus clean images of every layout.

Usage: check-corpus.py OUTDIR. Writes OUTDIR/NAME.qcow2 for every case (and the data files some need); fails (exit 1)
when a tool fails, so a missing qemu-img or qemu-io fails the test that runs this."""
import os
import shutil
import struct
import subprocess
import sys

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
MiB = 1 << 20


def run(*args):
    r = subprocess.run(args, cwd=out, capture_output=True, text=True)
    # LUKS key setup times PBKDF2 on CPU time, which a loaded machine can fail to measure: a property of the
    # machine, not of the image, so try again.
    tries = 1
    while r.returncode != 0 and "Unable to get accurate CPU usage" in r.stderr and tries < 5:
        r = subprocess.run(args, cwd=out, capture_output=True, text=True)
        tries += 1
    if r.returncode != 0:
        sys.exit(f"{' '.join(args)} failed ({r.returncode}): {r.stderr}")
    return r.stdout


def create(name, size="64M", opts=""):
    path = name + ".qcow2"
    args = ["qemu-img", "create", "-q", "-f", "qcow2"]
    if opts:
        args += ["-o", opts]
    run(*args, path, size)
    return path


def io(path, *commands, fmt="qcow2", allow_fail=False):
    args = ["qemu-io", "-f", fmt]
    for c in commands:
        args += ["-c", c]
    r = subprocess.run(args + [path], cwd=out, capture_output=True, text=True)
    if r.returncode != 0 and not allow_fail:
        sys.exit(f"qemu-io {commands} {path} failed: {r.stderr}")


def written(name, opts="", size="8G", writes=("write -P 1 0 256k", "write -P 2 1M 64k", "write -P 3 20M 128k")):
    path = create(name, size, opts)
    io(path, *writes)
    return path


class Image:
    """A qcow2 file opened for small edits, with its header's geometry."""

    def __init__(self, name):
        self.path = os.path.join(out, name)
        self.f = open(self.path, "r+b")
        self.cb = self.u32(20)
        self.cs = 1 << self.cb
        self.version = self.u32(4)
        self.order = self.u32(96) if self.version >= 3 else 4
        self.l1 = self.u64(40)
        self.l1_size = self.u32(36)
        self.rt = self.u64(48)
        self.incompat = self.u64(72) if self.version >= 3 else 0
        self.entry = 16 if self.incompat & 16 else 8

    def close(self):
        self.f.close()

    def u64(self, o):
        self.f.seek(o)
        return struct.unpack(">Q", self.f.read(8))[0]

    def u32(self, o):
        self.f.seek(o)
        return struct.unpack(">I", self.f.read(4))[0]

    def w64(self, o, v):
        self.f.seek(o)
        self.f.write(struct.pack(">Q", v & (2**64 - 1)))

    def w32(self, o, v):
        self.f.seek(o)
        self.f.write(struct.pack(">I", v))

    def size(self):
        return os.path.getsize(self.path)

    def l2(self, i=0):
        return self.u64(self.l1 + 8 * i) & 0x00FFFFFFFFFFFE00

    def l2e(self, j, i=0):
        """The file offset of entry j of the L2 table of L1 entry i."""
        return self.l2(i) + self.entry * j

    def refblock(self, i=0):
        return self.u64(self.rt + 8 * i) & ~0x1FF

    def set_refcount(self, cluster, value):
        bits = 1 << self.order
        per = self.cs * 8 // bits
        block = self.refblock(cluster // per)
        k = cluster % per
        if bits >= 8:
            n = bits // 8
            self.f.seek(block + k * n)
            self.f.write(value.to_bytes(n, "big"))
        else:
            at = block + k * bits // 8
            self.f.seek(at)
            b = self.f.read(1)[0]
            shift = (k % (8 // bits)) * bits
            mask = ((1 << bits) - 1) << shift
            b = (b & ~mask) | (value << shift)
            self.f.seek(at)
            self.f.write(bytes([b]))


def edit(name, fn, base=None, **kw):
    """Copies `base` (or makes a written image) to NAME.qcow2 and applies fn(Image)."""
    path = name + ".qcow2"
    if base:
        shutil.copy(os.path.join(out, base), os.path.join(out, path))
    else:
        written(name, **kw)
    img = Image(path)
    fn(img)
    img.close()


# ---- clean images of every layout ----
create("empty")
written("clean")
written("v2", opts="compat=0.10")
written("c512", opts="cluster_size=512", size="8M", writes=("write -P 1 0 64k", "write -P 2 3M 4k"))
written("c2m", opts="cluster_size=2M", size="64M", writes=("write -P 1 0 64k", "write -P 2 40M 4k"))
written("refbits1", opts="refcount_bits=1")
written("refbits2", opts="refcount_bits=2")
written("refbits8", opts="refcount_bits=8")
written("refbits32", opts="refcount_bits=32")
written("refbits64", opts="refcount_bits=64")
written("extl2", opts="extended_l2=on", writes=("write -P 1 0 4k", "write -P 2 100k 8k", "write -z 1M 2k", "write -P 3 5M 64k"))
written("zeros", writes=("write -P 1 0 64k", "write -z 64k 64k", "write -z -u 1M 128k", "write -P 2 2M 64k"))
written("prealloc", opts="preallocation=metadata", size="16M", writes=("write -P 1 0 64k",))
written("lazy", opts="lazy_refcounts=on")
path = create("compressed")
io(path, "write -c -P 7 0 64k", "write -c -P 8 64k 64k", "write -c -P 9 1M 64k", "write -P 1 4M 64k")
run("qemu-img", "convert", "-c", "-O", "qcow2", "clean.qcow2", "converted-c.qcow2")
path = written("snapshots")
run("qemu-img", "snapshot", "-c", "snap1", path)
io(path, "write -P 4 0 64k", "write -P 5 30M 64k")
run("qemu-img", "snapshot", "-c", "snap2", path)
io(path, "write -P 6 64k 64k")
path = written("snapdeleted")
run("qemu-img", "snapshot", "-c", "a", path)
io(path, "write -P 4 0 64k")
run("qemu-img", "snapshot", "-d", "a", path)
path = written("bitmaps")
run("qemu-img", "bitmap", "--add", path, "b0")
run("qemu-img", "bitmap", "--add", "-g", "512k", path, "b1")
io(path, "write -P 9 8M 1M", "write -P 9 40M 64k")
run("qemu-img", "create", "-q", "-f", "raw", "datafile.raw", "64M")
path = create("external", opts="data_file=datafile.raw")
io(path, "write -P 1 0 64k", "write -P 2 10M 64k")
run("qemu-img", "create", "-q", "-f", "raw", "datafile-raw.raw", "64M")
path = create("external-raw", opts="data_file=datafile-raw.raw,data_file_raw=on")
io(path, "write -P 1 0 64k")
run("qemu-img", "create", "-q", "-f", "qcow2", "-b", "clean.qcow2", "-F", "qcow2", "overlay.qcow2")
io("overlay.qcow2", "write -P 7 128k 64k")
# (LUKS: the committed Tests/Fixtures/luks/luks.qcow2, checked by the Swift test with its key: no test makes one.)

# ---- damage, one class per case ----
# Refcount too low (060, 138): a data cluster's refcount 0, another's 1 where a snapshot shares it.
edit("refcount-zero", lambda i: i.set_refcount((i.u64(i.l2e(0)) & 0x00FFFFFFFFFFFE00) >> i.cb, 0))
edit("refcount-low-snap", lambda i: i.set_refcount((i.u64(i.l2e(0)) & 0x00FFFFFFFFFFFE00) >> i.cb, 1), base="snapshots.qcow2")
# Refcount of the L1 table's cluster, the refcount table's and the header's 0.
edit("refcount-meta-zero", lambda i: (i.set_refcount(i.l1 >> i.cb, 0), i.set_refcount(i.rt >> i.cb, 0), i.set_refcount(0, 0)))


def leak(i):
    n = i.size() // i.cs
    i.f.truncate((n + 3) * i.cs)
    i.set_refcount(n, 1)
    i.set_refcount(n + 2, 3)


edit("leaked", leak)
# A leaked cluster plus a data cluster's refcount too high (a leaked reference, 138).
edit("leaked-ref", lambda i: i.set_refcount((i.u64(i.l2e(0)) & 0x00FFFFFFFFFFFE00) >> i.cb, 2))


# L2 entry past EOF (060): with and without the copied flag, far and just past.
def l2_past_eof(i):
    end = (i.size() + i.cs - 1) // i.cs * i.cs
    i.w64(i.l2e(100), (1 << 63) | (end + 16 * i.cs))
    i.w64(i.l2e(101), end)
    i.w64(i.l2e(102), (1 << 63) | (end - i.cs))


edit("l2-past-eof", l2_past_eof)
# An L1 entry whose L2 table is past EOF.
edit("l1-past-eof", lambda i: i.w64(i.l1 + 8 * 5, (1 << 63) | (i.size() // i.cs + 100) * i.cs))
# Overlapping metadata (060): an L2 table on the refcount table; an L2 table on the L1 table; a refcount block on the L1.
edit("l2-on-reftable", lambda i: i.w64(i.l1 + 8 * 3, (1 << 63) | i.rt))
edit("l2-on-l1", lambda i: i.w64(i.l1 + 8 * 3, i.l1))
edit("refblock-on-l1", lambda i: i.w64(i.rt + 8, i.l1))
edit("refblock-on-l2", lambda i: i.w64(i.rt, i.l2(0)))
edit("reftable-on-l1", lambda i: i.w64(48, i.l1))
# A refcount block past EOF, one misaligned, one with reserved bits (060, 138).
edit("refblock-past-eof", lambda i: i.w64(i.rt + 8, (i.size() // i.cs + 5) * i.cs))
edit("refblock-unaligned", lambda i: i.w64(i.rt, i.refblock(0) + 0x200))
edit("reftable-reserved", lambda i: i.w64(i.rt + 16, 0x10200))
# OFLAG_COPIED wrong (060): cleared on an L2 entry and an L1 entry, set where a snapshot shares.
edit("copied-l2-clear", lambda i: i.w64(i.l2e(1), i.u64(i.l2e(1)) & ~(1 << 63)))
edit("copied-l1-clear", lambda i: i.w64(i.l1, i.u64(i.l1) & ~(1 << 63)))
edit("copied-set-shared", lambda i: (i.w64(i.l2e(2), i.u64(i.l2e(2)) | (1 << 63)), i.w64(i.l1 + 8 * 0, i.u64(i.l1) | (1 << 63))),
     base="snapshots.qcow2")
# Reserved bits and misalignment in L1 and L2 entries.
edit("l1-reserved", lambda i: i.w64(i.l1, i.u64(i.l1) | 0x0100000000000000))
edit("l1-unaligned", lambda i: i.w64(i.l1 + 8 * 7, (1 << 63) | (i.l2(0) + 0x400)))
edit("l2-reserved", lambda i: i.w64(i.l2e(0), i.u64(i.l2e(0)) | 0x0200000000000000))
edit("l2-unaligned", lambda i: (i.w64(i.l2e(0), i.u64(i.l2e(0)) + 0x200), i.w64(i.l2e(1), i.u64(i.l2e(1)) + 0x400 | 1)))
edit("l2-duplicate", lambda i: i.w64(i.l2e(50), i.u64(i.l2e(0))))
edit("refbits1-duplicate", lambda i: (i.w64(i.l2e(50), i.u64(i.l2e(0)) & ~(1 << 63)), i.w64(i.l2e(51), i.u64(i.l2e(0)))),
     base="refbits1.qcow2")


# Compressed cluster past EOF (060) and one overlapping the L1 table.
def compressed_past_eof(i):
    e = i.u64(i.l2e(0))
    csize_shift = 62 - (i.cb - 8)
    sectors = (e >> csize_shift) & ((1 << (i.cb - 8)) - 1)
    i.w64(i.l2e(0), (1 << 62) | (sectors << csize_shift) | (i.size() + 10 * i.cs + 0x123))
    i.w64(i.l2e(1), (1 << 63) | (1 << 62) | (sectors << csize_shift) | (i.l1 + 0x40))


edit("compressed-past-eof", compressed_past_eof, base="compressed.qcow2")


# Bad snapshot L1 tables (080, 108): misaligned; too large; past EOF.
def snapshot_entry(i, n):
    o = i.u64(64)
    for _ in range(n):
        extra = i.u32(o + 36)
        ids = struct.unpack(">H", (i.f.seek(o + 12), i.f.read(2))[1])[0]
        names = struct.unpack(">H", (i.f.seek(o + 14), i.f.read(2))[1])[0]
        o = (o + 40 + extra + ids + names + 7) & ~7
    return o


edit("snap-l1-unaligned", lambda i: i.w64(snapshot_entry(i, 0), i.u64(snapshot_entry(i, 0)) + 0x200), base="snapshots.qcow2")
edit("snap-l1-large", lambda i: i.w32(snapshot_entry(i, 1) + 8, 0x1000000), base="snapshots.qcow2")
edit("snap-l1-past-eof", lambda i: i.w64(snapshot_entry(i, 1), (i.size() // i.cs + 50) * i.cs), base="snapshots.qcow2")
edit("snap-extra-short", lambda i: i.w32(snapshot_entry(i, 1) + 36, 8), base="snapshots.qcow2")

# Dirty bit with lazy refcounts (039): killed after a write, its refcounts never written.
path = create("dirty", opts="lazy_refcounts=on")
io(path, "write -P 1 0 64k", "write -P 2 1M 512k", "sigraise 9", allow_fail=True)
edit("dirty-flag-only", lambda i: i.w64(72, i.u64(72) | 1), base="lazy.qcow2")
# The corrupt bit (060): on a clean image, and on a damaged one.
edit("corrupt-bit", lambda i: i.w64(72, i.u64(72) | 2))
edit("corrupt-bit-damaged", lambda i: (i.w64(72, i.u64(72) | 2), i.w64(i.l2e(1), i.u64(i.l2e(1)) & ~(1 << 63))))


# Bad bitmaps (165, 255): a table entry past EOF; an in-use bitmap whose table is invalid (QEMU opens the image, the
# check stops); the directory's refcount 0.
def bitmap_table(i):
    """The bitmap directory's offset (its first entry: table offset, table size, flags)."""
    o = i.u32(100)
    while True:
        t, n = i.u32(o), i.u32(o + 4)
        if t == 0x23852875:
            return i.u64(o + 24), o
        if t == 0:
            sys.exit("no bitmaps extension")
        o += 8 + ((n + 7) & ~7)


def bitmap_entry_past_eof(i):
    d, _ = bitmap_table(i)
    table = i.u64(d)
    i.w64(table, (i.size() // i.cs + 20) * i.cs)


def bitmap_in_use_bad(i):
    d, _ = bitmap_table(i)
    i.w32(d + 12, i.u32(d + 12) | 1)
    i.w64(i.u64(d), 0x200 | i.cs)


edit("bitmap-entry-past-eof", bitmap_entry_past_eof, base="bitmaps.qcow2")
edit("bitmap-in-use-bad", bitmap_in_use_bad, base="bitmaps.qcow2")
edit("bitmap-dir-refcount-zero", lambda i: i.set_refcount(bitmap_table(i)[0] >> i.cb, 0), base="bitmaps.qcow2")
# Extended L2 damage: a subcluster both allocated and zero; an unallocated cluster with allocated subclusters;
# a compressed cluster with a bitmap.
edit("extl2-bad-bitmap", lambda i: (i.w64(i.l2e(0) + 8, i.u64(i.l2e(0) + 8) | (1 << 32)),
                                    i.w64(i.l2e(200) + 8, 0x3)), base="extl2.qcow2")
# An external data file image with a snapshot table entry and a compressed cluster (both corruptions).
edit("external-compressed", lambda i: i.w64(i.l2e(5), (1 << 62) | 0x50000), base="external.qcow2")
# A refcount table with zero clusters (QEMU opens it only to check it).
edit("no-reftable", lambda i: i.w32(56, 0))
# Quirks: an L1 entry that is only the copied flag (its "L2 table" is the header); a refcount block beyond what QEMU can
# address (every refcount it covers is a check error); a compressed cluster spanning two host clusters; a reference
# into the partial cluster at the end of a file that is not cluster aligned (allowed) and one a cluster past it.
edit("l1-copied-only", lambda i: i.w64(i.l1 + 8 * 2, 1 << 63))
edit("refblock-unreadable", lambda i: i.w64(i.rt, 0x7FFFFFFFFFFF0000))


def compressed_span(i):
    e = i.u64(i.l2e(0))
    csize_shift = 62 - (i.cb - 8)
    off = (e & ((1 << csize_shift) - 1))
    start = (off // i.cs + 1) * i.cs - 512
    i.w64(i.l2e(0), (1 << 62) | (3 << csize_shift) | start)


edit("compressed-span", compressed_span, base="compressed.qcow2")


def partial_tail(i):
    n = i.size()
    i.f.truncate(n + 4096)
    i.w64(i.l2e(60), (1 << 63) | n)
    i.set_refcount(n // i.cs, 1)
    i.w64(i.l2e(61), (1 << 63) | (n + i.cs))


edit("partial-tail", partial_tail)
path = written("v2-snap", opts="compat=0.10")
run("qemu-img", "snapshot", "-c", "s", path)
io(path, "write -P 4 0 64k")
# A snapshot L1 table at 2^64 - 64 KiB: QEMU's signed arithmetic does not see it past the end of the file, and the
# check stops when it cannot allocate a refcount array that far ("Check failed").
edit("snap-l1-huge-offset", lambda i: i.w64(snapshot_entry(i, 0), 0xFFFFFFFFFFFF0000), base="snapshots.qcow2")


# An end-of-extensions marker whose length runs past the header cluster: QEMU checks the length before the type and
# refuses to open the image ("Header extension too large"); imgtool refuses it too.
def end_marker_too_long(i):
    o = i.u32(100)
    while i.u32(o) != 0:
        o += 8 + ((i.u32(o + 4) + 7) & ~7)
    i.w32(o + 4, i.cs)


edit("end-extension-too-long", end_marker_too_long)
