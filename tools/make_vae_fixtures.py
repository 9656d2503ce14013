#!/usr/bin/env python3
"""Make the committed separate-VAE fixtures in Tests/Fixtures/vae/ (A1111's `models/VAE/*` files, the
"SD VAE" setting). Run by hand with the reference venv; the Swift tests never run it:

    REF_VENV/bin/python tools/make_vae_fixtures.py --ref PATH/TO/shared/ref [--out Tests/Fixtures/vae] [--check]

The VAE is the one of another tiny checkpoint: the oracle's own builder, run as

    REF_VENV/bin/python REF/make_checkpoint.py --size tiny --seed 1 --fp16 --out TMP/tiny-sd15-seed1.safetensors

(the committed tiny checkpoint is seed 0): the same sizes (ch 32, ch_mult [1, 2, 2, 2], 2 res blocks,
z 4, no attention levels but the mid-block attention), different random weights, the same "no tensor
left at all ones / all zeros" re-init (make_checkpoint.randomize_trivial_params, so a dropped norm
affine or bias shows), the same degeneracy probe and the same read-back checks. Only its
`first_stage_model.*` tensors are kept, WITHOUT the prefix (A1111's VAE-file layout, as
vae-ft-mse-840000-ema-pruned: encoder.*, decoder.*, quant_conv.*, post_quant_conv.*), float16 like the
checkpoint. Files:

  tiny-vae-ft.safetensors       the 244 VAE tensors; metadata {"format": "pt"}
  tiny-vae-ft.pt                the same tensors through torch.save (zip, pickle protocol 2):
                                {"state_dict": OrderedDict(...), "global_step": 123}; state_dict also holds
                                loss.logvar (float32 0-d), loss.discriminator.main.0.weight /.bias (float32)
                                and model_ema.decay (float32 0-d) / model_ema.num_updates (int32 0-d), which
                                A1111 drops (sd_vae.load_vae_dict: keys starting with "loss", vae_ignore_keys)
  tiny-vae-wrong-size.safetensors  the 244 tensors, but decoder.conv_in.weight is [67, 4, 3, 3] (3 extra
                                output channels; its bias stays [64]): a strict load must refuse it, naming
                                that tensor
  README.md                     what, how, sha256

Checks (all must pass, else nothing is written): the kept tensors match the committed checkpoint's
first_stage_model.* in names, shapes and dtypes and differ from them in value; A1111's load path
(sd_models.read_state_dict -> get_state_dict_from_checkpoint for .pt, sd_vae.load_vae_dict's filter,
first_stage_model.load_state_dict(strict=True)) on a module with exactly the checkpoint's
first_stage_model state-dict names / shapes / dtypes accepts both files and gives bit-identical
tensors, accepts the unfiltered .pt dict never (unexpected loss.* keys), and refuses the wrong-size
file with torch's "size mismatch for decoder.conv_in.weight"; the .pt's pickle only uses globals that
A1111's modules/safe.py RestrictedUnpickler allows; loaded into the oracle's VAE, the file decodes a
fixed latent and encodes init-128.png visibly differently from the checkpoint's own VAE.
Deterministic for torch 2.15 (--check re-makes into a temp dir and compares bytes).
"""
import argparse
import collections
import io
import json
import os
import pickletools
import subprocess
import sys
import tempfile
import zipfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
from golden_common import sha256  # noqa: E402 (tools/ is the script's own folder)
CKPT = os.path.join(REPO, "Tests", "Fixtures", "models", "tiny-sd15.safetensors")
CKPT_SHA256 = "a7caa29fe88432bbcf4de833985faded804ab9f60baf7121ce011b8540e8ff0a"
INIT_IMAGE = os.path.join(REPO, "Tests", "Fixtures", "images", "init-128.png")
DEFAULT_OUT = os.path.join(REPO, "Tests", "Fixtures", "vae")
VAE_PREFIX = "first_stage_model."
SEED = 1
WRONG_KEY, WRONG_EXTRA = "decoder.conv_in.weight", 3
FILES = ("tiny-vae-ft.safetensors", "tiny-vae-ft.pt", "tiny-vae-wrong-size.safetensors", "README.md")
# A1111 1.10 modules/sd_vae.py
VAE_IGNORE_KEYS = {"model_ema.decay", "model_ema.num_updates"}
# A1111 1.10 modules/safe.py RestrictedUnpickler.find_class (the globals a tensor-only pickle can use)
A1111_SAFE_GLOBALS = {"collections.OrderedDict", "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_parameter",
                      "torch._utils._rebuild_device_tensor_from_numpy", "torch.FloatStorage", "torch.HalfStorage",
                      "torch.IntStorage", "torch.LongStorage", "torch.DoubleStorage", "torch.ByteStorage",
                      "torch.float32", "torch.BFloat16Storage", "torch.nn.modules.container.ParameterDict",
                      "numpy.core.multiarray.scalar", "numpy.core.multiarray._reconstruct", "numpy.dtype",
                      "numpy.ndarray", "_codecs.encode"}



def pickle_globals(path):
    """The GLOBAL / STACK_GLOBAL names in a torch.save archive's data.pkl (pickletools: nothing runs)."""
    with zipfile.ZipFile(path) as z:
        name = next(n for n in z.namelist() if n.endswith("/data.pkl"))
        data = z.read(name)
        n_records = sum(1 for n in z.namelist() if "/data/" in n)
    out, strings = [], []
    protocol = None
    for op, arg, _ in pickletools.genops(io.BytesIO(data)):
        if op.name == "PROTO":
            protocol = arg
        elif op.name == "GLOBAL":
            out.append(arg.replace(" ", "."))
        elif op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE"):
            strings.append(arg)
        elif op.name == "STACK_GLOBAL":
            out.append(".".join(strings[-2:]))
    return name, sorted(set(out)), protocol, n_records


def a1111_read_vae(path):
    """A1111 1.10: sd_models.read_state_dict (safetensors.torch.load_file, or torch.load +
    get_state_dict_from_checkpoint: pl_sd.pop("state_dict", pl_sd); pl_sd.pop("state_dict", None)), then
    sd_vae.load_vae_dict: drop keys whose first 4 characters are "loss" and vae_ignore_keys.
    torch.load(weights_only=True) stands in for modules/safe.py's RestrictedUnpickler (checked separately)."""
    import torch
    from safetensors.torch import load_file
    if path.endswith(".safetensors"):
        sd = load_file(path)
    else:
        sd = torch.load(path, map_location="cpu", weights_only=True)
        sd = sd.pop("state_dict", sd)
        sd.pop("state_dict", None)
    raw = dict(sd)
    return {k: v for k, v in sd.items() if k[0:4] != "loss" and k not in VAE_IGNORE_KEYS}, raw


def first_stage_module(reference):
    """A module whose state_dict has exactly `reference`'s names, shapes and dtypes: the LDM
    AutoencoderKL that A1111 holds as model.first_stage_model (its lossconfig is torch.nn.Identity, so
    no loss.* entries, and it has no buffers), built from the committed checkpoint's first_stage_model.*."""
    import torch

    root = torch.nn.Module()
    for key, t in reference.items():
        *path, leaf = key.split(".")
        mod = root
        for part in path:
            if not hasattr(mod, part):
                mod.add_module(part, torch.nn.Module())
            mod = getattr(mod, part)
        mod.register_parameter(leaf, torch.nn.Parameter(torch.zeros(t.shape, dtype=t.dtype), requires_grad=False))
    assert list(root.state_dict()) == list(reference), "module names do not round-trip"
    return root


def make(args, out):
    import torch
    from safetensors.torch import load_file, save_file
    sys.path.insert(0, os.path.abspath(args.ref))
    import sd_ldm as S

    if sha256(CKPT) != CKPT_SHA256:
        sys.exit(f"{CKPT}: sha256 is not {CKPT_SHA256}")
    base = {k[len(VAE_PREFIX):]: v for k, v in load_file(CKPT).items() if k.startswith(VAE_PREFIX)}

    with tempfile.TemporaryDirectory() as tmp:
        donor = os.path.join(tmp, f"tiny-sd15-seed{SEED}.safetensors")
        cmd = [sys.executable, os.path.join(os.path.abspath(args.ref), "make_checkpoint.py"), "--size", "tiny",
               "--seed", str(SEED), "--fp16", "--out", donor, "--threads", str(args.threads)]
        print("$", " ".join(cmd[1:]), flush=True)
        subprocess.run(cmd, check=True, stdout=None if args.verbose else subprocess.DEVNULL)
        donor_sha = sha256(donor)
        with open(os.path.splitext(donor)[0] + ".json") as f:
            probe = json.load(f)["probe_stats"]
        vae = {k[len(VAE_PREFIX):]: v.clone() for k, v in load_file(donor).items() if k.startswith(VAE_PREFIX)}

    # same names / shapes / dtypes as the committed checkpoint's VAE, every tensor different
    if set(vae) != set(base):
        sys.exit(f"key sets differ: {sorted(set(vae) ^ set(base))[:5]}")
    for k in base:
        if vae[k].shape != base[k].shape or vae[k].dtype != base[k].dtype:
            sys.exit(f"{k}: {tuple(vae[k].shape)} {vae[k].dtype} vs {tuple(base[k].shape)} {base[k].dtype}")
    same = [k for k in base if torch.equal(vae[k], base[k])]
    if same:
        sys.exit(f"{len(same)} tensors equal the checkpoint's: {same[:5]}")
    trivial = [k for k, v in vae.items() if torch.all(v == 0) or torch.all(v == 1)]
    if trivial:
        sys.exit(f"all-zeros / all-ones tensors: {trivial[:5]}")

    os.makedirs(out, exist_ok=True)
    keys = sorted(vae)
    p_st = os.path.join(out, "tiny-vae-ft.safetensors")
    save_file({k: vae[k] for k in keys}, p_st, metadata={"format": "pt"})

    # .pt: what a training run leaves: the weights plus loss / EMA bookkeeping that A1111 drops
    g = torch.Generator().manual_seed(SEED + 7)
    state = collections.OrderedDict((k, vae[k].clone()) for k in keys)
    state["loss.logvar"] = torch.tensor(-0.375, dtype=torch.float32)
    state["loss.discriminator.main.0.weight"] = (0.05 * torch.randn(8, 3, 4, 4, generator=g)).to(torch.float32)
    state["loss.discriminator.main.0.bias"] = (0.05 * torch.randn(8, generator=g)).to(torch.float32)
    state["model_ema.decay"] = torch.tensor(0.9999, dtype=torch.float32)
    state["model_ema.num_updates"] = torch.tensor(0, dtype=torch.int32)
    p_pt = os.path.join(out, "tiny-vae-ft.pt")
    torch.save({"state_dict": state, "global_step": 123}, p_pt)

    wrong = {k: vae[k] for k in keys}
    w = vae[WRONG_KEY]
    extra = (0.05 * torch.randn((WRONG_EXTRA,) + tuple(w.shape[1:]), generator=g)).to(w.dtype)
    wrong[WRONG_KEY] = torch.cat([w, extra], 0).contiguous()
    p_wrong = os.path.join(out, "tiny-vae-wrong-size.safetensors")
    save_file(wrong, p_wrong, metadata={"format": "pt"})

    # ---- checks -------------------------------------------------------------------------------------
    report = {}
    pkl_name, globs, protocol, n_records = pickle_globals(p_pt)
    bad = [x for x in globs if x not in A1111_SAFE_GLOBALS]
    if bad:
        sys.exit(f"{p_pt}: pickle globals A1111's RestrictedUnpickler refuses: {bad}")
    report["pt"] = dict(pickle=pkl_name, protocol=protocol, globals=globs, records=n_records)

    fsm = first_stage_module(base)
    loaded = {}
    for path in (p_st, p_pt):
        d, raw = a1111_read_vae(path)
        fsm.load_state_dict(d, strict=True)  # A1111 sd_vae._load_vae_dict
        got = fsm.state_dict()
        for k in keys:
            if got[k].dtype != vae[k].dtype or not torch.equal(got[k], vae[k]) or not torch.equal(d[k], vae[k]):
                sys.exit(f"{path}: {k} does not load back bit-identically")
        if set(d) != set(keys) or any(d[k].dtype != vae[k].dtype for k in keys):
            sys.exit(f"{path}: filtered dict differs from the VAE tensors")
        loaded[os.path.basename(path)] = d
        if path == p_pt:
            dropped = sorted(set(raw) - set(d))
            if dropped != sorted(k for k in state if k not in vae):
                sys.exit(f"{path}: A1111's filter dropped {dropped}")
            try:
                first_stage_module(base).load_state_dict(raw, strict=True)
                sys.exit(f"{path}: unfiltered dict loaded strictly")
            except RuntimeError as e:
                if "Unexpected key(s)" not in str(e) or "loss.logvar" not in str(e):
                    raise
            report["pt"]["dropped_by_a1111"] = dropped
    try:
        d, _ = a1111_read_vae(p_wrong)
        first_stage_module(base).load_state_dict(d, strict=True)
        sys.exit(f"{p_wrong}: loaded strictly")
    except RuntimeError as e:
        msg = str(e)
        if f"size mismatch for {WRONG_KEY}" not in msg:
            raise
        report["wrong_size_error"] = " ".join(msg.split())

    # decode / encode against the checkpoint's own VAE through the oracle's modules
    import numpy as np
    from diffusers import AutoencoderKL
    from PIL import Image
    torch.set_num_threads(args.threads)
    cfg = S.TINY
    vaes = {}
    for name, sd in (("checkpoint", base), ("file", loaded["tiny-vae-ft.safetensors"]),
                     ("file_pt", loaded["tiny-vae-ft.pt"])):
        m = AutoencoderKL(**S.diffusers_vae_config(cfg)).eval()
        S.load_component(cfg, {VAE_PREFIX + k: v for k, v in sd.items()}, "vae", m)
        vaes[name] = m
    g = torch.Generator().manual_seed(0)
    z = torch.randn(1, 4, 16, 16, generator=g)
    img = torch.from_numpy(np.moveaxis(np.asarray(Image.open(INIT_IMAGE).convert("RGB"), np.float32) / 255, 2, 0))[None]
    with torch.no_grad():
        dec = {n: m.decode(z / cfg["scale_factor"]).sample for n, m in vaes.items()}
        enc = {n: m.encode(img * 2 - 1).latent_dist.mean for n, m in vaes.items()}

    def rel(a, b):
        return float((a - b).norm() / b.norm())
    report["decode_rel_l2_file_vs_checkpoint"] = rel(dec["file"], dec["checkpoint"])
    report["encode_rel_l2_file_vs_checkpoint"] = rel(enc["file"], enc["checkpoint"])
    report["decode_std_per_channel"] = [float(x) for x in dec["file"][0].std(dim=(1, 2))]
    if not torch.equal(dec["file"], dec["file_pt"]) or not torch.equal(enc["file"], enc["file_pt"]):
        sys.exit(".pt and .safetensors VAEs decode / encode differently")
    if report["decode_rel_l2_file_vs_checkpoint"] < 0.2 or report["encode_rel_l2_file_vs_checkpoint"] < 0.2:
        sys.exit(f"the file's VAE is too close to the checkpoint's: {report}")
    if min(report["decode_std_per_channel"]) < 1e-2:
        sys.exit("the file's VAE decodes to a (nearly) constant image")
    report["donor"] = dict(seed=SEED, sha256=donor_sha, probe_stats=probe)
    report["tensors"] = len(keys)
    report["values"] = int(sum(vae[k].numel() for k in keys))
    return report


def write_readme(out, report):
    files = {fn: (os.path.getsize(os.path.join(out, fn)), sha256(os.path.join(out, fn))) for fn in FILES[:3]}
    pt = report["pt"]
    probe = report["donor"]["probe_stats"]
    rows = [
        ("tiny-vae-ft.safetensors", f"{report['tensors']} float16 tensors ({report['values']:,} values), A1111's VAE-file "
         "layout: the keys of the checkpoint's `first_stage_model.*` WITHOUT that prefix (`encoder.*`, `decoder.*`, "
         "`quant_conv.*`, `post_quant_conv.*`), same shapes and dtype; metadata `{\"format\": \"pt\"}`"),
        ("tiny-vae-ft.pt", f"the same {report['tensors']} tensors (names, dtype, values) via `torch.save` (zip, pickle "
         f"protocol {pt['protocol']}, archive dir `tiny-vae-ft/`, {pt['records']} storages): "
         "`{\"state_dict\": OrderedDict(...), \"global_step\": 123}`; `state_dict` also holds "
         "`loss.logvar` (float32 0-d, -0.375), `loss.discriminator.main.0.weight` [8, 3, 4, 4] / `.bias` [8] "
         "(float32), `model_ema.decay` (float32 0-d, 0.9999) and `model_ema.num_updates` (int32 0-d, 0), all "
         "dropped by A1111. Pickle globals: " + ", ".join(f"`{x}`" for x in pt["globals"])),
        ("tiny-vae-wrong-size.safetensors", f"the same tensors except `{WRONG_KEY}` = [67, 4, 3, 3] float16 (the "
         "real [64, 4, 3, 3] plus 3 extra output channels; `decoder.conv_in.bias` stays [64]): must be refused, "
         "naming that tensor"),
    ]
    lines = [
        "# Separate VAE fixtures (A1111 `models/VAE/*`, the \"SD VAE\" setting)",
        "",
        "Random-weight VAE files for the committed tiny checkpoint (`Tests/Fixtures/models/tiny-sd15.safetensors`, "
        "sha256 `a7caa29f...`), made by `tools/make_vae_fixtures.py` with the PyTorch oracle (shared/ref; see "
        "tools/README.md), torch 2.15.0, safetensors 0.8.0. The VAE is the one of the oracle's "
        f"`make_checkpoint.py --size tiny --seed {SEED} --fp16` (the committed checkpoint is seed 0; that "
        f"donor file, never committed, has sha256 `{report['donor']['sha256']}`): the same sizes (ch 32, ch_mult "
        "[1, 2, 2, 2], 2 res blocks, z 4, double_z, mid-block attention only), other random weights, every tensor "
        "that default init leaves at all ones / all zeros re-drawn (make_checkpoint's `randomize_trivial_params`), "
        "float16 like the checkpoint. They feed the `vae` golden group of `tools/make_goldens.py` "
        "(`Tests/Fixtures/golden/vae-file-*`). Reproducible: `--check` re-makes them and compares bytes.",
        "",
        "```sh",
        "REF_VENV/bin/python tools/make_vae_fixtures.py --ref REF            # writes Tests/Fixtures/vae/",
        "REF_VENV/bin/python tools/make_vae_fixtures.py --ref REF --check    # re-makes into a temp dir, compares bytes",
        "```",
        "",
        "| file | bytes | sha256 | content |",
        "| --- | ---: | --- | --- |",
    ]
    for fn, what in rows:
        size, digest = files[fn]
        lines.append(f"| `{fn}` | {size} | `{digest}` | {what} |")
    lines += [
        "",
        "A1111 1.10 loads such a file (`modules/sd_vae.py`) with `sd_models.read_state_dict` (safetensors, or "
        "`torch.load` through `modules/safe.py`'s restricted unpickler and `get_state_dict_from_checkpoint`, which "
        "unwraps `state_dict`), then `load_vae_dict` drops every key whose first 4 characters are `loss` and "
        "`model_ema.decay` / `model_ema.num_updates`, and `_load_vae_dict` calls "
        "`model.first_stage_model.load_state_dict(dict)` (strict). The script checks exactly that on a module "
        "with the checkpoint's `first_stage_model` state-dict names, shapes and dtypes: both files load and give "
        "bit-identical tensors; the .pt's unfiltered dict is refused (unexpected `loss.*` / `model_ema.*` keys); "
        "the wrong-size file is refused with",
        "",
        f"    {report['wrong_size_error']}",
        "",
        "Loaded into the oracle's VAE, the file's decoder gives a relative L2 distance of "
        f"{report['decode_rel_l2_file_vs_checkpoint']:.3f} from the checkpoint's own VAE on a fixed N(0, 1) latent "
        f"[1, 4, 16, 16] (torch seed 0), and its encoder {report['encode_rel_l2_file_vs_checkpoint']:.3f} on "
        "`init-128.png` (posterior mean); the .pt and the .safetensors decode and encode bit-identically. "
        f"Donor probe (make_checkpoint): VAE decode std {probe['vae_decode_std']:.3f}, "
        f"clipped fraction {probe['vae_decode_fraction_clipped']:.3f}.",
        "",
        "In an infotext A1111 names the file as `VAE hash: <first 10 hex of the file's sha256>, VAE: <file name "
        "with extension>`, right after `Model: ...` (`processing.create_infotext`; `sd_vae.get_loaded_vae_hash` / "
        "`get_loaded_vae_name`): `VAE hash: " + files["tiny-vae-ft.safetensors"][1][:10] + ", VAE: tiny-vae-ft.safetensors` "
        "and `VAE hash: " + files["tiny-vae-ft.pt"][1][:10] + ", VAE: tiny-vae-ft.pt`. `Model hash` stays the checkpoint's.",
        "",
    ]
    with open(os.path.join(out, "README.md"), "w") as f:
        f.write("\n".join(lines))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ref", required=True, help="the oracle directory (shared/ref: make_checkpoint.py, sd_ldm.py)")
    ap.add_argument("--out", default=DEFAULT_OUT)
    ap.add_argument("--check", action="store_true", help="re-make into a temp dir and compare with --out byte for byte")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--verbose", action="store_true", help="show make_checkpoint.py's output")
    args = ap.parse_args()
    if args.check:
        with tempfile.TemporaryDirectory() as tmp:
            report = make(args, tmp)
            write_readme(tmp, report)
            diff = [fn for fn in FILES if not os.path.exists(os.path.join(args.out, fn))
                    or sha256(os.path.join(tmp, fn)) != sha256(os.path.join(args.out, fn))]
            if diff:
                sys.exit(f"differ from {args.out}: {diff}")
        print(f"check passed: {', '.join(FILES)} byte-identical")
        return
    report = make(args, args.out)
    write_readme(args.out, report)
    for fn in FILES:
        p = os.path.join(args.out, fn)
        print(f"{fn:34} {os.path.getsize(p):9d}  {sha256(p)}")
    print(json.dumps({k: v for k, v in report.items() if k != "donor"}, indent=1))


if __name__ == "__main__":
    main()
