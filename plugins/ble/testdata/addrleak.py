#!/usr/bin/python3
"""Looks for raw Bluetooth device addresses in files: the privacy check of
the ble plugin's tests. An address must never reach the database, its WAL,
the outputs or the logs, in any encoding.

    addrleak.py --addr AA:BB:CC:DD:EE:FF [--addr ...] PATH...

Forms searched, in both byte orders (BlueZ prints the most significant byte
first, HCI carries the least significant first): hex in either case, bare
or with ':', '-', '_' (BlueZ object paths: dev_AA_BB_...) or ' ' between
bytes; the 6 raw bytes; base64 and base64url of the raw bytes and of the
text; the 48-bit number in decimal. PATHs are files or directories
(searched recursively), read as bytes. Prints each finding, exits 1 if any.
"""
import base64
import os
import sys


def forms(addr):
    raw = bytes.fromhex(addr.replace(":", ""))
    texts, raws = set(), set()
    for b in (raw, raw[::-1]):
        raws.add(b)
        for h in (b.hex().upper(), b.hex().lower()):
            pairs = [h[i:i + 2] for i in range(0, 12, 2)]
            for sep in ("", ":", "-", "_", " "):
                texts.add(sep.join(pairs))
        texts.add(str(int.from_bytes(b, "big")))
        for enc in (base64.b64encode, base64.urlsafe_b64encode):
            texts.add(enc(b).decode().rstrip("="))
    for t in list(texts):
        if ":" in t:
            for enc in (base64.b64encode, base64.urlsafe_b64encode):
                texts.add(enc(t.encode()).decode().rstrip("=")[:20])
    return texts, raws


def files(paths):
    for p in paths:
        if os.path.isdir(p):
            for root, _, names in os.walk(p):
                for n in names:
                    yield os.path.join(root, n)
        elif os.path.exists(p):
            yield p


def scan(addrs, paths):
    """(number of files read, findings as text lines)"""
    table = [(a, forms(a)) for a in addrs]
    found, n = [], 0
    for path in files(paths):
        data = open(path, "rb").read()
        n += 1
        for a, (texts, raws) in table:
            for t in texts:
                if t.encode() in data:
                    found.append("%s: address %s as text %r" % (path, a, t))
            for r in raws:
                if r in data:
                    found.append("%s: address %s as raw bytes %s" % (path, a, r.hex()))
    return n, found


def main(argv):
    addrs, paths = [], []
    it = iter(argv)
    for a in it:
        if a == "--addr":
            addrs.append(next(it))
        else:
            paths.append(a)
    n, found = scan(addrs, paths)
    for f in found:
        print(f)
    if n == 0:
        print("addrleak: no files to check")
        return 1
    print("addrleak: %d files, %d addresses, %d findings" % (n, len(addrs), len(found)))
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
