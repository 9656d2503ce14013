"""Runs A1111 1.10.1's real "Outpainting mk2" script (tools/a1111_outpainting_mk_2.py, verbatim upstream
bytes) outside the WebUI: stub `modules.*` / `gradio` modules are installed, the script's source is
checked against its upstream git blob hash and executed, and `process_images` is a hook the caller
provides. Shared by tools/make_outpaint_fixtures.py (image side, a fake generation) and
tools/make_outpaint_golden.py (the oracle's generation).

What the stubs provide (nothing here changes a pixel of the script's own work):
  modules.scripts.Script       base class (elem_id only; ui() is never called)
  modules.processing           Processed (records its arguments) and process_images (-> HOOK)
  modules.images               image_grid: verbatim copy of A1111 1.10.1 modules/images.py image_grid
                               (script_callbacks.image_grid_callback is a no-op there by default);
                               save_image raises (opts.samples_save / grid_save are False here)
  modules.shared               opts (A1111 1.10.1 defaults for the options the script and image_grid
                               read, except samples_save / grid_save off) and state
"""
import hashlib
import math
import os
import sys
import types

from PIL import Image, ImageColor

TOOLS = os.path.dirname(os.path.abspath(__file__))
SCRIPT_FILE = os.path.join(TOOLS, "a1111_outpainting_mk_2.py")
MARKER = b"# ---- verbatim upstream file below this line ----\n"
UPSTREAM_BLOB = "5df9dff9c4897f5469917cb70635a688f7558432"   # v1.10.1:scripts/outpainting_mk_2.py
UPSTREAM = "AUTOMATIC1111/stable-diffusion-webui v1.10.1 (82a973c04367123ae98bd9abdf80d9eda9b910e2) scripts/outpainting_mk_2.py"

# A1111 1.10.1 modules/shared_options.py defaults of the options read by the script and by image_grid
# (samples_save / grid_save default to True in A1111; off here so nothing is written)
OPTS_DEFAULTS = dict(samples_save=False, grid_save=False, return_grid=True, grid_only_if_multiple=True,
                     n_rows=-1, grid_prevent_empty_spots=False, grid_background_color="#ffffff",
                     samples_format="png", grid_format="png", grid_extended_filename=False)

HOOK = {"process_images": None}


def git_blob_sha1(data):
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def upstream_source():
    with open(SCRIPT_FILE, "rb") as f:
        text = f.read()
    head, sep, src = text.partition(MARKER)
    if not sep:
        raise SystemExit(f"{SCRIPT_FILE}: marker line missing")
    if b"\r\n" not in src:   # upstream has CRLF line ends; a checkout may have turned them into LF
        src = src.replace(b"\n", b"\r\n")
    got = git_blob_sha1(src)
    if got != UPSTREAM_BLOB:
        raise SystemExit(f"{SCRIPT_FILE}: git blob {got} != upstream {UPSTREAM_BLOB} (the copy was edited)")
    return src, head.count(b"\n") + 1   # + the marker line


class Processed:
    """modules.processing.Processed stand-in: keeps what the script passes."""
    def __init__(self, p, images_list, seed=-1, info="", subseed=None, **kw):
        self.p, self.images, self.seed, self.info, self.subseed = p, images_list, seed, info, subseed
        self.width, self.height = p.width, p.height
        self.infotexts = kw.get("infotexts") or [info] * len(images_list)


def process_images(p):
    return HOOK["process_images"](p)


# ---- verbatim copy of A1111 1.10.1 modules/images.py image_grid (upstream lines 36-66, CRLF there) ----
def image_grid(imgs, batch_size=1, rows=None):
    if rows is None:
        if opts.n_rows > 0:
            rows = opts.n_rows
        elif opts.n_rows == 0:
            rows = batch_size
        elif opts.grid_prevent_empty_spots:
            rows = math.floor(math.sqrt(len(imgs)))
            while len(imgs) % rows != 0:
                rows -= 1
        else:
            rows = math.sqrt(len(imgs))
            rows = round(rows)
    if rows > len(imgs):
        rows = len(imgs)

    cols = math.ceil(len(imgs) / rows)

    params = script_callbacks.ImageGridLoopParams(imgs, cols, rows)
    script_callbacks.image_grid_callback(params)

    w, h = map(max, zip(*(img.size for img in imgs)))
    grid_background_color = ImageColor.getcolor(opts.grid_background_color, 'RGB')
    grid = Image.new('RGB', size=(params.cols * w, params.rows * h), color=grid_background_color)

    for i, img in enumerate(params.imgs):
        img_w, img_h = img.size
        w_offset, h_offset = 0 if img_w == w else (w - img_w) // 2, 0 if img_h == h else (h - img_h) // 2
        grid.paste(img, box=(i % params.cols * w + w_offset, i // params.cols * h + h_offset))

    return grid
# ---- end of the verbatim copy ----


class _ImageGridLoopParams:  # modules/script_callbacks.py ImageGridLoopParams
    def __init__(self, imgs, cols, rows):
        self.imgs, self.cols, self.rows = imgs, cols, rows


script_callbacks = types.SimpleNamespace(ImageGridLoopParams=_ImageGridLoopParams,
                                         image_grid_callback=lambda params: None)
opts = types.SimpleNamespace(**OPTS_DEFAULTS)
state = types.SimpleNamespace(job_count=0, job="")


def _save_image(*a, **k):
    raise RuntimeError("images.save_image called (opts.samples_save / grid_save are off here)")


def load():
    """Installs the stubs and returns the executed upstream script as a module."""
    src, header_lines = upstream_source()
    mods = {
        "gradio": types.SimpleNamespace(),
        "modules": types.ModuleType("modules"),
        "modules.scripts": types.SimpleNamespace(Script=type("Script", (), {"elem_id": lambda self, x: x})),
        "modules.images": types.SimpleNamespace(image_grid=image_grid, save_image=_save_image),
        "modules.processing": types.SimpleNamespace(Processed=Processed, process_images=process_images),
        "modules.shared": types.SimpleNamespace(opts=opts, state=state),
    }
    for name, m in mods.items():
        sys.modules[name] = m
    for name in ("scripts", "images", "processing", "shared"):
        setattr(mods["modules"], name, mods["modules." + name])
    mod = types.ModuleType("outpainting_mk_2")
    mod.__file__ = SCRIPT_FILE
    # pad with the header's line count so tracebacks point at the right lines of the file
    code = compile(b"\n" * header_lines + src, SCRIPT_FILE, "exec")
    exec(code, mod.__dict__)
    return mod


class P:
    """The img2img processing object as the script sees it (StableDiffusionProcessingImg2Img fields it
    reads: width, height, init_images, n_iter, batch_size, prompt, outpath_*; it sets the rest)."""
    def __init__(self, init_image, width, height, batch_size=1, n_iter=1, prompt="", seed=-1):
        self.init_images = [init_image]
        self.width, self.height = width, height
        self.batch_size, self.n_iter = batch_size, n_iter
        self.prompt, self.seed = prompt, seed
        self.outpath_samples = self.outpath_grids = None
