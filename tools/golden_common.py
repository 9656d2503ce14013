"""Small pieces the fixture and golden scripts share: file hashes, the oracle's command line from a
case's args, a locked update of the golden index, and rewriting a PNG's A1111 `parameters` text."""
import fcntl
import hashlib
import json
import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 24), b""):
            h.update(block)
    return h.hexdigest()


def to_argv(opts, ckpt, tokenizer, out, threads, path_args):
    """reference.py's argv for a case: `opts` keys as --flags (booleans bare or absent, the keys in
    `path_args` resolved against the repository root); the case's own `ckpt` key is passed as `ckpt`."""
    argv = ["--ckpt", ckpt, "--tokenizer", tokenizer, "--out", out, "--threads", str(threads)]
    for k, v in opts.items():
        if k == "ckpt":
            continue
        flag = "--" + k.replace("_", "-")
        if isinstance(v, bool):  # store_true options: the bare flag, or nothing
            argv += [flag] if v else []
        elif k in path_args:
            argv += [flag, os.path.join(REPO, v)]
        else:
            argv += [flag, str(v)]
    return argv


def update_index(index_path, entries):
    """Add / replace `entries` in index.json["cases"] under an exclusive flock on the file; every other
    case keeps its entry and its place, new cases go at the end, "meta" is not touched."""
    fd = os.open(index_path, os.O_RDWR | os.O_CREAT, 0o644)
    with os.fdopen(fd, "r+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            text = f.read()
            doc = json.loads(text) if text.strip() else {"meta": {}, "cases": {}}
            cases = doc.setdefault("cases", {})
            for name, entry in entries.items():
                cases[name] = entry
            f.seek(0)
            f.truncate()
            json.dump(doc, f, indent=2)
            f.flush()
            os.fsync(f.fileno())
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def set_png_parameters(path, text):
    """Rewrites the PNG at `path` with `text` as its only `parameters` chunk (pixels unchanged)."""
    from PIL import Image, PngImagePlugin
    png = PngImagePlugin.PngInfo()
    png.add_text("parameters", text)
    with Image.open(path) as im:
        im.load()
        im.save(path, pnginfo=png)


def compare_dirs(made, committed, keep=("README.md",)):
    """The --check of the fixture scripts: every file `made` (a temp dir) byte for byte equal to the
    committed one, and no file missing or extra (the names in `keep` are hand-written, not compared).
    Prints the differences; returns the exit status."""
    new = sorted(os.listdir(made))
    old = sorted(n for n in os.listdir(committed) if n not in keep) if os.path.isdir(committed) else []
    diff = sorted(set(new) ^ set(old))
    for n in sorted(set(new) & set(old)):
        with open(os.path.join(made, n), "rb") as a, open(os.path.join(committed, n), "rb") as b:
            if a.read() != b.read():
                diff.append(n)
    if diff:
        print("DIFFERENT:", *diff, sep="\n  ")
        return 1
    print(f"all {len(new)} files identical")
    return 0
