#!/usr/bin/env python3
"""Check docs/configuration.md and docs/providers.md against the code's
own list of keys and defaults (`evbridge --print-defaults`): every key in
both, every default equal. Prints one line per disagreement and exits 1
if there is any."""
import re
import sys

UNITS_DUR = {"ms": 1, "s": 1000, "m": 60000, "h": 3600000, "d": 86400000}
UNITS_SIZE = {"b": 1, "kib": 1024, "mib": 1 << 20, "gib": 1 << 30,
              "kb": 1000, "mb": 1000 ** 2, "gb": 1000 ** 3}


def dur_ms(s):
    s = s.strip().strip('"')
    if s == "0":
        return 0
    parts = re.findall(r"(\d+)(ms|s|m|h|d)", s)
    if not parts or "".join(a + b for a, b in parts) != s:
        raise ValueError("not a duration: %r" % s)
    return sum(int(a) * UNITS_DUR[b] for a, b in parts)


def size_b(s):
    s = s.strip().strip('"')
    m = re.fullmatch(r"(\d+) ?([A-Za-z]*)", s)
    if not m:
        raise ValueError("not a size: %r" % s)
    return int(m.group(1)) * UNITS_SIZE[(m.group(2) or "b").lower()]


def code_defaults(path):
    keys = {}
    for line in open(path):
        key, typ, dflt = line.rstrip("\n").split("\t")
        keys[key] = (typ, dflt)
    return keys


def doc_tables(path):
    """{section: [(key, default cell)]} for every "| Key | ..." table."""
    out, section, in_table = {}, None, False
    for line in open(path):
        m = re.match(r"^## (\w+)", line)
        if m:
            section = m.group(1)
        if line.startswith("| Key |"):
            in_table = True
            continue
        if in_table and not line.startswith("|"):
            in_table = False
        if not in_table or line.startswith("|---"):
            continue
        cells = [c.strip() for c in
                 re.split(r"(?<!\\)\|", line.strip().strip("|"))]
        key = cells[0].strip("`")
        out.setdefault(section, []).append((key, cells[2]))
    return out


def norm(typ, cell):
    """The doc's default cell as the code prints it."""
    ticks = re.findall(r"`([^`]*)`", cell)
    v = ticks[0] if ticks else cell
    if typ == "duration":
        return "%dms" % dur_ms(v)
    if typ == "size":
        return str(size_b(v))
    return v


def main():
    code = code_defaults(sys.argv[1])
    cfg_md, prov_md = sys.argv[2], sys.argv[3]
    bad = []
    seen = set()
    for section, rows in doc_tables(cfg_md).items():
        prefix = "sources[]." if section == "sources" else section + "."
        for key, cell in rows:
            full = prefix + key
            seen.add(full)
            if full not in code:
                bad.append("%s: `%s` is documented but is not a key"
                           % (cfg_md, full))
                continue
            typ, want = code[full]
            if want == "-":
                continue  # computed elsewhere (provider, cluster)
            try:
                got = norm(typ, cell)
            except (ValueError, KeyError) as e:
                bad.append("%s: `%s`: default %r: %s" % (cfg_md, full, cell, e))
                continue
            if want == "required":
                if "required" not in cell and got != "":
                    bad.append("%s: `%s` is required in the code" % (cfg_md, full))
            elif got != want:
                bad.append("%s: `%s` default: the docs say %s, the code %s"
                           % (cfg_md, full, cell, want))
    for key in code:
        if key.startswith("provider.") or key == "sources":
            continue
        if key.count(".") == 0 or key not in seen:
            if key.count(".") == 0 and key in seen:
                continue
            bad.append("%s: key `%s` is not documented" % (cfg_md, key))
    # Top-level keys named in "General rules".
    text = open(cfg_md).read()
    m = re.search(r"The top level is an object with any of these keys:(.*?)\.\s",
                  text, re.S)
    tops = {k.split(".")[0].split("[")[0] for k in code if not k.startswith("provider.")}
    named = set(re.findall(r"`(\w+)`", m.group(1))) if m else set()
    for t in sorted(tops - named):
        bad.append("%s: the top-level key list leaves out `%s`" % (cfg_md, t))
    # Each provider's paragraph in configuration.md: "the adapter's
    # defaults are `page_size` 250, `rps` 6, `burst` 1, `overlap` 2m and
    # `lag` 5s".
    for prov in sorted({k.split(".")[1] for k in code if k.startswith("provider.")}):
        sec = re.search(r"^### %s\n(.*?)(?=^### |\Z)" % prov, text, re.S | re.M)
        para = re.sub(r"\s+", " ", sec.group(1)) if sec else ""
        for name, key, typ in (("page_size", "poll.page_size", "i"),
                               ("rps", "rate_limit.rps", "f"),
                               ("burst", "rate_limit.burst", "i"),
                               ("overlap", "poll.overlap", "d"),
                               ("lag", "poll.lag", "d")):
            want = code["provider.%s.%s" % (prov, key)][1]
            mm = re.search(r"`%s` ([0-9]+(?:\.[0-9]+)?[a-z]*)" % name, para)
            if not mm:
                bad.append("%s: ### %s does not give the default %s" % (cfg_md, prov, name))
                continue
            got = mm.group(1)
            got = "%dms" % dur_ms(got) if typ == "d" else got
            if typ == "f":
                ok = float(got) == float(want)
            else:
                ok = got == want
            if not ok:
                bad.append("%s: ### %s: the docs say `%s` %s, the code %s"
                           % (cfg_md, prov, name, mm.group(1), want))
    # docs/providers.md's table: one column per provider.
    ptext = open(prov_md).read()
    head = re.search(r"^\| \| (.*) \|$", ptext, re.M)
    cols = [c.strip().lower() for c in head.group(1).split("|")] if head else []

    def row(label):
        r = re.search(r"^\| %s \| (.*) \|$" % re.escape(label), ptext, re.M)
        return [c.strip() for c in r.group(1).split("|")] if r else None

    checks = {
        "`page_size` default / max": lambda p: "%s / %s" % (
            code["provider.%s.poll.page_size" % p][1],
            code["provider.%s.poll.page_size_max" % p][1]),
        "`rate_limit` default": lambda p: "%s rps, burst %s" % (
            code["provider.%s.rate_limit.rps" % p][1],
            code["provider.%s.rate_limit.burst" % p][1]),
        "`overlap` default": lambda p: code["provider.%s.poll.overlap" % p][1],
        "`lag` default": lambda p: code["provider.%s.poll.lag" % p][1],
    }
    for label, fn in checks.items():
        cells = row(label)
        if not cells:
            bad.append("%s: no row %s" % (prov_md, label))
            continue
        for prov, cell in zip(cols, cells):
            want = fn(prov)
            got = cell
            if label in ("`overlap` default", "`lag` default"):
                got = "%dms" % dur_ms(cell.split(" ")[0])
            if got != want:
                bad.append("%s: %s for %s: the docs say %r, the code %r"
                           % (prov_md, label, prov, cell, want))
    for b in bad:
        print(b)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
