#!/usr/bin/python3
"""Looks for raw card numbers in files: the privacy check of the cardreader
integration tests. A card number must never reach the database, its WAL,
the outputs or the logs, in any common encoding.

    leakcheck.py [--card KIND:VALUE]... PATH...

KIND:VALUE is em4100:HEX10 (version byte and 32-bit id), wiegand26:FC,CN or
uid:HEX (an NFC UID). PATHs are files or directories (searched
recursively), read as bytes. Prints each finding and exits 1 if there is
one.
"""
import os
import sys


def hex_forms(b):
    """Hex of the bytes, both cases, bare or with the usual separators."""
    out = set()
    for h in (b.hex().upper(), b.hex().lower()):
        out.add(h)
        pairs = [h[i:i + 2] for i in range(0, len(h), 2)]
        for sep in (":", "-", " "):
            out.add(sep.join(pairs))
    return out


def int_forms(v):
    """Decimal, zero-padded to 10 digits as wedge readers type it, and plain
    where it is long enough not to turn up by chance."""
    s = str(v)
    return {s.zfill(10), s} if len(s) >= 6 else {s.zfill(10)}


def em4100(hex10):
    b = bytes.fromhex(hex10)
    low = b[1:]
    v = int.from_bytes(low, "big")
    fc, cn = (v >> 16) & 0xFF, v & 0xFFFF
    forms = hex_forms(b) | hex_forms(low) | hex_forms(low[::-1]) | hex_forms(b[::-1])
    forms |= int_forms(v) | int_forms(int.from_bytes(b, "big"))
    forms |= {"%d,%05d" % (fc, cn), "%03d,%05d" % (fc, cn), "%03d%05d" % (fc, cn)}
    raw = {b, low, low[::-1]}
    return forms, raw


def wiegand26(text):
    fc, cn = (int(x) for x in text.split(","))
    v = fc << 16 | cn
    b = v.to_bytes(3, "big")
    forms = {"%d,%d" % (fc, cn), "%d,%05d" % (fc, cn), "%03d,%05d" % (fc, cn),
             "%03d%05d" % (fc, cn)} | hex_forms(b) | int_forms(v)
    return forms, {b}


def uid(hexs):
    b = bytes.fromhex(hexs)
    forms = hex_forms(b) | hex_forms(b[::-1]) | {str(int.from_bytes(b, "big")),
                                                  str(int.from_bytes(b, "little"))}
    return forms, {b}


KINDS = {"em4100": em4100, "wiegand26": wiegand26, "uid": uid}


def files(paths):
    for p in paths:
        if os.path.isdir(p):
            for root, _, names in os.walk(p):
                for n in names:
                    yield os.path.join(root, n)
        elif os.path.exists(p):
            yield p


def main(argv):
    cards, paths = [], []
    it = iter(argv)
    for a in it:
        if a == "--card":
            kind, value = next(it).split(":", 1)
            cards.append((kind + ":" + value, KINDS[kind](value)))
        else:
            paths.append(a)
    found = 0
    scanned = 0
    for path in files(paths):
        data = open(path, "rb").read()
        scanned += 1
        for name, (texts, raws) in cards:
            for t in texts:
                if t.encode() in data:
                    print("%s: card %s as text %r" % (path, name, t))
                    found += 1
            for r in raws:
                # raw binary only where a 4+ byte pattern is meaningful
                if len(r) >= 4 and r in data:
                    print("%s: card %s as raw bytes %s" % (path, name, r.hex()))
                    found += 1
    if scanned == 0:
        print("leakcheck: no files to check")
        return 1
    print("leakcheck: %d files, %d cards, %d findings" % (scanned, len(cards), found))
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
