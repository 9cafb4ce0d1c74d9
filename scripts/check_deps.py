#!/usr/bin/env python3
"""Proves from a finished build that scripts/install_deps.sh installs everything the build used.

Every file the build read must belong to the project (source or build tree), to the CUDA toolkit tree,
or to a Debian package that a fresh machine gets from `apt-get install --no-install-recommends` of the
install list: a listed package, or one reached from it through Depends/Pre-Depends only, or a package
every Debian system has (Essential or Priority: required, with their own Depends). The files are
  - every header the compilers read: `ninja -t deps` (their dependency files),
  - every file the linker read: link-deps/<target>.d (ld --dependency-file, set in CMakeLists.txt),
  - every CMake file the configure step loaded (package configs, find modules): the inputs of
    build.ninja's re-run rule,
  - every file the configure step found: FILEPATH entries of CMakeCache.txt (compilers, libraries).
A symlink that no package owns (update-alternatives links, /usr/local/include -> the CUDA toolkit) is
fine when the file it leads to is. Exit 0: complete; 1: one line per missing package naming a file
that needs it; 77: not a Debian system (nothing to check against); 2: bad usage or an unusable build.

usage: check_deps.py BUILD_DIR [--omit PKG]... [--expect-missing]
  --omit PKG         check as if PKG were not in the install list (repeatable)
  --expect-missing   succeed only if the check fails naming every --omit package (the self-test)
Run by the test suite (CTest entries deps_install_list_complete, deps_check_catches_a_missing_package).
"""
import argparse
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DPKG = "/var/lib/dpkg"


def die(msg, code=2):
    print(f"check_deps: {msg}", file=sys.stderr)
    sys.exit(code)


def install_list(omit):
    out = subprocess.run(["bash", os.path.join(ROOT, "scripts/install_deps.sh"), "--list"], capture_output=True,
                         universal_newlines=True)
    if out.returncode != 0:
        die("scripts/install_deps.sh --list failed: " + out.stderr.strip())
    pkgs = [p.strip() for p in out.stdout.split() if p.strip()]
    for p in omit:
        if p not in pkgs:
            die(f"--omit {p}: not in the install list of scripts/install_deps.sh")
    return [p for p in pkgs if p not in omit]


# ------------------------------------------------------------------ the dpkg database
def read_status():
    """Installed packages: name -> {'depends': [[alt, ...], ...], 'provides': [...], 'base': bool}."""
    pkgs = {}
    with open(os.path.join(DPKG, "status"), encoding="utf-8", errors="replace") as f:
        for para in f.read().split("\n\n"):
            fields, key = {}, None
            for line in para.split("\n"):
                if line.startswith((" ", "\t")) and key:
                    fields[key] += " " + line.strip()
                elif ":" in line:
                    key, _, val = line.partition(":")
                    fields[key] = val.strip()
            name = fields.get("Package")
            if not name or "install ok installed" not in fields.get("Status", ""):
                continue
            entry = pkgs.setdefault(name, {"depends": [], "provides": [], "base": False})
            for k in ("Pre-Depends", "Depends"):
                for group in fields.get(k, "").split(","):
                    alts = [re.split(r"[\s(:]", a.strip())[0] for a in group.split("|") if a.strip()]
                    if alts:
                        entry["depends"].append(alts)
            entry["provides"] += [re.split(r"[\s(]", p.strip())[0] for p in fields.get("Provides", "").split(",") if p.strip()]
            if fields.get("Essential") == "yes" or fields.get("Priority") == "required":
                entry["base"] = True
    return pkgs


def closure(roots, pkgs):
    """What apt would install for `roots` with --no-install-recommends (as installed here): each
    Depends/Pre-Depends group is satisfied by its first alternative that is installed, by name or
    through an installed package's Provides."""
    providers = {}
    for name, e in pkgs.items():
        for v in e["provides"]:
            providers.setdefault(v, []).append(name)
    seen, pending = set(), [r for r in roots if r in pkgs]
    while pending:
        p = pending.pop()
        if p in seen:
            continue
        seen.add(p)
        for alts in pkgs[p]["depends"]:
            for a in alts:
                if a in pkgs:
                    pending.append(a)
                    break
                if a in providers:
                    pending += providers[a]
                    break
    return seen


def read_owners():
    """Path -> set of packages, from /var/lib/dpkg/info/*.list."""
    owners = {}
    info = os.path.join(DPKG, "info")
    for fn in os.listdir(info):
        if not fn.endswith(".list"):
            continue
        pkg = fn[:-5].split(":")[0]
        with open(os.path.join(info, fn), encoding="utf-8", errors="replace") as f:
            for line in f:
                owners.setdefault(line.rstrip("\n"), set()).add(pkg)
    return owners


def owner_of(path, owners):
    """Packages owning `path`, trying the spellings dpkg may have recorded (merged /usr, symlinked
    parent directories)."""
    cands = {path, os.path.join(os.path.realpath(os.path.dirname(path)), os.path.basename(path))}
    for c in list(cands):
        for a, b in (("/usr/lib/", "/lib/"), ("/usr/bin/", "/bin/"), ("/usr/sbin/", "/sbin/"), ("/usr/lib64/", "/lib64/")):
            if c.startswith(a):
                cands.add(b + c[len(a):])
            elif c.startswith(b):
                cands.add(a + c[len(b):])
    found = set()
    for c in cands:
        found |= owners.get(c, set())
    return found


def chain(path):
    """The path, every symlink it goes through, and the file it finally names."""
    out, p = [path], path
    for _ in range(40):
        if not os.path.islink(p):
            break
        p = os.path.normpath(os.path.join(os.path.dirname(p), os.readlink(p)))
        out.append(p)
    real = os.path.realpath(path)
    if real not in out:
        out.append(real)
    return out


# ------------------------------------------------------------------ what the build used
def used_files(build):
    """(absolute path, why) for every file the build read."""
    used = {}

    def add(path, why):
        if not os.path.isabs(path):
            path = os.path.join(build, path)
        path = os.path.normpath(path)
        if os.path.exists(path):
            used.setdefault(path, why)

    deps = subprocess.run(["ninja", "-C", build, "-t", "deps"], capture_output=True, universal_newlines=True)
    if deps.returncode != 0:
        die(f"`ninja -C {build} -t deps` failed: {deps.stderr.strip()}")
    source = None
    for line in deps.stdout.split("\n"):
        if not line.strip():
            source = None
            continue
        if not line.startswith(" "):
            source = "__first__"
            continue
        f = line.strip()
        if source == "__first__":  # the first dependency of an object is its source file
            source = os.path.relpath(os.path.normpath(f if os.path.isabs(f) else os.path.join(build, f)), ROOT)
        add(f, f"read when compiling {source}")

    link_dir = os.path.join(build, "link-deps")
    ds = [d for d in os.listdir(link_dir) if d.endswith(".d")] if os.path.isdir(link_dir) else []
    if not ds:
        die(f"{link_dir} holds no linker dependency files: build with the project's CMakeLists.txt (ld --dependency-file)")
    for d in sorted(ds):
        with open(os.path.join(link_dir, d)) as f:
            text = f.read().replace("\\\n", " ")
        for line in text.split("\n"):
            if ":" not in line:
                continue
            target, _, files = line.partition(": ")
            for f in files.split():
                t = target.strip()
                add(f, f"linked into {os.path.relpath(t, build) if os.path.isabs(t) else t}")

    with open(os.path.join(build, "build.ninja")) as f:
        ninja = f.read().replace("$\n", " ")
    m = re.search(r"^build build\.ninja: RERUN_CMAKE [^|\n]*\|([^\n]*)", ninja, re.M)
    if not m:
        die(f"{build}/build.ninja has no re-run rule: not a CMake/Ninja build folder")
    for f in m.group(1).split():
        add(f.replace("$ ", " "), "loaded by the CMake configure step")

    with open(os.path.join(build, "CMakeCache.txt")) as f:
        for line in f:
            m = re.match(r"^([A-Za-z0-9_.+-]+):FILEPATH=(.*)$", line.rstrip("\n"))
            if m and m.group(2).startswith("/"):
                add(m.group(2), f"found by the configure step (CMakeCache.txt {m.group(1)})")
    return used


def cuda_roots(build):
    roots = {"/usr/local/cuda", os.path.realpath("/usr/local/cuda")}
    with open(os.path.join(build, "CMakeCache.txt")) as f:
        for line in f:
            m = re.match(r"^CUDAToolkit_BIN_DIR:\w+=(/.*)$", line.strip())
            if m:
                roots.add(os.path.realpath(os.path.dirname(m.group(1))))
    return {r for r in roots if os.path.isdir(r) and r != "/"}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("build")
    ap.add_argument("--omit", action="append", default=[])
    ap.add_argument("--expect-missing", action="store_true")
    args = ap.parse_args()
    build = os.path.realpath(args.build)
    if not os.path.isfile(os.path.join(build, "CMakeCache.txt")):
        die(f"{args.build}: not a configured build folder (no CMakeCache.txt)")
    if not os.path.isfile(os.path.join(DPKG, "status")):
        print("check_deps: not a Debian system (no dpkg database): nothing to check against")
        sys.exit(77)

    listed = install_list(args.omit)
    pkgs = read_status()
    not_installed = [p for p in listed if p not in pkgs]
    if not_installed:
        die("listed in scripts/install_deps.sh but not installed here: " + " ".join(not_installed) +
            " (run scripts/install_deps.sh first)")
    allowed = closure(listed, pkgs) | closure([p for p, e in pkgs.items() if e["base"]], pkgs)
    owners = read_owners()
    inside = [os.path.realpath(ROOT), build] + sorted(cuda_roots(build))

    missing, unowned, used_pkgs = {}, {}, set()
    files = used_files(build)
    for path, why in sorted(files.items()):
        for p in chain(path):
            where = os.path.join(os.path.realpath(os.path.dirname(p)), os.path.basename(p))
            if any(q == r or q.startswith(r + "/") for q in (p, where) for r in inside):
                continue
            own = owner_of(p, owners)
            if not own:
                if not os.path.islink(p):
                    unowned.setdefault(p, why)
                continue
            used_pkgs |= own
            if not own & allowed:
                for o in own:
                    missing.setdefault(o, []).append((p, why))

    problems = []
    for pkg in sorted(missing):
        (p, why), more = missing[pkg][0], len({q for q, _ in missing[pkg]}) - 1
        problems.append(f"  {pkg}: needed by {p} ({why})" + (f" and {more} more file(s)" if more else ""))
    for p, why in sorted(unowned.items()):
        problems.append(f"  {p} ({why}) belongs to no Debian package and lies outside the project and the CUDA toolkit")

    if args.expect_missing:
        named = [p for p in args.omit if p in missing]
        if problems:
            print("\n".join(problems))
        if not args.omit or len(named) != len(args.omit):
            die(f"self-test FAILED: with {' '.join(args.omit) or '(nothing)'} left out of the install list the check "
                f"named {' '.join(named) or 'none of them'}", 1)
        print(f"check_deps: self-test ok: leaving {' '.join(args.omit)} out of the install list is caught")
        return 0
    if problems:
        print(f"check_deps: FAILED for {args.build}: the build uses files that scripts/install_deps.sh does not "
              "install (neither a listed package nor a Depends/Pre-Depends of one):")
        print("\n".join(problems))
        print("check_deps: add the package(s) above to the list in scripts/install_deps.sh")
        return 1
    print(f"check_deps: ok: {len(files)} files used by {args.build} come from the project, the CUDA toolkit or "
          f"{len(used_pkgs)} packages that scripts/install_deps.sh installs ({len(listed)} listed, "
          f"{len(allowed)} with Depends and the base system)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
