#!/usr/bin/python3
"""A contactless card on the vsmartcard-vpcd virtual reader, for the tests.

Debian's vicc (vsmartcard-vpicc) is broken (../shared/TESTING.md section 4),
so this speaks vpcd's socket protocol itself: pcscd's vpcd driver listens on
a TCP port; the card connects to it ("inserted") and answers messages, each
a big-endian u16 length and a payload. A 1-byte payload is a control code
(0 power off, 1 power on, 2 reset, 4 "send your ATR"); anything longer is a
command APDU, answered with the response APDU. Closing the connection
removes the card.

    fakecard.py PORT UIDHEX [MODE]

MODE says how the card answers GET DATA (FF CA 00 00 00), the PC/SC
"give me the UID" command of a contactless reader:
    ok           UID + 90 00
    unsupported  6A 81 (function not supported: a card without a UID to give)
    fail         63 00 (the reader could not read it)
    le           6C 04 first (Le wrong, use 4), then UID + 90 00 for Le 04
The card stays inserted until the process is killed (SIGTERM) or pcscd
goes away.
"""
import signal
import socket
import struct
import sys

# A contactless storage card's ATR as PC/SC part 3 builds it
ATR = bytes.fromhex("3B8F8001804F0CA000000306030001000000006A")


def answer(msg, uid, mode, state):
    if len(msg) == 1:
        return ATR if msg == b"\x04" else None  # power on/off, reset: no answer
    if msg[:4] != b"\xff\xca\x00\x00":
        return b"\x6d\x00"  # instruction not supported
    if mode == "unsupported":
        return b"\x6a\x81"
    if mode == "fail":
        return b"\x63\x00"
    if mode == "le" and msg[4:5] != bytes([len(uid)]):
        state["le_asked"] = True
        return bytes([0x6C, len(uid)])
    return uid + b"\x90\x00"


def main():
    port, uid = int(sys.argv[1]), bytes.fromhex(sys.argv[2])
    mode = sys.argv[3] if len(sys.argv) > 3 else "ok"
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    s = socket.create_connection(("127.0.0.1", port))
    f = s.makefile("rb")
    state = {}
    while True:
        head = f.read(2)
        if len(head) < 2:
            return
        msg = f.read(struct.unpack("!H", head)[0])
        r = answer(msg, uid, mode, state)
        if r is not None:
            s.sendall(struct.pack("!H", len(r)) + r)


if __name__ == "__main__":
    main()
