#!/usr/bin/env python3
"""Line coverage of the hand-written kernels, from a build configured with -DENGINE_COVERAGE=ON
after its tests ran (docs/TESTING.md, "Kernel coverage").

usage: kernel_coverage.py BUILD_DIR SOURCE_ROOT [--gcov PROGRAM]

Runs gcov (the one matching the build's compiler) on every instrumented object of the build (.gcno;
its .gcda holds the counts, absent: nothing of it ran) and aggregates per source file under
kernels/cuda and kernels/cpu (and kernels/*.h, listed but not in the summary). A line counts once:
a .inc compiled in several instruction-set variants, a header included by several objects, a
template instantiated several times is covered if any instance ran.

Prints exactly one line,
  kernel coverage: NN.N % of kernels/cuda lines, MM.M % of kernels/cpu lines
and writes BUILD_DIR/kernel_coverage.txt: per file its lines, covered lines, percentage and the
uncovered line ranges, then the regions that are not measured: preprocessor groups of the kernel
sources that no instrumented object compiles (code only nvcc sees, non-x86 fallbacks), found by
running each instrumented object's compile command with -E.

Exit 0 whatever the numbers; 1 when it cannot measure (no instrumented objects, gcov missing, gcov
of another compiler version, unreadable output).
"""
import argparse
import concurrent.futures
import json
import os
import re
import shlex
import shutil
import subprocess
import sys

GROUPS = ("kernels/cuda", "kernels/cpu")  # the summary line's two numbers
EXTRA = "kernels"                         # kernels/*.h: listed in the table only
SOURCE_EXT = (".cu", ".cuh", ".cpp", ".h", ".inc")


def fail(msg):
    print(f"kernel_coverage: error: {msg}", file=sys.stderr)
    sys.exit(1)


def cmake_cache(build):
    path = os.path.join(build, "CMakeCache.txt")
    if not os.path.exists(path):
        fail(f"{path} not found: not a CMake build directory")
    cache = {}
    with open(path) as f:
        for line in f:
            m = re.match(r"^([A-Za-z0-9_]+):[A-Z]+=(.*)$", line.rstrip("\n"))
            if m:
                cache[m.group(1)] = m.group(2)
    return cache


def major_version(program):
    try:
        out = subprocess.run([program, "-dumpversion"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        fail(f"cannot run {program} -dumpversion: {e}")
    return out.strip().split(".")[0]


def find_gcov(cache, requested):
    compiler = cache.get("CMAKE_CXX_COMPILER", "")
    if cache.get("CMAKE_CXX_COMPILER_ID", "GNU") not in ("GNU", ""):
        fail(f"the build's compiler is {cache.get('CMAKE_CXX_COMPILER_ID')}, not gcc: no gcov data")
    want = major_version(compiler) if compiler else None
    if requested:
        candidates = [requested]
    else:
        candidates = []
        if want:
            candidates.append(os.path.join(os.path.dirname(os.path.realpath(compiler)), f"gcov-{want}"))
            candidates.append(f"gcov-{want}")
        candidates.append("gcov")
    for c in candidates:
        path = c if os.path.isabs(c) and os.access(c, os.X_OK) else shutil.which(c)
        if not path:
            continue
        out = subprocess.run([path, "--version"], capture_output=True, text=True).stdout
        m = re.search(r"\) (\d+)\.\d+", out.splitlines()[0] if out else "")
        if want and (not m or m.group(1) != want):
            fail(f"{path} is gcov {m.group(1) if m else '?'}, the build's compiler {compiler} is gcc {want}")
        return path
    fail(f"no gcov found (tried {', '.join(candidates)}); Debian's gcc package provides it")


def run_gcov(gcov, gcno):
    """gcov's JSON for one object (counts from its .gcda, or all zero without one)."""
    objdir = os.path.dirname(gcno)
    proc = subprocess.run([gcov, "--json-format", "--stdout", "--object-directory", objdir, gcno],
                          capture_output=True, text=True, cwd=objdir)
    if proc.returncode != 0:
        fail(f"gcov failed on {gcno}: {proc.stderr.strip()}")
    docs = []
    for line in proc.stdout.splitlines():
        line = line.strip()
        if line:
            try:
                docs.append(json.loads(line))
            except json.JSONDecodeError as e:
                fail(f"gcov output for {gcno} is not JSON ({e})")
    if not docs:
        fail(f"gcov printed nothing for {gcno}: {proc.stderr.strip()}")
    return docs


def rel_to_root(path, cwd, root):
    full = os.path.realpath(os.path.join(cwd, path))
    rel = os.path.relpath(full, root)
    return None if rel.startswith("..") else rel


def group_of(rel):
    for g in GROUPS:
        if rel.startswith(g + "/"):
            return g
    if os.path.dirname(rel) == EXTRA:
        return EXTRA
    return None


# ------------------------------------------------------------------------------- not measured
def strip_comments(lines):
    """Per line: its text without comments (block comments may span lines), for classifying lines."""
    out, in_block = [], False
    for text in lines:
        res, i = [], 0
        while i < len(text):
            if in_block:
                j = text.find("*/", i)
                if j < 0:
                    i = len(text)
                else:
                    in_block, i = False, j + 2
            elif text.startswith("/*", i):
                in_block, i = True, i + 2
            elif text.startswith("//", i):
                break
            elif text[i] in "\"'":
                q, j = text[i], i + 1
                while j < len(text) and text[j] != q:
                    j += 2 if text[j] == "\\" else 1
                res.append(text[i:j + 1]); i = j + 1
            else:
                res.append(text[i]); i += 1
        out.append("".join(res))
    return out


def preprocessed_lines(command, directory):
    """Runs a compile command with -E; returns {absolute file: set of lines that produced tokens}."""
    args = shlex.split(command)
    while args and os.path.basename(args[0]) in ("ccache", "sccache"):
        args = args[1:]
    keep, skip = [], False
    for a in args[1:]:
        if skip:
            skip = False
            continue
        if a in ("-o", "-MF", "-MT", "-MQ"):
            skip = True
            continue
        if a in ("-c", "-MD", "-MMD", "--coverage", "-fprofile-update=atomic") or a.startswith("-fprofile-update"):
            continue
        keep.append(a)
    proc = subprocess.run([args[0], "-E", *keep], capture_output=True, text=True, cwd=directory)
    if proc.returncode != 0:
        fail(f"preprocessing failed ({args[0]} -E ...): {proc.stderr.strip()[:400]}")
    emitted, cur, line = {}, None, 0
    marker = re.compile(r'^# (\d+) "((?:[^"\\]|\\.)*)"')
    for text in proc.stdout.split("\n"):
        m = marker.match(text)
        if m:
            line, cur = int(m.group(1)), os.path.realpath(os.path.join(directory, m.group(2)))
            continue
        if cur is not None and text.strip():
            emitted.setdefault(cur, set()).add(line)
        line += 1
    return emitted


def unmeasured_groups(path, emitted):
    """Preprocessor groups (#if/#elif/#else bodies) of a file with code of which no line was compiled.
    Returns [(first line, last line, directive text)], outermost groups only."""
    with open(path, errors="replace") as f:
        raw = f.read().split("\n")
    code = strip_comments(raw)
    # logical lines: a directive continued with backslashes spans several physical lines
    is_directive, directive_text = {}, {}
    n = len(raw)
    i = 0
    while i < n:
        start = i
        text = code[i]
        while text.rstrip().endswith("\\") and i + 1 < n:
            i += 1
            text = text.rstrip()[:-1] + " " + code[i]
        if text.lstrip().startswith("#"):
            for k in range(start, i + 1):
                is_directive[k + 1] = True
            directive_text[start + 1] = " ".join(text.split())
        i += 1
    found = []
    stack = []  # each: [directive text of the group, first body line, has code, has compiled line, if text]

    def close(end):
        g = stack.pop()
        text, first, has_code, compiled = g[0], g[1], g[2], g[3]
        if has_code and not compiled:
            found.append((first, end, text))
        if stack:
            stack[-1][2] |= has_code
            stack[-1][3] |= compiled

    for ln in range(1, n + 1):
        d = directive_text.get(ln)
        if d is not None:
            m = re.match(r"#\s*(\w+)", d)
            kw = m.group(1) if m else ""
            if kw in ("if", "ifdef", "ifndef"):
                stack.append([d, ln + 1, False, False, d])
            elif kw in ("elif", "else") and stack:
                head = stack[-1][4]
                close(ln - 1)
                label = d if kw == "elif" else f"#else of {head}"
                stack.append([label, ln + 1, False, False, head])
            elif kw == "endif" and stack:
                close(ln - 1)
            continue
        if is_directive.get(ln) or not code[ln - 1].strip() or not stack:
            continue
        stack[-1][2] = True
        if ln in emitted:
            stack[-1][3] = True
    # outermost only: drop groups inside a reported group
    found.sort()
    outer = []
    for g in found:
        if outer and g[0] >= outer[-1][0] and g[1] <= outer[-1][1]:
            continue
        outer.append(g)
    return outer


# ------------------------------------------------------------------------------- report
def ranges(lines, counted):
    """Uncovered lines as ranges; a gap of lines gcov does not count does not split a range."""
    out = []
    for ln in sorted(lines):
        if out and all(k not in counted for k in range(out[-1][1] + 1, ln)):
            out[-1][1] = ln
        else:
            out.append([ln, ln])
    return ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in out)


def pct(cov, tot):
    return 100.0 * cov / tot if tot else 100.0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("build")
    ap.add_argument("source_root")
    ap.add_argument("--gcov", help="gcov program (default: the one of the build's gcc version)")
    a = ap.parse_args()
    build, root = os.path.realpath(a.build), os.path.realpath(a.source_root)
    if not os.path.isdir(os.path.join(root, "kernels")):
        fail(f"{root} has no kernels/ folder: not the source root")
    cache = cmake_cache(build)
    if cache.get("ENGINE_COVERAGE", "OFF").upper() not in ("ON", "1", "TRUE", "YES"):
        fail(f"{build} was not configured with -DENGINE_COVERAGE=ON")
    gcov = find_gcov(cache, a.gcov)

    gcnos = []
    for d, _, files in os.walk(build):
        gcnos += [os.path.join(d, f) for f in files if f.endswith(".gcno")]
    if not gcnos:
        fail(f"no .gcno files under {build}: build it first (ENGINE_COVERAGE=ON)")
    if not any(f.endswith(".gcda") for _, _, fs in os.walk(build) for f in fs):
        fail(f"no .gcda files under {build}: run the tests first")

    counts = {}  # rel path -> {line: covered}
    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        for docs in pool.map(lambda g: run_gcov(gcov, g), sorted(gcnos)):
            for doc in docs:
                cwd = doc.get("current_working_directory", build)
                for fentry in doc.get("files", []):
                    rel = rel_to_root(fentry["file"], cwd, root)
                    if rel is None or group_of(rel) is None:
                        continue
                    per = counts.setdefault(rel, {})
                    for le in fentry.get("lines", []):
                        ln = le["line_number"]
                        per[ln] = per.get(ln, False) or le["count"] > 0
    if not any(group_of(r) in GROUPS for r in counts):
        fail("gcov reported no line of kernels/cuda or kernels/cpu: were the kernel sources instrumented?")

    # Not measured: preprocessor groups that no instrumented object compiles.
    ccpath = os.path.join(build, "compile_commands.json")
    if not os.path.exists(ccpath):
        fail(f"{ccpath} not found (CMAKE_EXPORT_COMPILE_COMMANDS)")
    with open(ccpath) as f:
        commands = [c for c in json.load(f) if "--coverage" in c.get("command", "")]
    if not commands:
        fail("compile_commands.json has no instrumented (--coverage) source")
    emitted = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        for e in pool.map(lambda c: preprocessed_lines(c["command"], c["directory"]), commands):
            for path, lines in e.items():
                emitted.setdefault(path, set()).update(lines)
    unmeasured = {}
    for path in sorted(emitted):
        rel = os.path.relpath(path, root)
        if rel.startswith("..") or group_of(rel) is None or not rel.endswith(SOURCE_EXT):
            continue
        regions = unmeasured_groups(path, emitted[path])
        if regions:
            unmeasured[rel] = regions

    # The table.
    totals = {g: [0, 0] for g in GROUPS + (EXTRA,)}
    rows = []
    for rel in sorted(counts, key=lambda r: (list(GROUPS + (EXTRA,)).index(group_of(r)), r)):
        per = counts[rel]
        if not per:
            continue
        tot, cov = len(per), sum(1 for v in per.values() if v)
        g = group_of(rel)
        totals[g][0] += tot; totals[g][1] += cov
        rows.append((rel, tot, cov, ranges([ln for ln, v in per.items() if not v], per)))
    width = max(len(r[0]) for r in rows) + 2
    out = [f"Kernel line coverage (gcov: {gcov}; build {os.path.basename(build)})", ""]
    out.append(f"{'file':<{width}}{'lines':>7}{'covered':>9}{'%':>8}  uncovered lines")
    group = None
    for rel, tot, cov, unc in rows:
        if group_of(rel) != group:
            if group is not None:
                t = totals[group]
                out.append(f"{group + '/ total':<{width}}{t[0]:>7}{t[1]:>9}{pct(t[1], t[0]):>8.1f}")
                out.append("")
            group = group_of(rel)
        out.append(f"{rel:<{width}}{tot:>7}{cov:>9}{pct(cov, tot):>8.1f}  {unc}")
    t = totals[group]
    out.append(f"{group + '/ total':<{width}}{t[0]:>7}{t[1]:>9}{pct(t[1], t[0]):>8.1f}")
    out.append("")
    out.append("Not measured: code that no instrumented object compiles (its lines are not counted above)")
    if not unmeasured:
        out.append("  (none)")
    for rel in sorted(unmeasured):
        for first, last, text in unmeasured[rel]:
            span = f"{first}" if first == last else f"{first}-{last}"
            out.append(f"  {rel}:{span}  {text}")
    summary = (f"kernel coverage: {pct(totals['kernels/cuda'][1], totals['kernels/cuda'][0]):.1f} % of kernels/cuda lines, "
               f"{pct(totals['kernels/cpu'][1], totals['kernels/cpu'][0]):.1f} % of kernels/cpu lines")
    out += ["", summary]
    with open(os.path.join(build, "kernel_coverage.txt"), "w") as f:
        f.write("\n".join(out) + "\n")
    print(summary)


if __name__ == "__main__":
    main()
