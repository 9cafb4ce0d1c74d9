#!/usr/bin/env python3
"""Checks that portable binaries use AVX-512 only where the run-time dispatch guards it.

In the portable build every function is compiled for the baseline (x86-64-v3) except the AVX-512
variants of the CPU kernels, which live in namespace engine::kernels::isa_avx512 and are called only
on CPUs that have AVX-512 (kernels/cpu/cpu_isa.h). This disassembles each binary and fails, naming the
function, if any other function contains an EVEX-encoded (AVX-512) instruction; that would be code the
linker took from a variant (an inline function compiled for AVX-512, say) and that crashes CPUs without
AVX-512. It also fails if no isa_avx512 function contains one (the variants would not be real).

usage: check_isa_symbols.py BINARY...    (run by CTest: cpu_isa_portable_binaries)
"""
import re
import subprocess
import sys

FUNC = re.compile(r"^[0-9a-f]+ <(.*)>:$")
# objdump -d -w: "  401a2c:\t62 f1 7c 48 10 04 07 \tvmovups (%rdi),%zmm0". In 64-bit mode a leading 0x62
# (after an optional 0x67 address-size prefix) is always the EVEX prefix.
INSN = re.compile(r"^\s*[0-9a-f]+:\t((?:[0-9a-f]{2} )+)\s*\t(.*)$")


def scan(binary):
    out = subprocess.run(["objdump", "-d", "-w", "-C", binary], capture_output=True, universal_newlines=True)
    if out.returncode != 0:
        sys.exit(f"check_isa_symbols: objdump -d {binary} failed: {out.stderr.strip()}")
    bad, variants, func = {}, set(), None
    for line in out.stdout.split("\n"):
        m = FUNC.match(line)
        if m:
            func = m.group(1)
            continue
        m = INSN.match(line)
        if not m or func is None:
            continue
        b = m.group(1).split()
        if b[0] == "62" or (b[0] == "67" and len(b) > 1 and b[1] == "62"):
            if "isa_avx512::" in func:
                variants.add(func)
            else:
                bad.setdefault(func, m.group(2).strip())
    return bad, variants


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    status = 0
    for binary in sys.argv[1:]:
        bad, variants = scan(binary)
        for func, insn in sorted(bad.items()):
            print(f"check_isa_symbols: {binary}: {func} uses AVX-512 ({insn}) outside the dispatched kernels")
            status = 1
        if not variants:
            print(f"check_isa_symbols: {binary}: no isa_avx512 kernel contains an AVX-512 instruction")
            status = 1
        if not bad and variants:
            print(f"check_isa_symbols: {binary}: ok: AVX-512 only in {len(variants)} functions of the isa_avx512 kernels")
    return status


if __name__ == "__main__":
    sys.exit(main())
