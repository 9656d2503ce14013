"""Runs A1111 1.10.1's real "Outpainting mk2" script outside the WebUI, from a checkout of
AUTOMATIC1111/stable-diffusion-webui at v1.10.1 named by $A1111_WEBUI (not committed here: it is
AGPL-3.0 and only the oracle runs it): stub `modules.*` / `gradio` modules are installed, the script's source is
checked against its upstream git blob hash and executed, and `process_images` is a hook the caller
provides. Shared by tools/make_outpaint_fixtures.py (image side, a fake generation) and
tools/make_outpaint_golden.py (the oracle's generation).

What the stubs provide (nothing here changes a pixel of the script's own work):
  modules.scripts.Script       base class (elem_id only; ui() is never called)
  modules.processing           Processed (records its arguments) and process_images (-> HOOK)
  modules.images               image_grid: the function from the checkout's modules/images.py
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


def a1111_root():
    root = os.environ.get("A1111_WEBUI")
    if not root or not os.path.isdir(os.path.join(root, "scripts")):
        raise SystemExit("set A1111_WEBUI to a checkout of AUTOMATIC1111/stable-diffusion-webui at v1.10.1 "
                         "(git clone --branch v1.10.1 https://github.com/AUTOMATIC1111/stable-diffusion-webui)")
    return root


def script_file():
    return os.path.join(a1111_root(), "scripts", "outpainting_mk_2.py")
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
    with open(script_file(), "rb") as f:
        src = f.read()
    if b"\r\n" not in src:   # upstream has CRLF line ends; a checkout may have turned them into LF
        src = src.replace(b"\n", b"\r\n")
    got = git_blob_sha1(src)
    if got != UPSTREAM_BLOB:
        raise SystemExit(f"{script_file()}: git blob {got} != upstream {UPSTREAM_BLOB} (not v1.10.1's file)")
    return src


class Processed:
    """modules.processing.Processed stand-in: keeps what the script passes."""
    def __init__(self, p, images_list, seed=-1, info="", subseed=None, **kw):
        self.p, self.images, self.seed, self.info, self.subseed = p, images_list, seed, info, subseed
        self.width, self.height = p.width, p.height
        self.infotexts = kw.get("infotexts") or [info] * len(images_list)


def process_images(p):
    return HOOK["process_images"](p)


def image_grid(*args, **kwargs):
    """A1111's modules/images.py image_grid, read from the checkout (the module itself imports the
    whole WebUI, so only this function's source is taken, by its syntax tree)."""
    if "fn" not in _IMAGE_GRID:
        import ast
        path = os.path.join(a1111_root(), "modules", "images.py")
        with open(path, "rb") as f:
            src = f.read().decode("utf-8")
        node = next(n for n in ast.parse(src).body if isinstance(n, ast.FunctionDef) and n.name == "image_grid")
        ns = {"math": math, "Image": Image, "ImageColor": ImageColor, "opts": opts, "script_callbacks": script_callbacks}
        exec(compile(ast.Module(body=[node], type_ignores=[]), path, "exec"), ns)
        _IMAGE_GRID["fn"] = ns["image_grid"]
    return _IMAGE_GRID["fn"](*args, **kwargs)


_IMAGE_GRID = {}


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
    src = upstream_source()
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
    mod.__file__ = script_file()
    code = compile(src, script_file(), "exec")
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
