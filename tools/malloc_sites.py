#!/usr/bin/env python3
"""Names the allocation sites in one sampler step, from `atelier bench txt2img --malloc-backtraces`.

    atelier bench txt2img --model M.safetensors --size 128 --runs 1 --malloc-backtraces 2> bt.txt
    python3 tools/malloc_sites.py bt.txt .build/release/atelier [depth] [top]

Each "@@malloc" block in the file is one allocation call's backtrace (the malloc frame itself
dropped). Frames inside the executable are symbolised with llvm-symbolizer and demangled with
swift-demangle; the calls are counted by their first `depth` executable frames (default 2).
"""
import collections
import re
import subprocess
import sys


def main():
    path, exe = sys.argv[1], sys.argv[2]
    depth = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    top = int(sys.argv[4]) if len(sys.argv) > 4 else 30
    # the executable's unnamed frames: "<exe path>(+0x<offset>)[<address>]" (named ones are its
    # exported C symbols, malloc's own frame among them, and are skipped)
    frame = re.compile(r"^(\S*)\(\+0x([0-9a-f]+)\)")
    name_of_exe = exe.rsplit("/", 1)[-1]
    stacks = []
    for block in open(path, errors="replace").read().split("@@malloc\n")[1:]:
        offsets = []
        for line in block.splitlines():
            m = frame.match(line)
            if m and m.group(1).rsplit("/", 1)[-1] == name_of_exe:
                offsets.append(int(m.group(2), 16))
        stacks.append(offsets[:depth])
    offsets = sorted({o for s in stacks for o in s})
    if not offsets:
        print(f"{len(stacks)} allocation calls" + (" (none inside the executable)" if stacks else ""))
        return
    # return addresses point after the call: look up the byte before
    out = subprocess.run(["llvm-symbolizer", f"--obj={exe}", "--functions=linkage", "--no-inlines"]
                         + [hex(o - 1) for o in offsets], capture_output=True, text=True, check=True).stdout
    entries = [e.splitlines() for e in out.strip().split("\n\n")]
    mangled = [e[0] for e in entries]
    demangled = subprocess.run(["swift-demangle", "--simplified", "--compact"], input="\n".join(mangled),
                               capture_output=True, text=True, check=True).stdout.splitlines()
    name = {o: f"{d[:100]} ({e[1].rsplit('/', 1)[-1] if len(e) > 1 else '?'})"
            for o, d, e in zip(offsets, demangled, entries)}
    counts = collections.Counter(" <- ".join(name[o] for o in s) or "(outside the executable)" for s in stacks)
    print(f"{len(stacks)} allocation calls")
    for site, n in counts.most_common(top):
        print(f"{n:6d}  {site}")


if __name__ == "__main__":
    main()
