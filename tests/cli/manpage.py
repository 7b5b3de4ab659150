#!/usr/bin/env python3
# The command-line contract of kmscrypt and kmscryptd against their man pages
# (used by tests/cli/contract.sh).  Prints "ok - ..." / "FAIL - ..." lines.
#
#   manpage.py kmscrypt PROGRAM MANDIR
#   manpage.py kmscryptd PROGRAM MANDIR
#   manpage.py fields MANDIR "COMMAND WORDS" FILE
#   manpage.py helper PROGRAM PAGE
#
# For kmscrypt, every command and subcommand that `--help` lists: its
# `--help` exits 0 with "Usage: kmscrypt SYNOPSIS", SYNOPSIS is the first
# line of an entry of kmscrypt(8) or kmscrypt-reencrypt(8) (as rendered), every
# option of its help is mentioned in that entry (or in the introduction of its
# section), and every option the entry lists as an item (a line starting with
# "-") or names in the synopsis is one the command accepts; its synopsis ends
# in [--json], and its --help names --json, exactly when its parser takes
# --json (every command but help).  The global options
# of `--help` are the items of GLOBAL OPTIONS and back.  For kmscryptd, the
# options of `--help` are the items of OPTIONS and back.
#
# fields: FILE (the output of `kmscrypt --json COMMAND WORDS ...`) is one JSON
# document, and every member name in it is named by the entry of the command
# in kmscrypt(8) (kmscrypt-reencrypt(8) for reencrypt); members of members
# may be named anywhere in that page.  The members of data (an encryption
# context, audit records, LUKS2 keyslots and tokens) are not member names.
import json
import os
import re
import subprocess
import sys

results = []


def check(name, cond, detail=""):
    results.append(cond)
    print(("ok - " if cond else "FAIL - ") + name + ("" if cond or not detail else ": " + detail))


def render(path):
    """The man page as text: wide lines (no wrapping), no tabs, no overstrike."""
    out = subprocess.run(["nroff", "-man", "-Tascii", "-rLL=400n", "-rHY=0", path], capture_output=True, text=True,
                         check=True).stdout
    out = subprocess.run(["col", "-bx"], input=out, capture_output=True, text=True, check=True).stdout
    return out.splitlines()


def norm(s):
    return " ".join(s.split())


def options_in(text):
    return set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*|-[a-z])(?![\w-])", text))


def run_help(prog, args):
    p = subprocess.run([prog] + args + ["--help"], capture_output=True, text=True,
                       env=dict(os.environ, KMSCRYPT_CONFIG="/nonexistent/kmscrypt.conf"))
    return p.returncode, p.stdout, p.stderr


def parse_help(out):
    """Synopsis (joined), {section: [lines]} of a kmscrypt --help."""
    lines = out.splitlines()
    syn = []
    for i, l in enumerate(lines):
        if i == 0:
            syn.append(l[len("Usage: kmscrypt"):])
        elif l.startswith(" ") and l.strip():
            syn.append(l)
        else:
            break
    sections, cur = {}, None
    for l in lines:
        if re.match(r"^[A-Z][a-z ]*:$", l):
            cur = l[:-1]
            sections[cur] = []
        elif cur and l.startswith("  "):
            sections[cur].append(l)
    return norm(" ".join(syn)), sections


def help_options(lines):
    opts = set()
    for l in lines:
        m = re.match(r"^\s+(?:-(\w), )?--([a-z][a-z0-9-]*)", l)
        if m:
            opts.add("--" + m.group(2))
            if m.group(1):
                opts.add("-" + m.group(1))
    return opts


def section(lines, title):
    """Lines of a section (between its heading and the next one)."""
    out, inside = [], False
    for l in lines:
        if l and not l[0].isspace():
            inside = l.strip() == title
            continue
        if inside:
            out.append(l)
    return out


def item_tags(lines, indent):
    """Option items: lines indented exactly `indent` that start with '-'."""
    return [l.strip() for l in lines if len(l) - len(l.lstrip()) == indent and l.strip().startswith("-")]


def indent(line):
    return len(line) - len(line.lstrip()) if line.strip() else -1


def find_entry(pages, syn):
    """The man page entry whose first line is syn, and the introduction of its section (lines at indent 7
    before it).  An entry ends at the next line indented 7 or less.  A page of its own (SYNOPSIS
    "kmscrypt SYN") has its OPTIONS section as its entry."""
    for lines in pages:
        for i, l in enumerate(lines):
            if indent(l) != 7:
                continue
            text = l[7:]
            own = norm(text) == "kmscrypt " + syn
            if not own and norm(text) != syn and not (text.startswith(syn + "  ") and norm(text[:len(syn)]) == syn):
                continue
            if own:
                return [l] + section(lines, "OPTIONS"), []
            end = i + 1
            while end < len(lines) and (indent(lines[end]) == -1 or indent(lines[end]) > 7):
                end += 1
            head = max(j for j in range(i) if indent(lines[j]) == 0)
            return lines[i:end], [x for x in lines[head + 1:i] if indent(x) == 7]
    return None, None


def kmscrypt(prog, mandir):
    pages = [render(os.path.join(mandir, "kmscrypt.8")), render(os.path.join(mandir, "kmscrypt-reencrypt.8"))]

    rc, out, err = run_help(prog, [])
    top_syn, top = parse_help(out)
    check("kmscrypt --help exits 0", rc == 0 and not err, err)
    man_syn = norm(" ".join(section(pages[0], "SYNOPSIS")))
    check("kmscrypt --help synopsis is the SYNOPSIS of kmscrypt(8)", "kmscrypt " + top_syn == man_syn,
          "help '%s', man '%s'" % (top_syn, man_syn))
    glob = help_options(top.get("Global options", [])) | help_options(top.get("Options", []))
    man_glob = set()
    for tag in item_tags(section(pages[0], "GLOBAL OPTIONS"), 7):
        man_glob |= options_in(tag)
    check("global options of --help are those of GLOBAL OPTIONS", glob == man_glob,
          "only in --help: %s; only in the man page: %s" % (sorted(glob - man_glob), sorted(man_glob - glob)))

    commands = []
    for l in top.get("Commands", []):
        name = l.split()[0]
        rc, out, err = run_help(prog, [name])
        _, sub = parse_help(out)
        if "Commands" in sub:
            check("kmscrypt %s --help exits 0" % name, rc == 0 and not err, err)
            commands += [[name, s.split()[0]] for s in sub["Commands"]]
        else:
            commands.append([name])

    for cmd in commands:
        what = "kmscrypt " + " ".join(cmd)
        rc, out, err = run_help(prog, cmd)
        check(what + " --help exits 0, nothing on stderr", rc == 0 and not err, "exit %d, %s" % (rc, err))
        syn, sec = parse_help(out)
        json_taken(prog, cmd, what, syn, out)
        accepted = help_options(sec.get("Options", [])) | glob | {"--help", "-h"}
        region, intro = find_entry(pages, syn)
        check(what + ": its synopsis '%s' is an entry of the man page" % syn, region is not None)
        if region is None:
            continue
        documented = options_in(" ".join(region + intro))
        missing = help_options(sec.get("Options", [])) - documented
        check(what + ": the man page documents every option it accepts", not missing, "not documented: %s" % sorted(missing))
        listed = options_in(syn)
        for tag in item_tags(region[1:], 14) + item_tags(region[1:], 7):
            listed |= options_in(tag)
        extra = listed - accepted
        check(what + ": it accepts every option its entry lists", not extra, "not accepted: %s" % sorted(extra))


def json_taken(prog, cmd, what, syn, out):
    """Whether the command takes --json, asked of its option parser (an unknown option after --json
    is the first error when --json is one of its options), against its --help: the synopsis ends
    in [--json], and --json is listed, exactly then."""
    p = subprocess.run([prog] + cmd + ["--json", "--no-such-option"], capture_output=True, text=True,
                       env=dict(os.environ, KMSCRYPT_CONFIG="/nonexistent/kmscrypt.conf"))
    takes = "unknown option --no-such-option " in p.stderr
    check(what + ": --json is taken or refused, a usage error after it is reported",
          p.returncode == 2 and takes != ("unknown option --json " in p.stderr), p.stderr)
    check(what + ": its synopsis ends in [--json] exactly when it takes --json",
          syn.endswith(" [--json]") == takes and syn.count("--json") == (1 if takes else 0),
          "synopsis '%s', %s --json" % (syn, "takes" if takes else "refuses"))
    check(what + ": its --help names --json exactly when it takes --json", ("--json" in out) == takes,
          "takes --json" if takes else "refuses --json")


def kmscryptd(prog, mandir):
    page = render(os.path.join(mandir, "kmscryptd.8"))
    p = subprocess.run([prog, "--help"], capture_output=True, text=True)
    check("kmscryptd --help exits 0, nothing on stderr", p.returncode == 0 and not p.stderr, p.stderr)
    first = p.stdout.splitlines()[0]
    man_syn = norm(" ".join(section(page, "SYNOPSIS")))
    check("kmscryptd --help synopsis is the SYNOPSIS of kmscryptd(8)", first == "Usage: " + man_syn,
          "help '%s', man '%s'" % (first, man_syn))
    accepted = help_options([l for l in p.stdout.splitlines() if re.match(r"^\s+-", l)])
    man = set()
    for tag in item_tags(section(page, "OPTIONS"), 7):
        man |= options_in(tag)
    check("kmscryptd: the options of --help are the items of OPTIONS", accepted == man,
          "only in --help: %s; only in the man page: %s" % (sorted(accepted - man), sorted(man - accepted)))


def helper(prog, page_path):
    """A helper program (kmscrypt-hotplug, kmscrypt-generator) against its page: the Usage lines of --help
    are the SYNOPSIS lines that run it (the directory dropped), its options the items of OPTIONS; prints
    the statuses EXIT STATUS lists for the caller to exercise."""
    page = render(page_path)
    name = os.path.basename(prog)
    p = subprocess.run([prog, "--help"], capture_output=True, text=True)
    check(name + " --help exits 0, nothing on stderr", p.returncode == 0 and not p.stderr, p.stderr)
    lines = p.stdout.splitlines()
    usage = []
    for i, l in enumerate(lines):
        if i == 0 and l.startswith("Usage: "):
            usage.append(norm(l[len("Usage: "):]))
        elif i > 0 and l.startswith(" ") and l.strip():
            usage.append(norm(l))
        else:
            break
    man = [re.sub(r"^\S*/", "", norm(l)) for l in section(page, "SYNOPSIS") if l.strip()]
    man = [l for l in man if l.split()[0] == name]
    check(name + " --help: its Usage lines are the SYNOPSIS lines that run it", usage and usage == man,
          "help %s, man %s" % (usage, man))
    accepted = help_options([l for l in lines if re.match(r"^\s+-", l)])
    documented = set()
    for tag in item_tags(section(page, "OPTIONS"), 7):
        documented |= options_in(tag)
    check(name + ": the options of --help are the items of OPTIONS", accepted and accepted == documented,
          "only in --help: %s; only in the man page: %s" % (sorted(accepted - documented), sorted(documented - accepted)))
    statuses = [m.group(1) for m in (re.match(r"^ {7}(\d+)(\s|$)", l) for l in section(page, "EXIT STATUS")) if m]
    check(name + ": EXIT STATUS lists its statuses as items", len(statuses) >= 3, str(statuses))
    print("statuses: " + " ".join(statuses))


DATA = {"EncryptionContext", "context", "Records"}


def member_names(value, depth=0):
    """(name, depth) of every member of value, not descending into DATA."""
    if isinstance(value, list):
        for v in value:
            yield from member_names(v, depth)
    elif isinstance(value, dict):
        for k, v in value.items():
            yield k, depth
            if k not in DATA:
                yield from member_names(v, depth + 1)


def fields(mandir, words, path):
    what = "kmscrypt --json " + words
    try:
        doc = json.load(open(path))
    except ValueError as e:
        check(what + ": one JSON document on stdout", False, str(e))
        return
    check(what + ": one JSON document on stdout", True)
    if words.split()[0] == "reencrypt":
        page = render(os.path.join(mandir, "kmscrypt-reencrypt.8"))
        entry = page
    else:
        page = render(os.path.join(mandir, "kmscrypt.8"))
        entry = None
        for i, l in enumerate(page):
            if indent(l) == 7 and (l[7:] + " ").startswith(words + " "):
                end = i + 1
                while end < len(page) and indent(page[end]) == 7:     # entries that share a body
                    end += 1
                while end < len(page) and (indent(page[end]) == -1 or indent(page[end]) > 7):
                    end += 1
                entry = page[i:end]
                break
    check(what + ": the command has an entry in the man page", entry is not None)
    if entry is None:
        return
    in_entry = set(re.findall(r"[A-Za-z_]+", " ".join(entry)))
    in_page = set(re.findall(r"[A-Za-z_]+", " ".join(page)))
    names = set(member_names(doc))
    missing = sorted(n for n, d in names if n not in (in_entry if d == 0 else in_page))
    check(what + ": the man page names its %d members" % len({n for n, _ in names}), not missing,
          "not named: %s" % missing)
    documented = documented_members(entry)
    if documented is not None:
        emitted = {n for n, _ in names}
        absent = sorted(documented - emitted - CONDITIONAL)
        check(what + ": it has the %d members its entry lists after \"JSON:\"" % len(documented), not absent,
              "absent: %s" % absent)


# Members the man page lists that only some outcomes have: a deletion date only when pending
# deletion, the bad line and reason only when verify fails, Header only with --header, the
# per-device details of config check and key usage only for devices found, a mapping's name only
# when attached.  json.sh's runs do not reach every such outcome.
CONDITIONAL = {"DeletionDate", "BadLine", "Reason", "Header", "Check", "Detail", "Device", "Name", "Error",
               "Mapping"}


def documented_members(entry):
    """The member names an entry lists after "JSON:", up to the end of that clause (";" or "."): the
    CamelCase words (KeyMetadata, Source); None when the clause names none (an array of names) or
    the entry has no such list."""
    text = " ".join(entry)
    m = re.search(r"JSON:(.*?)(?:;|\.(?:\s|$))", text)
    if not m:
        return None
    words = set(re.findall(r"\b[A-Z][a-z]+(?:[A-Z][a-z]*)*\b", m.group(1)))
    words.discard("JSON")
    return words or None


if sys.argv[1] == "fields":
    fields(sys.argv[2], sys.argv[3], sys.argv[4])
elif sys.argv[1] == "helper":
    helper(sys.argv[2], sys.argv[3])
else:
    {"kmscrypt": kmscrypt, "kmscryptd": kmscryptd}[sys.argv[1]](sys.argv[2], sys.argv[3])
sys.exit(0 if all(results) else 1)
