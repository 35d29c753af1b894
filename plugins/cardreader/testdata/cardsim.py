#!/usr/bin/python3
"""Card reader simulator for the cardreader plugin's integration tests: a
serial EM4100 reader on a pseudo terminal, or a USB keyboard-wedge reader
whose evdev node is a FIFO (there is no uinput on the test machines,
../shared/TESTING.md section 9). For the demo and the other tty plugins,
tests/devsim/devsim.py plays the same readers; this one adds what the
cardreader tests need beyond it: a card held on the reader (hold), frames
split across reads (split), keypad digits, letters with Shift (hex cards
typed by a wedge reader) and lines of any text.

    cardsim.py pty LINK      a serial reader; LINK (a symlink) points at the pty
    cardsim.py evdev FIFO    a wedge reader writing struct input_event into FIFO

Commands, one per line on standard input (the same for both where it makes
sense):

    rdm6300 HEX10     an RDM6300 frame: STX, 10 hex digits, XOR checksum, ETX
    id12la HEX10      an ID-12LA frame: the same with CR LF before ETX
    hold HEX10 N      N RDM6300 frames 100 ms apart: a card held on the reader
    badsum HEX10      an RDM6300 frame with a wrong checksum
    split HEX10       an RDM6300 frame written in three pieces, 150 ms apart
    line TEXT         TEXT and CR LF (an ASCII reader)
    raw HEX           these bytes
    type TEXT         (evdev) the keys of TEXT, then Enter; digits, letters, , - .
    typekp DIGITS     (evdev) keypad digits, then keypad Enter
    unplug            close the pty master / the FIFO's write end
    plug              a new pty behind LINK / open the FIFO again
    sleep SECONDS
    echo TEXT         print TEXT on standard output (a barrier for the caller)

Prints "ready" once LINK or the FIFO is usable. EM4100 facts:
../shared/DEVICES.md section 4; key codes: section 5.
"""
import os
import struct
import sys
import time
import tty

STX, ETX = b"\x02", b"\x03"
KEY = {str(d): 1 + d for d in range(1, 10)}
KEY["0"] = 11
KEY.update({",": 51, ".": 52, "-": 12, " ": 57})
for row, first in (("qwertyuiop", 16), ("asdfghjkl", 30), ("zxcvbnm", 44)):
    for i, ch in enumerate(row):
        KEY[ch] = first + i
KEYPAD = {"7": 71, "8": 72, "9": 73, "4": 75, "5": 76, "6": 77, "1": 79, "2": 80, "3": 81, "0": 82}
KEY_ENTER, KEY_KPENTER, KEY_LEFTSHIFT = 28, 96, 42
EV_SYN, EV_KEY, EV_MSC, MSC_SCAN = 0, 1, 4, 4


def checksum(hex10):
    x = 0
    for b in bytes.fromhex(hex10):
        x ^= b
    return x


def rdm6300(hex10, bad=False):
    c = checksum(hex10) ^ (0x01 if bad else 0)
    return STX + (hex10.upper() + "%02X" % c).encode() + ETX


def id12la(hex10):
    return STX + (hex10.upper() + "%02X" % checksum(hex10)).encode() + b"\r\n" + ETX


class Pty:
    def __init__(self, link):
        self.link, self.master = link, None
        self.plug()

    def plug(self):
        master, slave = os.openpty()
        tty.setraw(slave)  # raw before anyone reads: no echo, no line editing
        name = os.ttyname(slave)
        os.close(slave)
        tmp = self.link + ".new"
        if os.path.lexists(tmp):
            os.unlink(tmp)
        os.symlink(name, tmp)
        os.replace(tmp, self.link)
        self.master = master

    def unplug(self):
        if self.master is not None:
            os.close(self.master)
        self.master = None

    def write(self, data):
        os.write(self.master, data)


class Evdev:
    def __init__(self, path):
        self.path, self.fd = path, None
        self.plug()

    def plug(self):
        self.fd = os.open(self.path, os.O_WRONLY)  # waits for the agent to open it

    def unplug(self):
        if self.fd is not None:
            os.close(self.fd)
        self.fd = None

    def event(self, etype, code, value):
        t = time.time()
        sec, usec = int(t), int((t - int(t)) * 1e6)
        os.write(self.fd, struct.pack("qqHHi", sec, usec, etype, code, value))

    def key(self, code, shift=False):
        """Scan code, press, sync, release, sync: what a USB reader sends."""
        if shift:
            self.event(EV_KEY, KEY_LEFTSHIFT, 1)
        self.event(EV_MSC, MSC_SCAN, 0x70000 + code)
        self.event(EV_KEY, code, 1)
        self.event(EV_SYN, 0, 0)
        self.event(EV_KEY, code, 0)
        self.event(EV_SYN, 0, 0)
        if shift:
            self.event(EV_KEY, KEY_LEFTSHIFT, 0)
        time.sleep(0.002)

    def type(self, text, keypad=False):
        for ch in text:
            if keypad:
                self.key(KEYPAD[ch])
            else:
                self.key(KEY[ch.lower()], shift=ch.isupper())
        self.key(KEY_KPENTER if keypad else KEY_ENTER)

    def write(self, data):
        os.write(self.fd, data)


def run(dev, cmd, args):
    if cmd == "rdm6300":
        dev.write(rdm6300(args[0]))
    elif cmd == "id12la":
        dev.write(id12la(args[0]))
    elif cmd == "badsum":
        dev.write(rdm6300(args[0], bad=True))
    elif cmd == "hold":
        for _ in range(int(args[1])):
            dev.write(rdm6300(args[0]))
            time.sleep(0.1)
    elif cmd == "split":
        frame = rdm6300(args[0])
        for piece in (frame[:4], frame[4:9], frame[9:]):
            dev.write(piece)
            time.sleep(0.15)
    elif cmd == "line":
        dev.write(" ".join(args).encode() + b"\r\n")
    elif cmd == "raw":
        dev.write(bytes.fromhex("".join(args)))
    elif cmd == "type":
        dev.type(" ".join(args))
    elif cmd == "typekp":
        dev.type(args[0], keypad=True)
    elif cmd == "unplug":
        dev.unplug()
    elif cmd == "plug":
        dev.plug()
    elif cmd == "sleep":
        time.sleep(float(args[0]))
    elif cmd == "echo":
        print(" ".join(args), flush=True)
    else:
        sys.exit("cardsim: unknown command " + cmd)


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("pty", "evdev"):
        sys.exit(__doc__)
    dev = Pty(sys.argv[2]) if sys.argv[1] == "pty" else Evdev(sys.argv[2])
    print("ready", flush=True)
    while True:
        line = sys.stdin.readline()
        if not line:
            break
        words = line.split()
        if words:
            run(dev, words[0], words[1:])
    dev.unplug()


if __name__ == "__main__":
    main()
