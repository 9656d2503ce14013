"""A1111 1.10's sampler options, patched into the oracle (REF/reference.py, REF/samplers.py), which runs every sampler
with their defaults: s_churn, s_tmin, s_tmax, s_noise, sigma_min, sigma_max, rho, always_discard_next_to_last_sigma.

A1111 1.10.1 (commit 82a973c0; files read: modules/sd_samplers_kdiffusion.py, modules/sd_samplers_common.py,
modules/sd_samplers_timesteps.py, modules/processing.py, modules/shared_options.py, modules/sd_schedulers.py,
modules/options.py, modules/infotext_utils.py) and k-diffusion as A1111 pins it (ab527a9 = PyPI 0.1.1.post1,
k_diffusion/sampling.py):

  * Where the values come from. All eight are settings (opts; shared_options "Sampler parameters": s_churn 0,
    s_tmin 0, s_tmax 0 (= inf), s_noise 1, sigma_min 0, sigma_max 0, rho 0 (0 = "default"),
    always_discard_next_to_last_sigma False). An API request's override_settings sets opts for the job
    (opts.set, the JSON value as is: no type conversion). s_churn / s_tmin / s_tmax / s_noise are also request
    fields (StableDiffusionProcessing, default None); process_images_inner -> p.fill_fields_from_opts():
    p.s_X = request value if not None else opts.s_X; p.s_tmax = (that) or inf.
  * Which sampler takes which (sd_samplers_kdiffusion.sampler_extra_params, keyed by k-diffusion function name):
    sample_euler / sample_heun / sample_dpm_2: s_churn, s_tmin, s_tmax, s_noise; sample_dpm_fast,
    sample_dpm_2_ancestral, sample_dpmpp_2s_ancestral, sample_dpmpp_sde, sample_dpmpp_2m_sde (DPM++ 2M SDE and
    DPM++ 2M SDE Heun), sample_dpmpp_3m_sde: s_noise. Nothing else: Euler a, LMS, DPM++ 2M, DPM adaptive,
    Restart, LCM and the timestep samplers (DDIM, DDIM CFG++, PLMS, UniPC) never get any of the four, so
    k-diffusion's own defaults apply (Euler a / DPM adaptive: s_noise 1 whatever the setting).
  * Sampler.initialize(p): kwargs[k] = p.k for each k of the list (all are parameters of those functions); then
    s_churn = opts.s_churn, s_tmin = opts.s_tmin, s_tmax = opts.s_tmax or inf, s_noise = opts.s_noise (the
    `getattr(opts, 's_churn', p.s_churn)` always finds the option) and, for each k in kwargs whose opts value
    differs from the sampler default (0, 0, inf, 1): kwargs[k] = opts value, p.k = it, and
    extra_generation_params "Sigma churn" / "Sigma tmin" / "Sigma tmax" / "Sigma noise" = that value. So with
    override_settings the option is what the sampler gets, with its infotext entry; a request field alone (opts at
    the default) reaches the sampler through p with NO infotext entry; an opts value that is not the default wins
    over a request field.
  * KDiffusionSampler.get_sigmas(p, steps) (before initialize, in sample() and sample_img2img()):
    discard = the sampler's own discard_next_to_last_sigma (DPM2, DPM2 a, DPM++ 3M SDE); if
    opts.always_discard_next_to_last_sigma and not discard: discard = True and "Discard penultimate sigma" = True.
    n = steps + 1 if discard. Scheduler "Automatic" -> the sampler's default schedule; if none (or its function is
    None) -> model_wrap.get_sigmas(n): NO sigma_min / sigma_max / rho and no infotext for them. Otherwise
    kwargs sigma_min / sigma_max = the model's sigmas[0].item() / sigmas[-1].item(); if opts.sigma_min != 0 and
    != that: sigma_min = opts.sigma_min, "Schedule min sigma"; same for sigma_max ("Schedule max sigma"); if the
    schedule's default_rho != -1 (Karras 7.0, Polyexponential 1.0; -1 for every other) and opts.rho != 0 and
    != default_rho: rho = opts.rho, "Schedule rho". The schedule function gets them (Uniform, Simple, DDIM, Align
    Your Steps ignore sigma_min / sigma_max -- the infotext entries are still written). Then the discard:
    cat(sigmas[:-2], sigmas[-1:]). The timestep samplers' get_timesteps: always_discard adds 1 to the steps given
    to range(0, 1000, 1000 // steps) (nothing is dropped) with the same infotext entry.
  * Infotext: create_infotext appends p.extra_generation_params after its fixed keys, in insertion order: get_sigmas'
    entries (Discard penultimate sigma, Schedule min sigma, Schedule max sigma, Schedule rho), then initialize's
    (Sigma churn, Sigma tmin, Sigma tmax, Sigma noise); each written as f"{key}: {quote(value)}", i.e. str() of the
    Python value (0.5 -> "0.5", 5.0 -> "5.0", a JSON integer 5 -> "5", True -> "True").
  * Churn (k-diffusion sample_euler / sample_heun / sample_dpm_2), each step i, float32 tensors, Python floats:
        gamma = min(s_churn / (len(sigmas) - 1), 2 ** 0.5 - 1) if s_tmin <= sigmas[i] <= s_tmax else 0.
        eps = torch.randn_like(x) * s_noise          # EVERY step, also when gamma == 0: one image-RNG draw per step
        sigma_hat = sigmas[i] * (gamma + 1)
        if gamma > 0: x = x + eps * (sigma_hat ** 2 - sigmas[i] ** 2) ** 0.5
        denoised = model(x, sigma_hat * s_in); d = to_d(x, sigma_hat, denoised); dt = sigmas[i + 1] - sigma_hat
    Euler: x = x + d * dt. Heun: if sigmas[i + 1] == 0: x + d * dt, else x_2 = x + d * dt, d_2 = to_d(x_2,
    sigmas[i + 1], model(x_2, sigmas[i + 1])), x = x + ((d + d_2) / 2) * dt. DPM2: if sigmas[i + 1] == 0:
    x + d * dt, else sigma_mid = sigma_hat.log().lerp(sigmas[i + 1].log(), 0.5).exp(), x_2 = x + d * (sigma_mid -
    sigma_hat), d_2 = to_d(x_2, sigma_mid, model(x_2, sigma_mid)), x = x + d_2 * (sigmas[i + 1] - sigma_hat).
    A1111's TorchHijack makes torch.randn_like the image RNG's next draw (the oracle's ctx.noise()).

The oracle's s_noise samplers (samplers.py, c.s_noise) match k-diffusion's expressions: euler_ancestral / dpm_2_ancestral
/ dpmpp_2s_ancestral `noise * s_noise * sigma_up`, dpm_fast `su * s_noise * noise` (a draw every step, also with
eta 0), dpmpp_sde `noise * s_noise * su` (both half steps), dpmpp_2m_sde / 3m_sde `noise * sigma_next *
sqrt(-expm1(-2 eta h)) * s_noise`.

apply(R) adds the eight options to reference.build_parser (--s-churn, --s-tmin, --s-tmax, --s-noise, --sigma-min,
--sigma-max, --rho: default None = not set; --always-discard-next-to-last-sigma), so a golden case carries them in
its args under their A1111 names and they travel with the parsed args (into the float64 twin and the hires passes).
They are modelled as override_settings (opts for the job; request fields left unset). For a run with none of them
set nothing changes (every patched function calls the original). Otherwise it wraps reference.run (a per-run state:
the sampler kwargs and infotext initialize would make), samplers.get_sigmas (always_discard, sigma_min / sigma_max
/ rho as get_sigmas does), reference.ddim_timesteps (always_discard for the timestep samplers), and the
SAMPLERS entries of the ten samplers that take options: Euler / Heun / DPM2 run the churn code above when their
effective s_churn != 0 (with s_churn 0 A1111 still draws one unused image-RNG number per step; the oracle does
not), and each sets ctx.s_noise to its effective s_noise. The run's params.json gets "sampler_options" (given,
sampler function and kwargs, schedule kwargs, ignored options, the infotext entries, per-step churn record) and its
infotext (params.json and image.png's text chunk) gets A1111's entries appended.

python tools/a1111_sampler_options.py --selfcheck --ref REF --kdiff KDIFF_DIR   runs A1111's own get_sigmas,
Sampler.initialize, fill_fields_from_opts and sd_schedulers (git show from the A1111 checkout) against this module's
effective options / infotext / sigmas, and the pinned k-diffusion's samplers (randn_like = a seeded stream) against
the patched oracle samplers on a toy denoiser: bit-identical in float32.
"""

import ast
import contextlib
import json
import math
import os
import textwrap

import torch

INF = float("inf")
OPTION_NAMES = ("s_churn", "s_tmin", "s_tmax", "s_noise", "sigma_min", "sigma_max", "rho",
                "always_discard_next_to_last_sigma")
# modules/shared_options.py defaults
OPTS_DEFAULTS = dict(s_churn=0.0, s_tmin=0.0, s_tmax=0.0, s_noise=1.0, sigma_min=0.0, sigma_max=0.0, rho=0.0,
                     always_discard_next_to_last_sigma=False)
# sd_samplers_common.Sampler.__init__: the sampler's own defaults (infotext only when the option differs)
SAMPLER_DEFAULTS = dict(s_churn=0.0, s_tmin=0.0, s_tmax=INF, s_noise=1.0)
SAMPLER_INFOTEXT = (("s_churn", "Sigma churn"), ("s_tmin", "Sigma tmin"), ("s_tmax", "Sigma tmax"),
                    ("s_noise", "Sigma noise"))
# sd_samplers_kdiffusion.samplers_k_diffusion: label -> k-diffusion function name (Restart / LCM: callables)
FUNCNAMES = {"DPM++ 2M": "sample_dpmpp_2m", "DPM++ SDE": "sample_dpmpp_sde", "DPM++ 2M SDE": "sample_dpmpp_2m_sde",
             "DPM++ 2M SDE Heun": "sample_dpmpp_2m_sde", "DPM++ 2S a": "sample_dpmpp_2s_ancestral",
             "DPM++ 3M SDE": "sample_dpmpp_3m_sde", "Euler a": "sample_euler_ancestral", "Euler": "sample_euler",
             "LMS": "sample_lms", "Heun": "sample_heun", "DPM2": "sample_dpm_2", "DPM2 a": "sample_dpm_2_ancestral",
             "DPM fast": "sample_dpm_fast", "DPM adaptive": "sample_dpm_adaptive"}
# sd_samplers_kdiffusion.sampler_extra_params
SAMPLER_EXTRA_PARAMS = {
    "sample_euler": ["s_churn", "s_tmin", "s_tmax", "s_noise"],
    "sample_heun": ["s_churn", "s_tmin", "s_tmax", "s_noise"],
    "sample_dpm_2": ["s_churn", "s_tmin", "s_tmax", "s_noise"],
    "sample_dpm_fast": ["s_noise"],
    "sample_dpm_2_ancestral": ["s_noise"],
    "sample_dpmpp_2s_ancestral": ["s_noise"],
    "sample_dpmpp_sde": ["s_noise"],
    "sample_dpmpp_2m_sde": ["s_noise"],
    "sample_dpmpp_3m_sde": ["s_noise"],
}
# sd_schedulers.Scheduler.default_rho (-1 for the others: rho is never passed)
DEFAULT_RHO = {"karras": 7.0, "polyexponential": 1.0}
SCHEDULE_INFOTEXT = (("sigma_min", "Schedule min sigma"), ("sigma_max", "Schedule max sigma"), ("rho", "Schedule rho"))

_saved = {}
_runs = []  # reference.run calls in progress: a state dict, or None for a run without options


# ------------------------------------------------------------------------------------------ A1111's option logic

def sampler_function(label):
    return FUNCNAMES.get(label)


def sampler_kwargs(label, opts=None, request=None):
    """What Sampler.initialize gives the k-diffusion function of sampler `label` and writes to the infotext.
    `opts`: the settings that differ from shared_options' defaults (override_settings); `request`: the request
    fields s_churn / s_tmin / s_tmax / s_noise (None or absent = not sent). Returns (kwargs, infotext entries as an
    ordered dict); kwargs is empty for samplers without extra params (the function's own defaults apply)."""
    o = dict(OPTS_DEFAULTS, **(opts or {}))
    req = request or {}
    # processing.StableDiffusionProcessing.fill_fields_from_opts
    p = {k: (req[k] if req.get(k) is not None else o[k]) for k in SAMPLER_DEFAULTS}
    p["s_tmax"] = p["s_tmax"] or INF
    params = SAMPLER_EXTRA_PARAMS.get(sampler_function(label), [])
    kwargs = {k: p[k] for k in params}
    info = {}
    if params:
        eff = dict(s_churn=o["s_churn"], s_tmin=o["s_tmin"], s_tmax=o["s_tmax"] or INF, s_noise=o["s_noise"])
        for k, key in SAMPLER_INFOTEXT:
            if k in kwargs and eff[k] != SAMPLER_DEFAULTS[k]:
                kwargs[k] = eff[k]
                info[key] = eff[k]
    return kwargs, info


def schedule_kwargs(sched_name, m_sigma_min, m_sigma_max, opts=None):
    """KDiffusionSampler.get_sigmas for a schedule FUNCTION `sched_name` (an oracle SCHEDULES key, i.e. not the
    model's own get_sigmas): (sigma_min, sigma_max, {"rho": ...} or {}, infotext entries)."""
    o = dict(OPTS_DEFAULTS, **(opts or {}))
    smin, smax, kw, info = m_sigma_min, m_sigma_max, {}, {}
    if o["sigma_min"] != 0 and o["sigma_min"] != m_sigma_min:
        smin = o["sigma_min"]
        info["Schedule min sigma"] = o["sigma_min"]
    if o["sigma_max"] != 0 and o["sigma_max"] != m_sigma_max:
        smax = o["sigma_max"]
        info["Schedule max sigma"] = o["sigma_max"]
    default_rho = DEFAULT_RHO.get(sched_name, -1)
    if default_rho != -1 and o["rho"] != 0 and o["rho"] != default_rho:
        kw["rho"] = o["rho"]
        info["Schedule rho"] = o["rho"]
    return smin, smax, kw, info


def infotext_value(v):
    """infotext_utils.quote as create_infotext formats a value: str(v), JSON-quoted when it has , : or a newline."""
    s = str(v)
    if "," not in s and "\n" not in s and ":" not in s:
        return s
    return json.dumps(v, ensure_ascii=False)


def _json_num(v):
    return "inf" if isinstance(v, float) and math.isinf(v) else v


# ------------------------------------------------------------------------- k-diffusion's churn samplers, ported

def _to_d(x, sigma, denoised):
    return (x - denoised) / sigma  # A1111's sd_schedulers replaces k-diffusion's to_d with this


def _churn(x, sigmas, i, c, s_churn, s_tmin, s_tmax, s_noise, record):
    gamma = min(s_churn / (len(sigmas) - 1), 2 ** 0.5 - 1) if s_tmin <= sigmas[i] <= s_tmax else 0.
    eps = c.noise() * s_noise
    sigma_hat = sigmas[i] * (gamma + 1)
    std = None
    if gamma > 0:
        std = (sigma_hat ** 2 - sigmas[i] ** 2) ** 0.5
        x = x + eps * std
    if record is not None:
        record.append({"i": i, "sigma": float(sigmas[i]), "gamma": gamma, "sigma_hat": float(sigma_hat),
                       "churn_std": None if std is None else float(std)})
    return x, sigma_hat


def sample_euler_churn(model, x, sigmas, c, s_churn=0., s_tmin=0., s_tmax=INF, s_noise=1., record=None):
    """k-diffusion sample_euler with churn; c.noise() = torch.randn_like (A1111: the image RNG's next draw)."""
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        x, sigma_hat = _churn(x, sigmas, i, c, s_churn, s_tmin, s_tmax, s_noise, record)
        denoised = model(x, sigma_hat * s_in)
        d = _to_d(x, sigma_hat, denoised)
        dt = sigmas[i + 1] - sigma_hat
        x = x + d * dt
        c.step(x)
    return x


def sample_heun_churn(model, x, sigmas, c, s_churn=0., s_tmin=0., s_tmax=INF, s_noise=1., record=None):
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        x, sigma_hat = _churn(x, sigmas, i, c, s_churn, s_tmin, s_tmax, s_noise, record)
        denoised = model(x, sigma_hat * s_in)
        d = _to_d(x, sigma_hat, denoised)
        dt = sigmas[i + 1] - sigma_hat
        if sigmas[i + 1] == 0:
            x = x + d * dt
        else:
            x_2 = x + d * dt
            denoised_2 = model(x_2, sigmas[i + 1] * s_in)
            d_2 = _to_d(x_2, sigmas[i + 1], denoised_2)
            d_prime = (d + d_2) / 2
            x = x + d_prime * dt
        c.step(x)
    return x


def sample_dpm_2_churn(model, x, sigmas, c, s_churn=0., s_tmin=0., s_tmax=INF, s_noise=1., record=None):
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        x, sigma_hat = _churn(x, sigmas, i, c, s_churn, s_tmin, s_tmax, s_noise, record)
        denoised = model(x, sigma_hat * s_in)
        d = _to_d(x, sigma_hat, denoised)
        if sigmas[i + 1] == 0:
            dt = sigmas[i + 1] - sigma_hat
            x = x + d * dt
        else:
            sigma_mid = sigma_hat.log().lerp(sigmas[i + 1].log(), 0.5).exp()
            dt_1 = sigma_mid - sigma_hat
            dt_2 = sigmas[i + 1] - sigma_hat
            x_2 = x + d * dt_1
            denoised_2 = model(x_2, sigma_mid * s_in)
            d_2 = _to_d(x_2, sigma_mid, denoised_2)
            x = x + d_2 * dt_2
        c.step(x)
    return x


CHURN_SAMPLERS = {"Euler": sample_euler_churn, "Heun": sample_heun_churn, "DPM2": sample_dpm_2_churn}


# --------------------------------------------------------------------------------------------- per-run state

def given_options(a):
    """The options set on parsed reference.py args `a` (None / False = not set), in OPTION_NAMES order."""
    out = {}
    for k in OPTION_NAMES:
        v = getattr(a, k, None)
        if k == "always_discard_next_to_last_sigma":
            if v:
                out[k] = True
        elif v is not None:
            out[k] = v
    return out


def make_state(label, kind, given, request=None):
    kwargs, info = sampler_kwargs(label, given, request)
    return {"label": label, "kind": kind, "given": dict(given), "opts": dict(OPTS_DEFAULTS, **given),
            "request": dict(request or {}), "sampler_kwargs": kwargs, "sampler_info": info, "schedule_info": {},
            "schedule": None, "churn": None, "children": []}


def _current():
    return _runs[-1] if _runs else None


def report(state):
    """params.json["sampler_options"] of a run."""
    info = dict(state["schedule_info"])
    info.update(state["sampler_info"])
    for ch in state["children"]:  # hires passes: one extra_generation_params dict, first insertion keeps its place
        for k, v in ch["infotext_dict"].items():
            info[k] = v
    kw = state["sampler_kwargs"]
    effective = set()
    for k, v in kw.items():
        if v != SAMPLER_DEFAULTS[k]:
            effective.add(k)
    sched = state["schedule"] or {}
    for k in ("sigma_min", "sigma_max"):
        if sched.get(k + "_overridden"):
            effective.add(k)
    if "rho" in sched.get("kwargs", {}):
        effective.add("rho")
    if sched.get("discard_by_option"):
        effective.add("always_discard_next_to_last_sigma")
    for ch in state["children"]:
        effective.update(ch["applied"])
    rep = {
        "source": "override_settings" if not state["request"] else "override_settings + request fields",
        "given": state["given"],
        "request": state["request"] or None,
        "sampler_function": sampler_function(state["label"]),
        "sampler_extra_params": SAMPLER_EXTRA_PARAMS.get(sampler_function(state["label"]), []),
        "sampler_kwargs": {k: _json_num(v) for k, v in kw.items()},
        "schedule": sched or None,
        "applied": [k for k in OPTION_NAMES if k in effective],
        "ignored": [k for k in state["given"] if k not in effective],
        "infotext": [[k, v] for k, v in info.items()],
        "infotext_text": ", ".join(f"{k}: {infotext_value(v)}" for k, v in info.items()),
        "churn": None,
    }
    if state["churn"] is not None:
        rep["churn"] = {"draws_per_step": 1, "draws": len(state["churn"]), "steps": state["churn"]}
    if state["children"]:
        rep["passes"] = [ch["report"] for ch in state["children"]]
    rep["infotext_dict"] = info
    return rep


def _set_png_parameters(path, text):
    from PIL import Image, PngImagePlugin
    png = PngImagePlugin.PngInfo()
    png.add_text("parameters", text)
    with Image.open(path) as im:
        im.load()
        im.save(path, pnginfo=png)


# --------------------------------------------------------------------------------------------- patching the oracle

def applied():
    return bool(_saved)


def apply(R=None):
    """Patch the oracle (process-wide): reference module R (default: `import reference`, REF on sys.path) and its
    samplers module R.SM. A second call does nothing; remove() undoes it."""
    if _saved:
        return
    if R is None:
        import reference as R
    SM = R.SM
    _saved.update(R=R, SM=SM, run=R.run, build_parser=R.build_parser, ddim_timesteps=R.ddim_timesteps,
                  get_sigmas=SM.get_sigmas, samplers=dict(SM.SAMPLERS))
    orig_run, orig_build, orig_ddim_ts, orig_get_sigmas = R.run, R.build_parser, R.ddim_timesteps, SM.get_sigmas

    def build_parser():
        ap = orig_build()
        g = ap.add_argument_group("A1111 sampler options (settings; as override_settings; unset = A1111's default)")
        g.add_argument("--s-churn", type=float, default=None, help="sigma churn (Euler, Heun, DPM2; default 0)")
        g.add_argument("--s-tmin", type=float, default=None, help="sigma tmin (Euler, Heun, DPM2; default 0)")
        g.add_argument("--s-tmax", type=float, default=None, help="sigma tmax (Euler, Heun, DPM2; 0 = inf, default)")
        g.add_argument("--s-noise", type=float, default=None,
                       help="sigma noise (Euler, Heun, DPM2, DPM fast, DPM2 a, DPM++ 2S a, the SDE samplers; default 1)")
        g.add_argument("--sigma-min", type=float, default=None, help="schedule min sigma (0 = the model's)")
        g.add_argument("--sigma-max", type=float, default=None, help="schedule max sigma (0 = the model's)")
        g.add_argument("--rho", type=float, default=None, help="schedule rho (Karras, Polyexponential; 0 = default)")
        g.add_argument("--always-discard-next-to-last-sigma", action="store_true")
        return ap

    def run(a, pipe=None, dtype=torch.float32, save_files=True):
        given = given_options(a)
        if not given:
            _runs.append(None)
            try:
                return orig_run(a, pipe, dtype, save_files)
            finally:
                _runs.pop()
        label = R.resolve_sampler(a.sampler, a.scheduler)[0]
        state = make_state(label, SM.SAMPLERS[label][0], given)
        _runs.append(state)
        try:
            out = orig_run(a, pipe, dtype, save_files)
        finally:
            _runs.pop()
        rep = report(state)
        parent = _current()
        if parent is not None:
            parent["children"].append({"report": {k: v for k, v in rep.items() if k != "infotext_dict"},
                                       "infotext_dict": rep["infotext_dict"], "applied": rep["applied"]})
        info = rep.pop("infotext_dict")
        out["sampler_options"] = rep
        if save_files and getattr(a, "out", None):
            p = os.path.join(a.out, "params.json")
            if os.path.exists(p):
                with open(p) as f:
                    params = json.load(f)
                params["sampler_options"] = rep
                if info:
                    params["infotext"] += ", " + rep["infotext_text"]
                    png = os.path.join(a.out, "image.png")
                    if os.path.exists(png):
                        _set_png_parameters(png, params["infotext"])
                with open(p, "w") as f:
                    json.dump(params, f, indent=2)
        return out

    def get_sigmas(sched_name, steps, m, discard_penultimate=False):
        st = _current()
        if st is None:
            return orig_get_sigmas(sched_name, steps, m, discard_penultimate)
        o = st["opts"]
        discard = discard_penultimate
        rec = {"function": sched_name or "model", "steps": steps, "discard": bool(discard),
               "discard_by_option": False}
        if o["always_discard_next_to_last_sigma"] and not discard:
            discard = True
            rec["discard"] = rec["discard_by_option"] = True
            st["schedule_info"]["Discard penultimate sigma"] = True
        n = steps + (1 if discard else 0)
        m_smin, m_smax = m.sigmas[0].item(), m.sigmas[-1].item()
        rec.update(n=n, model_sigma_min=m_smin, model_sigma_max=m_smax)
        if sched_name is None:  # Automatic without a schedule function: the model's get_sigmas, no overrides
            s = m.uniform(n)
            rec.update(sigma_min=None, sigma_max=None, kwargs={})
        else:
            smin, smax, kw, info = schedule_kwargs(sched_name, m_smin, m_smax, o)
            st["schedule_info"].update(info)
            if sched_name == "uniform":  # A1111's uniform(n, sigma_min, sigma_max, inner_model): ignores both
                s = m.uniform(n)
            else:
                fn = SM.SCHEDULES[sched_name][1]
                s = fn(n, smin, smax, m, **kw) if sched_name in SM.NEEDS_MODEL else fn(n, smin, smax, **kw)
            rec.update(sigma_min=smin, sigma_max=smax, kwargs=kw, sigma_min_overridden=smin != m_smin,
                       sigma_max_overridden=smax != m_smax)
        if discard:
            s = torch.cat([s[:-2], s[-1:]])
        st["schedule"] = rec
        return s

    def ddim_timesteps(steps):
        st = _current()
        if st is not None and st["opts"]["always_discard_next_to_last_sigma"]:
            # CompVisSampler.get_timesteps: the timestep samplers have no discard option of their own
            st["schedule_info"]["Discard penultimate sigma"] = True
            st["schedule"] = {"function": "timesteps", "steps": steps, "n": steps + 1, "discard": True,
                              "discard_by_option": True}
            steps += 1
        return orig_ddim_ts(steps)

    def wrap(label, entry):
        fn = entry[1]
        churn = CHURN_SAMPLERS.get(label)

        def wrapped(model, x, *args, **kwargs):
            st = _current()
            if st is None or st["label"] != label:
                return fn(model, x, *args, **kwargs)
            c = args[-1]
            kw = st["sampler_kwargs"]
            if "s_noise" in kw:
                c.s_noise = kw["s_noise"]
            if churn is not None and kw.get("s_churn", 0) != 0:
                st["churn"] = []
                return churn(model, x, *args, s_churn=kw["s_churn"], s_tmin=kw["s_tmin"], s_tmax=kw["s_tmax"],
                             s_noise=kw["s_noise"], record=st["churn"])
            return fn(model, x, *args, **kwargs)
        wrapped.__wrapped__ = fn
        return (entry[0], wrapped) + tuple(entry[2:])

    R.build_parser, R.run, R.ddim_timesteps, SM.get_sigmas = build_parser, run, ddim_timesteps, get_sigmas
    build_parser.__wrapped__, run.__wrapped__ = orig_build, orig_run
    ddim_timesteps.__wrapped__, get_sigmas.__wrapped__ = orig_ddim_ts, orig_get_sigmas
    _saved["wrapped"] = []
    for label, entry in list(SM.SAMPLERS.items()):
        if SAMPLER_EXTRA_PARAMS.get(sampler_function(label)):
            SM.SAMPLERS[label] = wrap(label, entry)
            _saved["wrapped"].append(label)


def remove():
    if not _saved:
        return
    R, SM = _saved["R"], _saved["SM"]
    R.run, R.build_parser, R.ddim_timesteps = _saved["run"], _saved["build_parser"], _saved["ddim_timesteps"]
    SM.get_sigmas = _saved["get_sigmas"]
    for label in _saved["wrapped"]:
        SM.SAMPLERS[label] = _saved["samplers"][label]
    _saved.clear()


@contextlib.contextmanager
def patched(R=None):
    was = applied()
    apply(R)
    try:
        yield
    finally:
        if not was:
            remove()


@contextlib.contextmanager
def run_state(label, kind, given, request=None):
    """A run's option state outside reference.run (the self-check calls the patched samplers directly)."""
    st = make_state(label, kind, given, request)
    _runs.append(st)
    try:
        yield st
    finally:
        _runs.pop()


# ------------------------------------------------------------------------------ self-check against A1111's own code

A1111_REPO = "/work/.mirror/kklouzal+stable-diffusion-webui/repo"
A1111_REV = "82a973c0"  # v1.10.1 (the checkout's HEAD only changes lint CI; the files read are identical)
REF_DEFAULT = "/work/shared/ref"
KDIFF_DEFAULT = "/tmp/kdiff/unpacked"


def _git_show(repo, rev, path):
    import subprocess
    return subprocess.run(["git", "-C", repo, "show", f"{rev}:{path}"], check=True, capture_output=True,
                          text=True).stdout


def _segment(src, *names):
    """Source of a top-level assignment / function / class method `names` (e.g. ("KDiffusionSampler",
    "get_sigmas")), dedented."""
    tree = ast.parse(src)
    body = tree.body
    node = None
    for i, name in enumerate(names):
        node = None
        for n in body:
            if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and n.name == name:
                node = n
            elif isinstance(n, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in n.targets):
                node = n
        if node is None:
            raise KeyError(".".join(names))
        body = getattr(node, "body", [])
    return textwrap.dedent(ast.get_source_segment(src, node, padded=True))


class _Opts:
    """A1111's Options as far as these functions read it: the settings with their shared_options defaults."""

    def __init__(self, **kw):
        self.__dict__.update(dict(OPTS_DEFAULTS, use_old_karras_scheduler_sigmas=False, eta_ancestral=1.0, s_min_uncond=0.0,
                                  beta_dist_alpha=0.6, beta_dist_beta=0.6, **kw))


def _a1111(repo, rev, kd):
    """A1111 1.10's own code, executed from the checkout with stubs for what it imports: sd_schedulers (the module;
    it sets k_diffusion.sampling.to_d as A1111 does), KDiffusionSampler.get_sigmas, Sampler.initialize,
    TorchHijack, StableDiffusionProcessing.fill_fields_from_opts, sampler_extra_params, samplers_k_diffusion."""
    import inspect
    import sys
    import types
    shared = types.SimpleNamespace(opts=_Opts(), sd_model=types.SimpleNamespace(is_sdxl=False))
    modules = types.ModuleType("modules")
    modules.shared = shared
    saved = {k: sys.modules.get(k) for k in ("modules", "modules.shared")}
    sys.modules["modules"], sys.modules["modules.shared"] = modules, shared
    try:
        sched_mod = types.ModuleType("a1111_sd_schedulers")
        exec(compile(_git_show(repo, rev, "modules/sd_schedulers.py"), "sd_schedulers.py", "exec"), sched_mod.__dict__)
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    kdsrc = _git_show(repo, rev, "modules/sd_samplers_kdiffusion.py")
    common = _git_show(repo, rev, "modules/sd_samplers_common.py")
    proc = _git_show(repo, rev, "modules/processing.py")
    ns = {"torch": torch, "inspect": inspect, "k_diffusion": sys.modules["k_diffusion"], "sd_schedulers": sched_mod,
          "devices": types.SimpleNamespace(cpu="cpu"), "shared": shared,
          "sd_samplers_extra": types.SimpleNamespace(restart_sampler=lambda *a, **k: None)}
    for seg in (_segment(kdsrc, "sampler_extra_params"), _segment(kdsrc, "samplers_k_diffusion"),
                _segment(common, "TorchHijack")):
        exec(compile(seg, "a1111", "exec"), ns)
    getsig = {}
    exec(compile(_segment(kdsrc, "KDiffusionSampler", "get_sigmas"), "get_sigmas", "exec"), ns, getsig)
    init = {}
    exec(compile(_segment(common, "Sampler", "initialize"), "initialize", "exec"), ns, init)
    fill = {}
    exec(compile(_segment(proc, "StableDiffusionProcessing", "fill_fields_from_opts"), "fill", "exec"), ns, fill)
    return types.SimpleNamespace(ns=ns, shared=shared, sched=sched_mod, get_sigmas=getsig["get_sigmas"],
                                 initialize=init["initialize"], fill_fields_from_opts=fill["fill_fields_from_opts"],
                                 sampler_extra_params=ns["sampler_extra_params"],
                                 samplers=ns["samplers_k_diffusion"])


def _a1111_kwargs(A, kd, label, opts, request, rng=None):
    """A1111: opts set (override_settings), p from the request, fill_fields_from_opts, then Sampler.initialize.
    Returns (kwargs, extra_generation_params); k_diffusion.sampling.torch is left as TorchHijack(p)."""
    import types
    funcname = FUNCNAMES[label]
    A.shared.opts = _Opts(**opts)
    A.ns["opts"] = A.shared.opts
    p = types.SimpleNamespace(s_churn=None, s_tmin=None, s_tmax=None, s_noise=None, s_min_uncond=None, eta=None,
                              extra_generation_params={}, rng=rng)
    for k, v in (request or {}).items():
        setattr(p, k, v)
    A.fill_fields_from_opts.__globals__["opts"] = A.shared.opts
    A.fill_fields_from_opts(p)
    self = types.SimpleNamespace(model_wrap_cfg=types.SimpleNamespace(), func=getattr(kd, funcname),
                                 extra_params=A.sampler_extra_params.get(funcname, []), eta_option_field="eta_ancestral",
                                 eta_infotext_field="Eta", eta_default=1.0, s_churn=0.0, s_tmin=0.0, s_tmax=INF,
                                 s_noise=1.0)
    kwargs = A.initialize(self, p)
    return kwargs, p.extra_generation_params


class _Stream:
    """A seeded stream of [1, 4, h, w] normal draws (the image RNG's next(); also a noise_sampler)."""

    def __init__(self, seed, shape):
        self.gen, self.shape, self.draws = torch.Generator().manual_seed(seed), shape, []

    def next(self):
        n = torch.randn(self.shape, generator=self.gen)[None]
        self.draws.append(n)
        return n

    def __call__(self, sigma, sigma_next):
        return self.next()


class _Toy:
    """denoised = x * (1 / (sigma^2 + 1)) + tanh(x * a) * (sigma / (sigma^2 + 1)); logs (x, sigma) of every call."""

    def __init__(self, a):
        self.a, self.calls = a, []

    def __call__(self, x, sigma, **kwargs):
        self.calls.append((x.clone(), sigma.clone()))
        s = sigma[:, None, None, None]
        return x * (1 / (s ** 2 + 1)) + torch.tanh(x * self.a) * (s / (s ** 2 + 1))


def _same_calls(p, q):
    return len(p) == len(q) and all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and a[1].dtype == b[1].dtype
                                    for a, b in zip(p, q))


def selfcheck(ref=REF_DEFAULT, kdiff=KDIFF_DEFAULT, repo=A1111_REPO, rev=A1111_REV):
    import sys
    import types
    torch.set_num_threads(2)
    sys.path.insert(0, os.path.abspath(ref))
    import reference as R
    import crosscheck
    SM = R.SM
    kdm = crosscheck.load_kdiffusion(kdiff)
    kd, external = kdm["sampling"], kdm["external"]
    A = _a1111(repo, rev, kd)  # sets kd.to_d to A1111's, as A1111's sd_schedulers import does
    apply(R)
    failures = 0

    def check(ok, msg):
        nonlocal failures
        failures += not ok
        print(f"{msg}  {'ok' if ok else 'FAIL'}", flush=True)

    # -- 1. the option logic: sampler kwargs / infotext (initialize) for every k-diffusion sampler
    cases = [{}, {"s_churn": 0.5}, {"s_churn": 1.0, "s_tmin": 0.5, "s_tmax": 5.0}, {"s_noise": 0.9},
             {"s_churn": 0.3, "s_noise": 0.95, "s_tmax": 0.0}, {"s_tmin": 0.2}, {"s_tmax": 7}, {"s_noise": 1.0}]
    requests = [None, {"s_churn": 0.7}, {"s_noise": 0.8, "s_tmax": 0}, {"s_churn": 0.2, "s_tmin": 1.0, "s_tmax": 9.0}]
    n_logic = bad_logic = 0
    for label in FUNCNAMES:
        for o in cases:
            for req in requests:
                kw_a, info_a = _a1111_kwargs(A, kd, label, o, req)
                kw_a = {k: v for k, v in kw_a.items() if k in SAMPLER_DEFAULTS}
                kw_o, info_o = sampler_kwargs(label, o, req)
                n_logic += 1
                if kw_a != kw_o or list(info_a.items()) != list(info_o.items()):
                    bad_logic += 1
                    print(f"  {label} opts {o} request {req}: A1111 {kw_a} {info_a} != ours {kw_o} {info_o}")
    check(bad_logic == 0, f"initialize: sampler kwargs and infotext of {len(FUNCNAMES)} samplers x {len(cases)} option "
                          f"sets x {len(requests)} request variants ({n_logic}) == A1111's")
    ours_params = {k: v for k, v in SAMPLER_EXTRA_PARAMS.items()}
    check(ours_params == A.sampler_extra_params, "sampler_extra_params == A1111's")
    a_funcs = {lab: fn for lab, fn, _, _ in A.samplers if isinstance(fn, str)}
    check(a_funcs == FUNCNAMES, "label -> k-diffusion function == A1111's samplers_k_diffusion")

    # -- 2. get_sigmas: sigmas and infotext for each schedule, with and without overrides / discard
    from safetensors.torch import load_file
    ckpt = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "Tests", "Fixtures", "models",
                        "tiny-sd15.safetensors")
    ac = load_file(ckpt)["alphas_cumprod"].float()

    class Shim(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("alphas_cumprod", ac)
    wrap = external.CompVisDenoiser(Shim(), quantize=False)
    m = R.Schedule(ac)
    a_options = {lab: opt for lab, _, _, opt in A.samplers}
    sched_opts = [{}, {"sigma_min": 0.1, "sigma_max": 10.0, "rho": 5.0}, {"sigma_max": 8.0}, {"sigma_min": 0.05},
                  {"rho": 3.0}, {"rho": 7.0, "sigma_max": 14.614641189575195}, {"always_discard_next_to_last_sigma": True},
                  {"always_discard_next_to_last_sigma": True, "sigma_min": 0.2, "rho": 2.5}]
    n_sig = bad_sig = 0
    for label, sopt in (("Euler", {}), ("DPM++ 2M", {}), ("DPM2", {}), ("DPM++ 3M SDE", {}), ("DPM++ 2M SDE", {})):
        for sched in ("Automatic", "Uniform", "Karras", "Exponential", "Polyexponential", "SGM Uniform", "KL Optimal",
                      "Align Your Steps", "Simple", "Normal", "DDIM", "Beta"):
            for o in sched_opts:
                for steps in (10, 7):
                    A.shared.opts = _Opts(**o)
                    A.ns["opts"] = A.shared.opts
                    A.sched.shared.opts = A.shared.opts
                    cfg = types.SimpleNamespace(options=a_options[label])
                    self = types.SimpleNamespace(config=cfg, model_wrap=wrap)
                    p = types.SimpleNamespace(is_hr_pass=False, scheduler=sched, hr_scheduler=None,
                                              sampler_noise_scheduler_override=None, extra_generation_params={})
                    s_a = A.get_sigmas(self, p, steps)
                    info_a = {k: v for k, v in p.extra_generation_params.items()
                              if k in ("Discard penultimate sigma", "Schedule min sigma", "Schedule max sigma",
                                       "Schedule rho")}
                    key = SM.schedule_key(sched)
                    default_sched = SM.SAMPLERS[label][2]
                    resolved = default_sched if key == "automatic" else key
                    with run_state(label, SM.SAMPLERS[label][0], o) as st:
                        s_o = SM.get_sigmas(resolved, steps, m, SM.SAMPLERS[label][3].get("discard", False))
                    info_o = dict(st["schedule_info"])
                    n_sig += 1
                    if not (torch.equal(s_a, s_o) and s_a.dtype == s_o.dtype and list(info_a.items()) == list(info_o.items())):
                        bad_sig += 1
                        print(f"  {label} / {sched} {o} {steps} steps: sigmas equal {torch.equal(s_a, s_o)} "
                              f"(max|d| {float((s_a.double() - s_o.double()).abs().max()) if s_a.shape == s_o.shape else 'shape'}), "
                              f"infotext A1111 {info_a} ours {info_o}")
    check(bad_sig == 0, f"get_sigmas: {n_sig} (sampler, schedule, options, steps) cases: sigmas bit-identical, "
                        f"infotext entries == A1111's")

    # -- 3. the samplers: pinned k-diffusion (kwargs from A1111's initialize, randn_like = TorchHijack(p) ->
    #       a seeded stream) vs the patched oracle SAMPLERS entries under the same options
    g = torch.Generator().manual_seed(1300)
    a = torch.randn(1, 4, 8, 8, generator=g) * 0.7
    x0 = torch.randn(1, 4, 8, 8, generator=g)
    shape = (4, 8, 8)
    full = m.uniform(10)
    sig_sets = {"uniform 10": full, "karras 10 discard": torch.cat([SM.sigmas_karras(11, 0.0292, 14.6146)[:-2],
                                                                    torch.zeros(1)]),
                "img2img tail (8)": full[3:]}
    runs = []
    for label in ("Euler", "Heun", "DPM2"):
        for o in ({"s_churn": 0.5}, {"s_churn": 1.0, "s_tmin": 0.5, "s_tmax": 5.0}, {"s_churn": 0.3, "s_noise": 0.9},
                  {"s_churn": 100.0}, {"s_churn": 0.4, "s_tmin": 50.0}, {"s_noise": 0.9}, {}):
            for sname in sig_sets:
                runs.append((label, o, sname))
    for label in ("DPM2 a", "DPM++ 2S a", "DPM++ SDE", "DPM++ 2M SDE", "DPM++ 2M SDE Heun", "DPM++ 3M SDE", "DPM fast"):
        for o in ({"s_noise": 0.9}, {"s_noise": 0.95}, {}):
            runs.append((label, o, "uniform 10"))
    for label, o, sname in runs:
        sigmas = sig_sets[sname]
        x_in = x0 * sigmas[0]
        # A1111 / k-diffusion
        rng_a = _Stream(77, shape)
        kw_a, _ = _a1111_kwargs(A, kd, label, o, None, rng=rng_a)  # sets kd.torch = TorchHijack(p)
        toy_a = _Toy(a)
        fn = getattr(kd, FUNCNAMES[label])
        extra = {}
        if SM.SAMPLERS[label][3].get("brownian"):
            extra["noise_sampler"] = _Stream(88, shape)
        if label == "DPM++ 2M SDE Heun":
            extra["solver_type"] = "heun"
        try:
            if label == "DPM fast":
                x_a = fn(toy_a, x_in.clone(), 0.0292, 14.6146, 10, extra_args={}, disable=True, **kw_a, **extra)
            else:
                x_a = fn(toy_a, x_in.clone(), sigmas, extra_args={}, disable=True, **kw_a, **extra)
        finally:
            kd.torch = torch
        # the patched oracle
        rng_o = _Stream(77, shape)
        ctx = SM.Ctx(noise=rng_o.next, eta=1.0)
        if SM.SAMPLERS[label][3].get("brownian"):
            ctx.brownian = lambda _s: _Stream(88, shape)
        toy_o = _Toy(a)
        with run_state(label, SM.SAMPLERS[label][0], o) as st:
            fn_o = SM.SAMPLERS[label][1]
            if label == "DPM fast":
                x_o = fn_o(toy_o, x_in.clone(), 0.0292, 14.6146, 10, ctx)
            else:
                x_o = fn_o(toy_o, x_in.clone(), sigmas, ctx)
        churn_draws = len(rng_o.draws)
        # A1111 draws one unused number per step with s_churn 0 (Euler / Heun / DPM2); the oracle does not
        unused = label in CHURN_SAMPLERS and st["sampler_kwargs"].get("s_churn", 0) == 0
        same_draws = (len(rng_a.draws) == len(rng_o.draws)) or (unused and len(rng_o.draws) == 0)
        ok = torch.equal(x_a, x_o) and _same_calls(toy_a.calls, toy_o.calls) and same_draws
        gam = ""
        if st["churn"]:
            gam = " gamma " + ",".join(f"{r['gamma']:.4g}" for r in st["churn"])
        check(ok, f"{label:18} {sname:18} {str(o):52} {len(toy_o.calls):2} calls, draws k-diff {len(rng_a.draws):2} "
                  f"oracle {churn_draws:2}: x {'==' if torch.equal(x_a, x_o) else '!='}{gam}")

    # -- 4. Euler a: A1111 passes no s_noise (not in sampler_extra_params); the oracle's formula with an explicit one
    for s_noise in (0.9, 0.5):
        rng_a, rng_o = _Stream(5, shape), _Stream(5, shape)
        toy_a, toy_o = _Toy(a), _Toy(a)
        try:
            kd.torch = A.ns["TorchHijack"](types.SimpleNamespace(rng=rng_a))
            x_a = kd.sample_euler_ancestral(toy_a, (x0 * full[0]).clone(), full, extra_args={}, disable=True, eta=1.0,
                                            s_noise=s_noise)
        finally:
            kd.torch = torch
        ctx = SM.Ctx(noise=rng_o.next, eta=1.0, s_noise=s_noise)
        x_o = SM.sample_euler_ancestral(toy_o, (x0 * full[0]).clone(), full, ctx)
        check(torch.equal(x_a, x_o) and _same_calls(toy_a.calls, toy_o.calls) and len(rng_a.draws) == len(rng_o.draws),
              f"Euler a with an explicit s_noise {s_noise} (A1111 never passes one): oracle == k-diffusion")
    kw, info = sampler_kwargs("Euler a", {"s_noise": 0.9})
    check(kw == {} and info == {}, "Euler a with the s_noise option: no kwargs, no infotext (A1111 ignores it)")

    # -- 5. float64: the churn code runs in float64 (the oracle's twin) and stays close to float32
    rng = _Stream(77, shape)
    ctx = SM.Ctx(noise=lambda: rng.next().double(), eta=1.0)
    with run_state("Heun", "k", {"s_churn": 1.0, "s_tmin": 0.5, "s_tmax": 5.0}):
        x64 = SM.SAMPLERS["Heun"][1](_Toy(a.double()), (x0.double() * full.double()[0]), full.double(), ctx)
    rng = _Stream(77, shape)
    ctx = SM.Ctx(noise=rng.next, eta=1.0)
    with run_state("Heun", "k", {"s_churn": 1.0, "s_tmin": 0.5, "s_tmax": 5.0}):
        x32 = SM.SAMPLERS["Heun"][1](_Toy(a), x0 * full[0], full, ctx)
    rel = float((x32.double() - x64).norm() / x64.norm())
    check(x64.dtype == torch.float64 and rel < 1e-5, f"Heun churn float64 twin vs float32: rel L2 {rel:.1e}")
    remove()
    print("all bit-identical to A1111 / k-diffusion 0.1.1.post1" if not failures else f"{failures} FAILED")
    return failures


def main():
    """python tools/a1111_sampler_options.py --selfcheck [--ref REF] [--kdiff KDIFF_DIR] [--a1111 REPO] [--rev REV]

    KDIFF_DIR holds the k_diffusion package of the PyPI wheel k-diffusion==0.1.1.post1 (= ab527a9, A1111's pin):
    pip download --no-deps k-diffusion==0.1.1.post1 -d D && python -m zipfile -e D/k_diffusion-*.whl D/unpacked.
    Checks: (1) sampler kwargs + infotext of A1111's Sampler.initialize / fill_fields_from_opts for every k-diffusion
    sampler, option set and request-field variant; (2) A1111's KDiffusionSampler.get_sigmas + sd_schedulers for 12
    schedules x option sets (sigma_min / sigma_max / rho / always discard) on the tiny checkpoint's schedule: sigmas
    bit-identical, the same infotext entries; (3) the pinned k-diffusion's sample_euler / sample_heun / sample_dpm_2
    (churn, windows, s_noise, gamma clamp) and the s_noise samplers on a toy denoiser with randn_like = a seeded stream
    vs the patched oracle samplers: final x and every model input bit-identical in float32, the same draws;
    (4) Euler a's s_noise formula; (5) the float64 twin."""
    import argparse
    import sys
    ap = argparse.ArgumentParser(description=main.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--selfcheck", action="store_true", required=True)
    ap.add_argument("--ref", default=REF_DEFAULT)
    ap.add_argument("--kdiff", default=KDIFF_DEFAULT, help="directory holding the k_diffusion package (0.1.1.post1)")
    ap.add_argument("--a1111", default=A1111_REPO, help="an A1111 git checkout (bare is fine)")
    ap.add_argument("--rev", default=A1111_REV)
    args = ap.parse_args()
    sys.exit(1 if selfcheck(args.ref, args.kdiff, args.a1111, args.rev) else 0)


if __name__ == "__main__":
    main()
