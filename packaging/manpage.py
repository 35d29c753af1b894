#!/usr/bin/python3
"""Builds a man page (roff, man macros) from docs/man/NAME.SECTION.md.

    manpage.py --mittari BIN --plugin-dir DIR --version V -o OUT SOURCE

The source is Markdown plus these directives (on a line of their own):

    <!-- include: FILE -->     FILE (relative to the source) without its title;
                               its headings one level below the current one
    <!-- options: NAME -->     the option table of NAME as `mittari plugins NAME
                               --markdown` prints it (an agent, output type or
                               plugin), also inside included files, so option
                               tables always come from the binary
    <!-- plugins -->           every input plugin the binary lists: its one-line
                               description and docs/plugins/NAME.md, or its
                               option table where there is no page
    <!-- outputs -->           the same for every output type (docs/outputs/)

The Markdown used by docs/ is understood: headings, paragraphs, lists, code
blocks, tables (as tagged paragraphs), definition lists ("term" then ": text"),
`code`, **bold**, *emphasis* and links (their text). Anything else outside ASCII becomes a \\[uXXXX] escape, so the
page needs no preprocessor. Run by the build (CMakeLists.txt, target man);
tests/integration/test_man.sh checks the pages with groff's warnings on.
"""
import argparse
import os
import re
import subprocess
import sys

OPT_RE = re.compile(r"<!-- options: (\S+) -->\n.*?<!-- end options -->\n?", re.S)
OPT_ALONE_RE = re.compile(r"^<!-- options: (\S+) -->$", re.M)


class Ctx:
    def __init__(self, args):
        self.mittari = args.mittari
        self.plugin_dir = args.plugin_dir
        self.docs = os.path.normpath(os.path.join(os.path.dirname(args.source), ".."))

    def run(self, *argv):
        return subprocess.run([self.mittari, *argv, "--plugin-dir", self.plugin_dir,
                               "-c", "/nonexistent"],
                              check=True, capture_output=True, text=True).stdout

    def options(self, name):
        return self.run("plugins", name, "--markdown")

    def listing(self):
        """[(kind, name, description)] from `mittari plugins`."""
        out, kind = [], None
        for line in self.run("plugins").splitlines():
            if line.startswith("input plugins"):
                kind = "input"
            elif line.startswith("output types"):
                kind = "output"
            elif line.startswith("  ") and kind:
                m = re.match(r"  (\S+)\s+(\S+)\s+(.*)", line)
                if m:
                    out.append((kind, m.group(1), m.group(3).strip()))
        return out


def fill_options(ctx, text):
    text = OPT_RE.sub(lambda m: ctx.options(m.group(1)), text)
    return OPT_ALONE_RE.sub(lambda m: ctx.options(m.group(1)), text)


def shift_headings(text, by):
    """Drops the first-level title and moves every heading down `by` levels."""
    out, in_code = [], False
    for line in text.splitlines():
        if line.startswith("```"):
            in_code = not in_code
        m = None if in_code else re.match(r"^(#+) (.*)", line)
        if m and len(m.group(1)) == 1:
            continue  # the page's own title
        if m:
            line = "#" * (len(m.group(1)) - 1 + by) + " " + m.group(2)
        out.append(line)
    return "\n".join(out) + "\n"


def level_at(lines):
    """The level of the last heading before the directive (0 = none)."""
    level, in_code = 0, False
    for line in lines:
        if line.startswith("```"):
            in_code = not in_code
        m = None if in_code else re.match(r"^(#+) ", line)
        if m:
            level = len(m.group(1))
    return level


def include(ctx, path, level):
    with open(path) as f:
        text = f.read()
    return shift_headings(fill_options(ctx, text), level)


def expand(ctx, text, base):
    out = []
    for line in text.splitlines():
        m = re.match(r"^<!-- include: (\S+) -->$", line)
        if m:
            out.append(include(ctx, os.path.join(base, m.group(1)), level_at(out)))
            continue
        m = re.match(r"^<!-- (plugins|outputs) -->$", line)
        if m:
            kind = "input" if m.group(1) == "plugins" else "output"
            sub = "plugins" if kind == "input" else "outputs"
            level = level_at(out) + 1
            for k, name, desc in ctx.listing():
                if k != kind:
                    continue
                out.append("#" * level + " " + name + "\n\n" + desc + "\n")
                page = os.path.join(ctx.docs, sub, name + ".md")
                if os.path.exists(page):
                    out.append(include(ctx, page, level))
                else:
                    out.append(ctx.options(name))
            continue
        out.append(line)
    return fill_options(ctx, "\n".join(out) + "\n")


# ---- Markdown to roff ----------------------------------------------------

def esc_char(c):
    if ord(c) < 128:
        return c
    return "\\[u%04X]" % ord(c)


def esc(s):
    s = s.replace("\\", "\\e")
    return "".join(esc_char(c) for c in s)


def inline(s):
    """Inline Markdown of one paragraph to roff."""
    s = s.replace("\\|", "|")
    parts = re.split(r"(`[^`]*`)", s)
    out = []
    for p in parts:
        if p.startswith("`") and p.endswith("`") and len(p) >= 2:
            out.append("\\fB" + esc(p[1:-1]).replace("-", "\\-") + "\\fR")
            continue
        p = re.sub(r"\[([^\]]+)\]\((https?://[^)]+)\)", r"\1 <\2>", p)
        p = re.sub(r"\[([^\]]+)\]\([^)]*\)", r"\1", p)
        p = esc(p)
        p = re.sub(r"\*\*(.+?)\*\*", r"\\fB\1\\fR", p)
        p = re.sub(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])", r"\\fI\1\\fR", p)
        out.append(p)
    return "".join(out)


def text_lines(s):
    """roff text lines: none may start with a control character."""
    out = []
    for line in s.split("\n"):
        line = line.strip()
        if line.startswith((".", "'")):
            line = "\\&" + line
        if line:
            out.append(line)
    return out


def cells(row):
    row = row.strip()
    if row.startswith("|"):
        row = row[1:]
    if row.endswith("|") and not row.endswith("\\|"):
        row = row[:-1]
    return [c.strip() for c in re.split(r"(?<!\\)\|", row)]


def table(rows, out):
    head = cells(rows[0])
    body = [cells(r) for r in rows[2:]]
    if head[0] == "option":
        # option | type | default | allowed | description
        for r in body:
            r += [""] * (5 - len(r))
            meta = [r[1]]
            if r[2]:
                meta.append("required" if r[2] == "required" else "default " + r[2])
            if r[3]:
                meta.append(r[3])
            out += [".TP", inline(r[0]) + " (" + inline("; ".join(meta)) + ")"]
            out += text_lines(inline(r[4]))
        return
    for r in body:
        out += [".TP"] + text_lines(inline(r[0]) or "\\&")
        rest = [(h, c) for h, c in zip(head[1:], r[1:]) if c]
        for i, (h, c) in enumerate(rest):
            if i:
                out.append(".br")
            text = c if len(head) == 2 else h + ": " + c
            out += text_lines(inline(text))


def to_roff(md, name, section, version):
    out = ['.\\" Generated by packaging/manpage.py from docs/man/%s.%s.md: edit that.' % (name, section),
           '.TH "%s" "%s" "" "mittari %s" "mittari manual"' % (name.upper(), section, version)]
    lines = md.split("\n")
    i, para = 0, []

    def flush():
        if para:
            out.append(".PP")
            out.extend(text_lines(inline(" ".join(para))))
            para.clear()

    while i < len(lines):
        line = lines[i]
        if line.startswith("<!--"):
            while "-->" not in lines[i]:
                i += 1
            i += 1
            continue
        if line.startswith("```"):
            flush()
            i += 1
            out += [".PP", ".RS 4", ".nf"]
            while i < len(lines) and not lines[i].startswith("```"):
                code = esc(lines[i])
                out.append("\\&" + code if code.startswith((".", "'")) else code)
                i += 1
            out += [".fi", ".RE"]
            i += 1
            continue
        m = re.match(r"^(#+) (.*)", line)
        if m:
            flush()
            level, title = len(m.group(1)), m.group(2).strip()
            if level == 1:
                out.append('.SH "%s"' % esc(title.upper()))
            elif level == 2:
                out.append('.SS "%s"' % inline(title).replace('"', '\\(dq'))
            else:
                out += [".PP", "\\fB" + inline(title) + "\\fR"]
            i += 1
            continue
        if line.startswith("|") and i + 1 < len(lines) and re.match(r"^\|[-:| ]+\|?$", lines[i + 1]):
            flush()
            rows = []
            while i < len(lines) and lines[i].startswith("|"):
                rows.append(lines[i])
                i += 1
            table(rows, out)
            out.append(".PP")
            continue
        m = re.match(r"^(\s*)([-*]|\d+\.) (.*)", line)
        if m and not (m.group(2) == "*" and m.group(3).endswith("*")):
            flush()
            indent = len(m.group(1))
            item = [m.group(3)]
            i += 1
            # continuation lines: indented deeper than the marker, not a new item
            while i < len(lines) and lines[i].strip() and not re.match(r"^\s*([-*]|\d+\.) ", lines[i]) \
                    and (lines[i].startswith(" " * (indent + 2)) or not lines[i].startswith(" ")) \
                    and not lines[i].startswith(("#", "|", "```", "<!--")):
                item.append(lines[i])
                i += 1
            mark = "\\(bu" if m.group(2) in "-*" else m.group(2)
            out += ['.IP "%s" %d' % (mark, 4 + indent)]
            out += text_lines(inline(" ".join(x.strip() for x in item)))
            continue
        if line.strip() and not para and i + 1 < len(lines) and lines[i + 1].startswith(": "):
            # definition list: "term" then ": definition" (and its continuation lines)
            out += [".TP"] + text_lines(inline(line))
            defn = [lines[i + 1][2:]]
            i += 2
            while i < len(lines) and lines[i].strip() and not lines[i].startswith(": "):
                defn.append(lines[i])
                i += 1
            out += text_lines(inline(" ".join(defn)))
            continue
        if not line.strip():
            flush()
            i += 1
            continue
        para.append(line)
        i += 1
    flush()
    # no empty paragraphs: .PP right before a heading or another .PP
    clean = []
    for l in out:
        if clean and clean[-1] == ".PP" and (l == ".PP" or l.startswith((".SH", ".SS", ".TP", ".IP"))):
            clean.pop()
        clean.append(l)
    while clean and clean[-1] == ".PP":
        clean.pop()
    return "\n".join(clean) + "\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mittari", required=True)
    ap.add_argument("--plugin-dir", required=True)
    ap.add_argument("--version", required=True)
    ap.add_argument("-o", dest="out", required=True)
    ap.add_argument("source")
    args = ap.parse_args()
    base = os.path.basename(args.source)
    m = re.match(r"^(.+)\.([1-8])\.md$", base)
    if not m:
        sys.exit("manpage.py: %s is not NAME.SECTION.md" % base)
    ctx = Ctx(args)
    with open(args.source) as f:
        md = expand(ctx, f.read(), os.path.dirname(os.path.abspath(args.source)))
    roff = to_roff(md, m.group(1), m.group(2), args.version)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    tmp = args.out + ".tmp"
    with open(tmp, "w") as f:
        f.write(roff)
    os.replace(tmp, args.out)


if __name__ == "__main__":
    main()
