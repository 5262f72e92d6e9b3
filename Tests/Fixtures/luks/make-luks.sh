#!/usr/bin/env bash
# Makes the committed LUKS fixtures once, with the real qemu-img, and records their sha256 in MANIFEST.tsv.
# Why committed: QEMU times its PBKDF when it creates a LUKS header (crypto/pbkdf.c counts iterations against the
# thread's CPU time; QEMU 7.2 has no option for a fixed count), and on a loaded machine that measurement fails
# ("Unable to get accurate CPU usage") or varies. Reading them is what the tests check, so they are made here once.
# Run from anywhere; rewrites every file in this folder. The passphrase is "pw" (secret id s0).
set -euo pipefail
cd "$(dirname "$0")"
rm -f ./*.xz MANIFEST.tsv
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
s=(--object secret,id=s0,data=pw)
make() { local name=$1 size=$2; shift 2; qemu-img create -q "${s[@]}" "$@" "$tmp/$name" "$size"; }
make luks.qcow2 8M -f qcow2 -o encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10
make plain.luks 6M -f luks -o key-secret=s0,iter-time=10
make serpent.luks 1M -f luks -o key-secret=s0,iter-time=10,cipher-alg=serpent-256,hash-alg=sha512
make essiv.luks 1M -f luks -o key-secret=s0,iter-time=10,cipher-alg=aes-128,cipher-mode=cbc,ivgen-alg=essiv,ivgen-hash-alg=sha256
make cast5.luks 1M -f luks -o key-secret=s0,iter-time=10,cipher-alg=cast5-128,cipher-mode=cbc,ivgen-alg=plain,hash-alg=sha1
make twofish.luks 1M -f luks -o key-secret=s0,iter-time=10,cipher-alg=twofish-192,hash-alg=ripemd160
printf 'file\timage\timage-sha256\tmade-with\n' > MANIFEST.tsv
for f in luks.qcow2 plain.luks serpent.luks essiv.luks cast5.luks twofish.luks; do
  xz -9e -c "$tmp/$f" > "$f.xz"
  printf '%s\t%s\t%s\t%s\n' "$f.xz" "$f" "$(sha256sum < "$tmp/$f" | cut -c1-64)" "$(qemu-img --version | head -1)" >> MANIFEST.tsv
done
