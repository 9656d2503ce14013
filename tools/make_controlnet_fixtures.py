#!/usr/bin/env python3
"""Make the committed ControlNet fixtures in Tests/Fixtures/controlnet/ (run by hand with the
reference venv; the Swift tests never run it):

    REF_VENV/bin/python tools/make_controlnet_fixtures.py [--ref PATH/TO/shared/ref]

With --ref, first runs the oracle's make_controlnet.py on the committed tiny checkpoint:

    REF_VENV/bin/python REF/make_controlnet.py --ckpt Tests/Fixtures/models/tiny-sd15.safetensors \
        --out Tests/Fixtures/controlnet/tiny-controlnet-canny.safetensors

  tiny-controlnet-canny.safetensors   random-weight tiny ControlNet, lllyasviel's single-file layout
                                      (338 float32 tensors, all `control_model.*`), seed 0
  tiny-controlnet-canny.yaml / .json  its cldm_v15-style config / diffusers config + sizes

(deterministic for torch 2.15: a second run gives byte-identical files). Then, from that file
(its sha256 is checked against SAFETENSORS_SHA256):

  tiny-controlnet-canny-pth.pth   the same 338 tensors (same names, values, dtype) written with
      torch.save (zip format, pickle protocol 2, torch 2.15), as lllyasviel ships
      control_v11p_sd15_canny.pth: a flat state dict whose keys keep the `control_model.` prefix
      (the v1.1 .pth files are the ControlLDM's `control_model.*` entries; loaders such as the
      extension strip the prefix). The top-level object is a collections.OrderedDict (what
      `state_dict()` returns) in the safetensors file's key order; every tensor has its own
      storage (archive/data/0 ... 337), saved via torch._utils._rebuild_tensor_v2.
  evil-controlnet.pth             a torch.save zip whose data.pkl holds two real tensors and,
      between them, an object whose __reduce__ is (os.system, ("touch /tmp/atelier-pwned",)):
      GLOBAL 'posix system' + REDUCE. A loader must refuse it by name; it is never loaded
      here (only written, then disassembled with pickletools, which executes nothing).

Both .pth files are byte-reproducible (torch.save's zip writer stores no timestamps; the
serialization id is derived from the records).
"""
import argparse
import collections
import hashlib
import io
import os
import pickletools
import subprocess
import sys
import zipfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(REPO, "Tests", "Fixtures", "controlnet")
CKPT = os.path.join(REPO, "Tests", "Fixtures", "models", "tiny-sd15.safetensors")
SAFETENSORS = os.path.join(OUT, "tiny-controlnet-canny.safetensors")
SAFETENSORS_SHA256 = "6e9285c167ceb43cf99442c1133882d40d1692f245620f752fab05514ddbfbd7"


class SystemCall:
    """Pickles as os.system("touch /tmp/atelier-pwned"): never unpickle the result."""

    def __reduce__(self):
        return (os.system, ("touch /tmp/atelier-pwned",))


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def pickle_globals(path):
    """The GLOBAL / STACK_GLOBAL names in the archive's data.pkl (pickletools only; nothing runs)."""
    with zipfile.ZipFile(path) as z:
        name = next(n for n in z.namelist() if n.endswith("/data.pkl"))
        data = z.read(name)
    out, strings = [], []
    for op, arg, _ in pickletools.genops(io.BytesIO(data)):
        if op.name == "GLOBAL":
            out.append(arg.replace(" ", "."))
        elif op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE"):
            strings.append(arg)
        elif op.name == "STACK_GLOBAL":
            out.append(".".join(strings[-2:]))
    return name, sorted(set(out))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ref", default=None, help="the oracle directory; rebuild the .safetensors with its make_controlnet.py first")
    a = ap.parse_args()
    import torch
    from safetensors.torch import load_file

    os.makedirs(OUT, exist_ok=True)
    if a.ref:
        subprocess.run([sys.executable, os.path.join(os.path.abspath(a.ref), "make_controlnet.py"),
                        "--ckpt", CKPT, "--out", SAFETENSORS], check=True)
    got = sha256(SAFETENSORS)
    if got != SAFETENSORS_SHA256:
        sys.exit(f"{SAFETENSORS}: sha256 {got} != {SAFETENSORS_SHA256}")
    sd = load_file(SAFETENSORS)
    state = collections.OrderedDict((k, v.contiguous()) for k, v in sd.items())

    pth = os.path.join(OUT, "tiny-controlnet-canny-pth.pth")
    torch.save(state, pth)
    back = torch.load(pth, weights_only=True)  # the safe loader: tensors and OrderedDict only
    assert list(back) == list(state) and all(torch.equal(back[k], state[k]) and back[k].dtype == state[k].dtype
                                             for k in state)
    name, globs = pickle_globals(pth)
    print(f"{pth}: {len(state)} tensors, {os.path.getsize(pth)} bytes, sha256 {sha256(pth)}")
    print(f"  {name}: globals {globs}")

    first, second = list(state)[:2]
    evil = collections.OrderedDict([(first, state[first]), ("control_model.payload", SystemCall()),
                                    (second, state[second])])
    bad = os.path.join(OUT, "evil-controlnet.pth")
    torch.save(evil, bad)
    name, globs = pickle_globals(bad)
    if "posix.system" not in globs and "os.system" not in globs:
        sys.exit(f"{bad}: no os.system global in {globs}")
    print(f"{bad}: {os.path.getsize(bad)} bytes, sha256 {sha256(bad)}")
    print(f"  {name}: globals {globs}")


if __name__ == "__main__":
    main()
