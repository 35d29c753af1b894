#!/usr/bin/python3
"""devsim: plays a serial device on a pseudo terminal, for tests and the demo.

The simulator opens a pty pair, keeps the master, and points a symlink
(--link, like /dev/serial/by-id/...) at the slave: configure that path as
the plugin's `port`. Unplugging closes the master (the plugin reads EIO, as
from a USB adapter pulled out) and removes the link; plugging in opens a new
pty and points the link at it again.

Devices (python3 standard library only):

  counter    a people counter printing cumulative lines "IN=12 OUT=9\\r\\n"
             every --interval seconds (--format to change the line), or only
             when polled with --poll COMMAND
  feedback   a smiley terminal: one character '1'..'4' per press
  rdm6300    an EM4100 reader: STX, 10 hex digits (version byte + 32-bit
             id), 2 hex digits XOR checksum, ETX; repeats while a card is held
  id12la     an ID-12LA/ID-20LA reader: STX, 10 + 2 hex, CR, LF, ETX
  wedge      a USB keyboard-wedge reader or smiley keypad: struct
             input_event records into a FIFO (--fifo), for the evdev
             backends (there is no uinput to make a real event device)
  script     commands from --script FILE or standard input, one per line:
               send TEXT        bytes, with escapes \\r \\n \\t \\xHH
               hex 02 41 03     bytes in hex
               card FORMAT ID [badsum]  a card frame (rdm6300, id12la); ID
                                is 10 hex digits or a 32-bit decimal number
               keys TEXT        (wedge) digits typed as key presses, \\n = Enter
               noise N          N random bytes (seeded: --seed)
               sleep SECONDS
               unplug | plug    pull the adapter out, plug it back in
               sync TOKEN       prints "sync TOKEN" once everything before it
                                was written (tests wait for it)
               quit

Status lines go to standard output: "ready LINK -> /dev/pts/N", "unplugged",
"plugged LINK -> /dev/pts/M", "sync TOKEN". Writes never block the
simulator: what the pty does not take (nobody reading) is dropped and said
on standard error.
"""
import argparse
import os
import random
import select
import signal
import struct
import sys
import time
import tty

EV_KEY, EV_SYN, EV_MSC = 1, 0, 4
KEY_ENTER = 28
DIGIT_KEYS = {str(d): 1 + d for d in range(1, 10)}  # KEY_1..KEY_9 = 2..10
DIGIT_KEYS["0"] = 11


def unescape(text):
    return text.encode("latin-1").decode("unicode_escape").encode("latin-1")


def card_bytes(card):
    """'0C000621A5' (10 hex digits) or a decimal 32-bit number -> 5 bytes."""
    if len(card) == 10 and all(c in "0123456789abcdefABCDEF" for c in card):
        return bytes.fromhex(card)
    value = int(card, 0)
    if not 0 <= value < 1 << 40:
        raise ValueError("card id out of range: " + card)
    return value.to_bytes(5, "big")


def card_frame(fmt, card, bad_checksum=False):
    raw = card_bytes(card)
    x = 0
    for b in raw:
        x ^= b
    if bad_checksum:
        x ^= 0x5A
    body = (raw.hex().upper() + "%02X" % x).encode()
    if fmt == "rdm6300":
        return b"\x02" + body + b"\x03"
    if fmt == "id12la":
        return b"\x02" + body + b"\r\n\x03"
    raise ValueError("card format is rdm6300 or id12la")


def input_event(etype, code, value, now=None):
    now = time.time() if now is None else now
    sec = int(now)
    return struct.pack("llHHi", sec, int((now - sec) * 1e6), etype, code, value)


def key_events(text):
    out = b""
    for ch in text:
        code = KEY_ENTER if ch == "\n" else DIGIT_KEYS.get(ch)
        if code is None:
            raise ValueError("wedge types digits and newline only: %r" % ch)
        out += input_event(EV_MSC, 4, 0x70000 + code)
        out += input_event(EV_KEY, code, 1) + input_event(EV_SYN, 0, 0)
        out += input_event(EV_KEY, code, 0) + input_event(EV_SYN, 0, 0)
    return out


def say(*words):
    print(*words, flush=True)


class Port:
    """A pty whose slave is reachable through a symlink; or a FIFO."""

    def __init__(self, link, fifo=None):
        self.link = link
        self.fifo = fifo
        self.master = self.slave = None
        self.dropped = 0
        self.plugs = 0

    def plug(self):
        if self.fifo:
            if not os.path.exists(self.fifo):
                os.mkfifo(self.fifo)
            # read-write: opening does not wait for the reader, and the FIFO
            # never reports end-of-file to it while we hold it
            self.master = os.open(self.fifo, os.O_RDWR | os.O_NONBLOCK)
            say("ready", self.fifo)
            return
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)  # before the plugin opens it: no echo, no CR/LF mapping
        os.set_blocking(self.master, False)
        name = os.ttyname(self.slave)
        tmp = self.link + ".devsim-new"
        if os.path.lexists(tmp):
            os.unlink(tmp)
        os.symlink(name, tmp)
        os.replace(tmp, self.link)  # atomic, as udev replaces by-id links
        say("plugged" if self.plugs else "ready", self.link, "->", name)
        self.plugs += 1

    def unplug(self):
        if self.fifo:
            os.close(self.master)
            self.master = None
            say("unplugged")
            return
        if os.path.lexists(self.link):
            os.unlink(self.link)
        for fd in (self.master, self.slave):
            if fd is not None:
                os.close(fd)
        self.master = self.slave = None
        say("unplugged")

    def write(self, data):
        if self.master is None:
            return
        try:
            n = os.write(self.master, data)
        except BlockingIOError:
            n = 0
        if n < len(data):
            self.dropped += len(data) - n
            print("devsim: nobody reads the port; %d bytes dropped" % (len(data) - n),
                  file=sys.stderr, flush=True)

    def read_pending(self):
        """What the plugin wrote (a poll command), or b''."""
        if self.master is None or self.fifo:
            return b""
        try:
            r, _, _ = select.select([self.master], [], [], 0)
            return os.read(self.master, 4096) if r else b""
        except OSError:  # EIO: no one has the slave open
            return b""

    def close(self):
        if self.master is not None:
            self.unplug()
        if self.fifo and os.path.exists(self.fifo):
            os.unlink(self.fifo)


def run_counter(port, a, rng):
    n_in, n_out = a.start, a.start
    pending = b""
    while True:
        n_in += rng.choice((0, 0, 1, 1, 2, 3))
        n_out = min(n_in, n_out + rng.choice((0, 0, 1, 1, 2)))
        line = unescape(a.format.format(**{"in": n_in, "out": n_out}) + a.eol)
        if a.poll:
            pending += port.read_pending()
            if unescape(a.poll) in pending:
                pending = b""
                port.write(line)
        else:
            port.write(line)
        time.sleep(a.interval if not a.poll else 0.05)


def run_feedback(port, a, rng):
    while True:
        port.write(bytes(rng.choices(b"1234", weights=(1, 2, 5, 8))[0:1]))
        time.sleep(rng.expovariate(1 / a.interval))


def run_cards(port, a, rng):
    cards = a.cards.split(",")
    while True:
        frame = card_frame(a.device, rng.choice(cards))
        for _ in range(a.repeat):  # RDM6300 repeats while the card is held
            port.write(frame)
            time.sleep(0.1)
        time.sleep(a.interval)


def run_wedge(port, a, rng):
    cards = a.cards.split(",") if a.cards else []
    while True:
        if cards:
            low32 = int.from_bytes(card_bytes(rng.choice(cards))[1:], "big")
            port.write(key_events("%010d\n" % low32))  # 10 decimal digits + Enter
        else:
            port.write(key_events(rng.choice("1234")))
        time.sleep(a.interval)


def script_line(port, line, rng):
    words = line.split(None, 1)
    if not words or words[0].startswith("#"):
        return True
    cmd, rest = words[0], (words[1] if len(words) > 1 else "")
    if cmd == "send":
        port.write(unescape(rest))
    elif cmd == "hex":
        port.write(bytes.fromhex(rest))
    elif cmd == "card":
        args = rest.split()
        port.write(card_frame(args[0], args[1], bad_checksum="badsum" in args[2:]))
    elif cmd == "keys":
        port.write(key_events(unescape(rest).decode("latin-1")))
    elif cmd == "noise":
        port.write(bytes(rng.randrange(256) for _ in range(int(rest))))
    elif cmd == "sleep":
        time.sleep(float(rest))
    elif cmd == "unplug":
        port.unplug()
    elif cmd == "plug":
        port.plug()
    elif cmd == "sync":
        say("sync", rest)
    elif cmd == "quit":
        return False
    else:
        print("devsim: unknown command: " + cmd, file=sys.stderr, flush=True)
    return True


def run_script(port, a, rng):
    src = open(a.script) if a.script else sys.stdin
    for line in src:
        if not script_line(port, line.rstrip("\n"), rng):
            break


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("device", choices=["counter", "feedback", "rdm6300", "id12la", "wedge", "script"])
    p.add_argument("--link", help="symlink to the pty's slave (the plugin's port)")
    p.add_argument("--fifo", help="wedge, or script with keys: write input events to this FIFO")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between lines or presses")
    p.add_argument("--format", default="IN={in} OUT={out}", help="counter line, {in} {out}")
    p.add_argument("--eol", default="\\r\\n", help="counter line end (escapes)")
    p.add_argument("--start", type=int, default=0, help="counter start value")
    p.add_argument("--poll", help="counter: answer only this command (escapes), e.g. 'gcounters\\r'")
    p.add_argument("--cards", default="0C000621A5,0100D507D0",
                   help="card ids: 10 hex digits or decimal, comma-separated")
    p.add_argument("--repeat", type=int, default=3, help="frames per card read")
    p.add_argument("--script", help="script: read commands from this file (default stdin)")
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    if not a.link and not a.fifo:
        p.error("--link (a pty) or --fifo (input events) is needed")
    rng = random.Random(a.seed)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # unplug on the way out
    port = Port(a.link, a.fifo)
    port.plug()
    runners = {"counter": run_counter, "feedback": run_feedback, "rdm6300": run_cards,
               "id12la": run_cards, "wedge": run_wedge, "script": run_script}
    try:
        runners[a.device](port, a, rng)
    except KeyboardInterrupt:
        pass
    finally:
        port.close()


if __name__ == "__main__":
    main()
