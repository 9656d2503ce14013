"""A1111 1.10's UniPC sampler, patched into the oracle (REF/reference.py, REF/samplers.py), which models every other one.

A1111 1.10.1 (commit 82a973c0; files read: modules/sd_samplers_timesteps.py, modules/sd_samplers_timesteps_impl.py,
modules/models/diffusion/uni_pc/uni_pc.py, modules/shared_options.py) runs UniPC as a *timestep* sampler
(CompVisSampler, the same CFGDenoiserTimesteps CFG wrapper as DDIM / PLMS: x and a timestep in, CFG-combined eps out):

  * txt2img: x = the first image-RNG draw as is; timesteps = get_timesteps(steps) =
    clip(arange(0, 1000, 1000 // steps) + 1, 0, 999) (what DDIM gets); unipc(..., timesteps, is_img2img=False).
  * img2img: t_enc = int(min(strength, 0.999) * steps); x = init * sqrt(ac[timesteps[t_enc]]) +
    noise * sqrt(1 - ac[timesteps[t_enc]]) (as DDIM); unipc(..., timesteps[:t_enc], is_img2img=True).
  * unipc(): ns = NoiseScheduleVP('discrete', alphas_cumprod=sd_model.alphas_cumprod) (float32 here);
    t_start = timesteps[-1] / 1000 + 1 / 1000 for img2img (float32 0-dim tensor; A1111's comment: "likely off by a
    bit"), else None (t_T = 1); UniPCCFG(model, ..., ns, predict_x0=True, thresholding=False, variant="bh1")
    .sample(x, steps=len(timesteps), t_start, skip_type="time_uniform", method="multistep", order=3,
    lower_order_final=True) (shared_options defaults uni_pc_variant, uni_pc_skip_type, uni_pc_order,
    uni_pc_lower_order_final).
  * UniPCCFG.model(x, t) = cfg_model(x, (t - 1/1000) * 1000): the UNet gets the continuous float time (not rounded);
    after_update(x, model_x) is the step callback (once per update: len(timesteps) callbacks and model calls;
    len(get_timesteps(n)) = ceil(1000 / (1000 // n)), so 10 -> 10 and 20 -> 20 but 7 -> 8, 13 -> 14, 30 -> 31).

sample_unipc() ports that code operation for operation in torch (float32 like A1111 when the oracle runs float32; the
float64 twin runs the same algorithm with every tensor -- schedule arrays, t grid, coefficients -- in float64).
apply(R) registers "UniPC" (kind "t") in samplers.SAMPLERS, wraps reference.run to remember the sampler label and
img2img-ness of the run in progress, and wraps samplers.sample_ddim (the kind-"t" call reference.run makes for every
timestep sampler but PLMS) to run sample_unipc when that label is UniPC. sample_unipc records its time grid, model
input times, per-step orders and coefficients in ctx.record["unipc"]; the run wrapper puts them in out["unipc"] and,
when the run saved files, in params.json["unipc"] (out["firstpass"]["unipc"] -> params.json["firstpass_unipc"] for
the hires fix): options (variant, skip_type, order, lower_order_final, predict_x0), is_img2img, steps
(= len(timesteps)), timesteps_in (A1111's list), t_start (img2img) / t_end, t (the steps + 1 grid times), schedule
(log_alpha, alpha, sigma, lambda at each grid time), model_t / model_input_t (each model call's continuous time and
the (t - 1/1000) * 1000 the UNet gets), orders / correctors (per update) and updates (per update: t_prev, t, h,
lambdas, sigmas, alpha_t, rks, h_phi_1, B_h, R, b, rhos_p, rhos_c and the three scalar coefficients), every value
the Python float of the tensor's. It returns (x, alphas, alphas_prev) with DDIM's tables for A1111's timesteps
(alphas_cumprod[ts] and the previous timestep's, float64), which UniPC does not use (reference.run stores them as
ddim_alphas*.npy).

float32 facts of torch 2.15 on x86 (AVX2, MKL) that decide the last bit (checked on this oracle): torch.linspace
computes start + step * i (first half) and end - step * (n - 1 - i) (second half) each with ONE rounding (an FMA;
step = (end - start) / (n - 1) rounded); every other elementwise op here is one IEEE rounding per op, Python
scalars rounded to float32 first, einsum('k,bkchw->bchw') = the rounded products summed in k order; exp, log, sqrt
and expm1 (MKL VML) are within 1 ulp but not always correctly rounded; linalg.solve is MKL's float32 LU (within a
few ulp of the exact solution, not reproduced by a textbook LU).

python tools/a1111_unipc.py --selfcheck  compares sample_unipc with A1111's own uni_pc.py + UniPCCFG / unipc() (taken
from the A1111 checkout with git show) on a toy eps model: bit-identical in float32.
"""

import contextlib

import torch

# modules/shared_options.py defaults
VARIANT = "bh1"
SKIP_TYPE = "time_uniform"
ORDER = 3
LOWER_ORDER_FINAL = True

_saved = {}
_runs = []  # reference.run calls in progress: {"label", "img2img", "record"}


# ---------------------------------------------------------------------------------------------- uni_pc.py, ported

def interpolate_fn(x, xp, yp):
    """uni_pc.interpolate_fn: piecewise linear y(x) through (xp, yp), outer segments extrapolated.
    x [N, C], xp / yp [C, K] -> [N, C]."""
    N, K = x.shape[0], xp.shape[1]
    all_x = torch.cat([x.unsqueeze(2), xp.unsqueeze(0).repeat((N, 1, 1))], dim=2)
    sorted_all_x, x_indices = torch.sort(all_x, dim=2)
    x_idx = torch.argmin(x_indices, dim=2)
    cand_start_idx = x_idx - 1
    start_idx = torch.where(
        torch.eq(x_idx, 0),
        torch.tensor(1, device=x.device),
        torch.where(torch.eq(x_idx, K), torch.tensor(K - 2, device=x.device), cand_start_idx),
    )
    end_idx = torch.where(torch.eq(start_idx, cand_start_idx), start_idx + 2, start_idx + 1)
    start_x = torch.gather(sorted_all_x, dim=2, index=start_idx.unsqueeze(2)).squeeze(2)
    end_x = torch.gather(sorted_all_x, dim=2, index=end_idx.unsqueeze(2)).squeeze(2)
    start_idx2 = torch.where(
        torch.eq(x_idx, 0),
        torch.tensor(0, device=x.device),
        torch.where(torch.eq(x_idx, K), torch.tensor(K - 2, device=x.device), cand_start_idx),
    )
    y_positions_expanded = yp.unsqueeze(0).expand(N, -1, -1)
    start_y = torch.gather(y_positions_expanded, dim=2, index=start_idx2.unsqueeze(2)).squeeze(2)
    end_y = torch.gather(y_positions_expanded, dim=2, index=(start_idx2 + 1).unsqueeze(2)).squeeze(2)
    cand = start_y + (x - start_x) * (end_y - start_y) / (end_x - start_x)
    return cand


def expand_dims(v, dims):
    return v[(...,) + (None,) * (dims - 1)]


class NoiseScheduleVP:
    """uni_pc.NoiseScheduleVP('discrete', alphas_cumprod=ac): log alpha(t) piecewise linear through
    t_n = linspace(0, 1, N + 1)[1:] (n + 1)/N, log alpha_n = 0.5 * log(ac_n). `dtype`: the tensors' dtype (A1111:
    float32, torch's default dtype for the linspace and alphas_cumprod's own for the log)."""

    def __init__(self, alphas_cumprod, dtype=torch.float32):
        log_alphas = 0.5 * torch.log(alphas_cumprod.to(dtype))
        self.schedule = "discrete"
        self.total_N = len(log_alphas)
        self.T = 1.
        self.t_array = torch.linspace(0., 1., self.total_N + 1, dtype=dtype)[1:].reshape((1, -1))
        self.log_alpha_array = log_alphas.reshape((1, -1,))

    def marginal_log_mean_coeff(self, t):
        return interpolate_fn(t.reshape((-1, 1)), self.t_array.to(t.device), self.log_alpha_array.to(t.device)).reshape((-1))

    def marginal_alpha(self, t):
        return torch.exp(self.marginal_log_mean_coeff(t))

    def marginal_std(self, t):
        return torch.sqrt(1. - torch.exp(2. * self.marginal_log_mean_coeff(t)))

    def marginal_lambda(self, t):
        log_mean_coeff = self.marginal_log_mean_coeff(t)
        log_std = 0.5 * torch.log(1. - torch.exp(2. * log_mean_coeff))
        return log_mean_coeff - log_std

    def inverse_lambda(self, lamb):
        log_alpha = -0.5 * torch.logaddexp(torch.zeros((1,), dtype=lamb.dtype).to(lamb.device), -2. * lamb)
        t = interpolate_fn(log_alpha.reshape((-1, 1)), torch.flip(self.log_alpha_array.to(lamb.device), [1]),
                           torch.flip(self.t_array.to(lamb.device), [1]))
        return t.reshape((-1,))


class UniPC:
    """uni_pc.UniPC as sd_samplers_timesteps_impl.UniPCCFG uses it: model(x, t) = cfg_model(x, (t - 1/N) * 1000)
    (eps), model_fn = data_prediction_fn (predict_x0, no thresholding), after_update(x, model_x) after every
    update. Variants bh1 / bh2 (vary_coeff is not ported). `record`: a dict that gets the time grid, every model call
    and every update's coefficients (Python floats of the tensors' values)."""

    def __init__(self, cfg_model, noise_schedule, predict_x0=True, variant=VARIANT, after_update=None, dtype=torch.float32,
                 record=None):
        if variant not in ("bh1", "bh2"):
            raise NotImplementedError(f"UniPC variant {variant!r} is not ported (bh1, bh2)")
        self.cfg_model = cfg_model
        self.noise_schedule = noise_schedule
        self.predict_x0 = predict_x0
        self.variant = variant
        self.after_update = after_update
        self.dtype = dtype
        self.record = record if record is not None else {}
        for k in ("model_t", "model_input_t", "updates"):
            self.record.setdefault(k, [])

    # UniPCCFG
    def get_model_input_time(self, t_continuous):
        return (t_continuous - 1. / self.noise_schedule.total_N) * 1000.

    def model(self, x, t):
        t_input = self.get_model_input_time(t)
        self.record["model_t"].append(float(t[0]))
        self.record["model_input_t"].append(float(t_input[0]))
        return self.cfg_model(x, t_input)

    # UniPC
    def noise_prediction_fn(self, x, t):
        return self.model(x, t)

    def data_prediction_fn(self, x, t):
        noise = self.noise_prediction_fn(x, t)
        dims = x.dim()
        alpha_t, sigma_t = self.noise_schedule.marginal_alpha(t), self.noise_schedule.marginal_std(t)
        x0 = (x - expand_dims(sigma_t, dims) * noise) / expand_dims(alpha_t, dims)
        return x0

    def model_fn(self, x, t):
        if self.predict_x0:
            return self.data_prediction_fn(x, t)
        return self.noise_prediction_fn(x, t)

    def get_time_steps(self, skip_type, t_T, t_0, N, device):
        dt = self.dtype
        if skip_type == "logSNR":
            lambda_T = self.noise_schedule.marginal_lambda(torch.as_tensor(t_T, dtype=dt).to(device))
            lambda_0 = self.noise_schedule.marginal_lambda(torch.as_tensor(t_0, dtype=dt).to(device))
            logSNR_steps = torch.linspace(lambda_T.cpu().item(), lambda_0.cpu().item(), N + 1, dtype=dt).to(device)
            return self.noise_schedule.inverse_lambda(logSNR_steps)
        elif skip_type == "time_uniform":
            return torch.linspace(t_T, t_0, N + 1, dtype=dt).to(device)
        elif skip_type == "time_quadratic":
            t_order = 2
            return torch.linspace(t_T ** (1. / t_order), t_0 ** (1. / t_order), N + 1, dtype=dt).pow(t_order).to(device)
        raise ValueError(f"Unsupported skip_type {skip_type}, need to be 'logSNR' or 'time_uniform' or 'time_quadratic'")

    def multistep_uni_pc_update(self, x, model_prev_list, t_prev_list, t, order, **kwargs):
        if len(t.shape) == 0:
            t = t.view(-1)
        return self.multistep_uni_pc_bh_update(x, model_prev_list, t_prev_list, t, order, **kwargs)

    def multistep_uni_pc_bh_update(self, x, model_prev_list, t_prev_list, t, order, x_t=None, use_corrector=True):
        ns = self.noise_schedule
        dt = self.dtype
        assert order <= len(model_prev_list)
        dims = x.dim()

        # first compute rks
        t_prev_0 = t_prev_list[-1]
        lambda_prev_0 = ns.marginal_lambda(t_prev_0)
        lambda_t = ns.marginal_lambda(t)
        model_prev_0 = model_prev_list[-1]
        sigma_prev_0, sigma_t = ns.marginal_std(t_prev_0), ns.marginal_std(t)
        log_alpha_prev_0, log_alpha_t = ns.marginal_log_mean_coeff(t_prev_0), ns.marginal_log_mean_coeff(t)
        alpha_t = torch.exp(log_alpha_t)

        h = lambda_t - lambda_prev_0

        rks = []
        D1s = []
        for i in range(1, order):
            t_prev_i = t_prev_list[-(i + 1)]
            model_prev_i = model_prev_list[-(i + 1)]
            lambda_prev_i = ns.marginal_lambda(t_prev_i)
            rk = ((lambda_prev_i - lambda_prev_0) / h)[0]
            rks.append(rk)
            D1s.append((model_prev_i - model_prev_0) / rk)

        rks.append(1.)
        # A1111: torch.tensor(rks) -- float32 0-dim tensors and 1. give a float32 tensor; float(...) is exact
        rks = torch.tensor([float(r) for r in rks], dtype=dt, device=x.device)

        R = []
        b = []

        hh = -h[0] if self.predict_x0 else h[0]
        h_phi_1 = torch.expm1(hh)  # h\phi_1(h) = e^h - 1
        h_phi_k = h_phi_1 / hh - 1

        factorial_i = 1

        if self.variant == "bh1":
            B_h = hh
        elif self.variant == "bh2":
            B_h = torch.expm1(hh)
        else:
            raise NotImplementedError()

        for i in range(1, order + 1):
            R.append(torch.pow(rks, i - 1))
            b.append(h_phi_k * factorial_i / B_h)
            factorial_i *= (i + 1)
            h_phi_k = h_phi_k / hh - 1 / factorial_i

        R = torch.stack(R)
        b = torch.tensor([float(v) for v in b], dtype=dt, device=x.device)

        # now predictor
        rhos_p = rhos_c = None
        use_predictor = len(D1s) > 0 and x_t is None
        if len(D1s) > 0:
            D1s = torch.stack(D1s, dim=1)  # (B, K)
            if x_t is None:
                # for order 2, we use a simplified version
                if order == 2:
                    rhos_p = torch.tensor([0.5], dtype=dt, device=b.device)
                else:
                    rhos_p = torch.linalg.solve(R[:-1, :-1], b[:-1])
        else:
            D1s = None

        if use_corrector:
            # for order 1, we use a simplified version
            if order == 1:
                rhos_c = torch.tensor([0.5], dtype=dt, device=b.device)
            else:
                rhos_c = torch.linalg.solve(R, b)

        model_t = None
        # A1111's unipc() always asks for data prediction (predict_x0=True): its noise-prediction branch is not ported
        if not self.predict_x0:
            raise NotImplementedError("UniPC with predict_x0=False (A1111 never uses it)")
        x_t_ = (
            expand_dims(sigma_t / sigma_prev_0, dims) * x
            - expand_dims(alpha_t * h_phi_1, dims) * model_prev_0
        )

        if x_t is None:
            if use_predictor:
                pred_res = torch.einsum("k,bkchw->bchw", rhos_p, D1s)
            else:
                pred_res = 0
            x_t = x_t_ - expand_dims(alpha_t * B_h, dims) * pred_res

        if use_corrector:
            model_t = self.model_fn(x_t, t)
            if D1s is not None:
                corr_res = torch.einsum("k,bkchw->bchw", rhos_c[:-1], D1s)
            else:
                corr_res = 0
            D1_t = (model_t - model_prev_0)
            x_t = x_t_ - expand_dims(alpha_t * B_h, dims) * (corr_res + rhos_c[-1] * D1_t)

        fl = (lambda v: None if v is None else [float(e) for e in v.reshape(-1)])  # noqa: E731
        self.record["updates"].append({
            "order": order, "corrector": bool(use_corrector), "predictor": bool(use_predictor),
            "t_prev": [float(tp[0]) for tp in t_prev_list[len(t_prev_list) - order:]], "t": float(t[0]),
            "lambda_prev_0": float(lambda_prev_0[0]), "lambda_t": float(lambda_t[0]), "h": float(h[0]),
            "sigma_prev_0": float(sigma_prev_0[0]), "sigma_t": float(sigma_t[0]), "alpha_t": float(alpha_t[0]),
            "rks": fl(rks), "h_phi_1": float(h_phi_1), "B_h": float(B_h), "R": fl(R), "b": fl(b),
            "rhos_p": fl(rhos_p), "rhos_c": fl(rhos_c),
            "sigma_t_over_sigma_prev_0": float((sigma_t / sigma_prev_0)[0]),
            "alpha_t_h_phi_1": float((alpha_t * h_phi_1)[0]), "alpha_t_B_h": float((alpha_t * B_h)[0])})
        return x_t, model_t

    def sample(self, x, steps=20, t_start=None, t_end=None, order=3, skip_type="time_uniform", method="multistep",
               lower_order_final=True):
        if method != "multistep":
            raise NotImplementedError()
        t_0 = 1. / self.noise_schedule.total_N if t_end is None else t_end
        t_T = self.noise_schedule.T if t_start is None else t_start
        device = x.device
        assert steps >= order, "UniPC order must be < sampling steps"
        timesteps = self.get_time_steps(skip_type=skip_type, t_T=t_T, t_0=t_0, N=steps, device=device)
        assert timesteps.shape[0] - 1 == steps
        rec = self.record
        rec["t"] = [float(v) for v in timesteps]
        # the schedule at each grid time, as the updates compute it (on [B] tensors): log alpha (interpolated),
        # alpha = exp(log alpha), sigma = sqrt(1 - exp(2 log alpha)), lambda = log alpha - 0.5 log(1 - exp(2 log alpha))
        ns = self.noise_schedule
        vt = [timesteps[i].expand(x.shape[0]) for i in range(len(timesteps))]
        rec["schedule"] = {"log_alpha": [float(ns.marginal_log_mean_coeff(v)[0]) for v in vt],
                           "alpha": [float(ns.marginal_alpha(v)[0]) for v in vt],
                           "sigma": [float(ns.marginal_std(v)[0]) for v in vt],
                           "lambda": [float(ns.marginal_lambda(v)[0]) for v in vt]}
        rec["orders"], rec["correctors"] = [], []
        with torch.no_grad():
            vec_t = timesteps[0].expand((x.shape[0]))
            model_prev_list = [self.model_fn(x, vec_t)]
            t_prev_list = [vec_t]
            # Init the first `order` values by lower order multistep DPM-Solver.
            for init_order in range(1, order):
                vec_t = timesteps[init_order].expand(x.shape[0])
                x, model_x = self.multistep_uni_pc_update(x, model_prev_list, t_prev_list, vec_t, init_order, use_corrector=True)
                rec["orders"].append(init_order)
                rec["correctors"].append(True)
                if model_x is None:
                    model_x = self.model_fn(x, vec_t)
                if self.after_update is not None:
                    self.after_update(x, model_x)
                model_prev_list.append(model_x)
                t_prev_list.append(vec_t)

            for step in range(order, steps + 1):
                vec_t = timesteps[step].expand(x.shape[0])
                if lower_order_final:
                    step_order = min(order, steps + 1 - step)
                else:
                    step_order = order
                use_corrector = step != steps  # no corrector at the last step
                x, model_x = self.multistep_uni_pc_update(x, model_prev_list, t_prev_list, vec_t, step_order,
                                                          use_corrector=use_corrector)
                rec["orders"].append(step_order)
                rec["correctors"].append(use_corrector)
                if self.after_update is not None:
                    self.after_update(x, model_x)
                for i in range(order - 1):
                    t_prev_list[i] = t_prev_list[i + 1]
                    model_prev_list[i] = model_prev_list[i + 1]
                t_prev_list[-1] = vec_t
                # We do not need to evaluate the final model value.
                if step < steps:
                    if model_x is None:
                        model_x = self.model_fn(x, vec_t)
                    model_prev_list[-1] = model_x
        return x


# ------------------------------------------------------------------------------------- the oracle's kind-"t" call

def sample_unipc(model, x, timesteps, ac, c, is_img2img=False, variant=VARIANT, skip_type=SKIP_TYPE, order=ORDER,
                 lower_order_final=LOWER_ORDER_FINAL):
    """sd_samplers_timesteps_impl.unipc(model, x, timesteps, ..., is_img2img) with the oracle's conventions:
    model(x, t) -> CFG-combined eps (reference.CFG over TimestepDenoiser; t a [B] float tensor, passed to the UNet
    unchanged), timesteps = A1111's get_timesteps list (int64; [:t_enc] for img2img), ac = the checkpoint's
    alphas_cumprod (float32), c = samplers.Ctx (c.step(x) after every update, as A1111's callback;
    c.record["unipc"] = the record). x.dtype float32: A1111's float32 arithmetic; float64 (the oracle's twin): the
    same operations with every tensor in float64. Returns (x, alphas, alphas_prev): x the result, then DDIM's tables
    for `timesteps` (ac[timesteps] and ac at the previous timestep, float64), which UniPC does not use."""
    dt = x.dtype
    ns = NoiseScheduleVP(ac, dt)
    if is_img2img:
        # A1111: timesteps[-1] / 1000 + 1 / 1000 on the int64 tensor: float32 (torch's default dtype)
        last = timesteps[-1] if dt == torch.float32 else timesteps[-1].to(dt)
        t_start = last / 1000 + 1 / 1000
    else:
        t_start = None
    record = {"variant": variant, "skip_type": skip_type, "order": order, "lower_order_final": lower_order_final,
              "predict_x0": True, "is_img2img": bool(is_img2img), "steps": len(timesteps),
              "timesteps_in": [int(v) for v in timesteps], "t_start": None if t_start is None else float(t_start),
              "t_end": 1. / ns.total_N}

    def after_update(x, model_x):
        c.step(x)

    sampler = UniPC(model, ns, predict_x0=True, variant=variant, after_update=after_update, dtype=dt, record=record)
    x = sampler.sample(x, steps=len(timesteps), t_start=t_start, skip_type=skip_type, method="multistep", order=order,
                       lower_order_final=lower_order_final)
    c.record["unipc"] = record
    alphas = ac[timesteps]
    alphas_prev = ac[torch.nn.functional.pad(timesteps[:-1], pad=(1, 0))].to(torch.float64)
    return x, alphas, alphas_prev


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
    orig_run, orig_ddim = R.run, SM.sample_ddim
    _saved["R"], _saved["SM"] = R, SM
    _saved["run"], _saved["sample_ddim"] = orig_run, orig_ddim
    _saved["not_modelled"] = set(SM.NOT_MODELLED)

    def run(a, pipe=None, dtype=torch.float32, save_files=True):
        label = R.resolve_sampler(a.sampler, a.scheduler)[0]
        img2img = a.init_image is not None or getattr(a, "_init_latent", None) is not None  # as reference.run
        state = {"label": label, "img2img": img2img, "record": None}
        _runs.append(state)
        try:
            out = orig_run(a, pipe, dtype, save_files)
        finally:
            _runs.pop()
        if state["record"] is not None:
            out["unipc"] = state["record"]
        extra = {}
        if out.get("unipc") is not None:
            extra["unipc"] = out["unipc"]
        if isinstance(out.get("firstpass"), dict) and out["firstpass"].get("unipc") is not None:
            extra["firstpass_unipc"] = out["firstpass"]["unipc"]
        if extra and save_files and getattr(a, "out", None):
            import json
            import os
            p = os.path.join(a.out, "params.json")
            if os.path.exists(p):
                with open(p) as f:
                    params = json.load(f)
                params.update(extra)
                with open(p, "w") as f:
                    json.dump(params, f, indent=2)
        return out

    def sample_ddim(model, x, timesteps, ac, c, eta=0.0, cfgpp=False):
        state = _runs[-1] if _runs else None
        if state is not None and state["label"] == "UniPC":
            res = sample_unipc(model, x, timesteps, ac, c, is_img2img=state["img2img"])
            state["record"] = c.record["unipc"]
            return res
        return orig_ddim(model, x, timesteps, ac, c, eta=eta, cfgpp=cfgpp)

    run.__wrapped__, sample_ddim.__wrapped__ = orig_run, orig_ddim
    R.run = run
    SM.sample_ddim = sample_ddim
    SM.SAMPLERS["UniPC"] = ("t", None, None, {})  # after PLMS, as A1111's list
    SM.NOT_MODELLED.discard("UniPC")


def remove():
    if not _saved:
        return
    R, SM = _saved["R"], _saved["SM"]
    R.run, SM.sample_ddim = _saved["run"], _saved["sample_ddim"]
    SM.SAMPLERS.pop("UniPC", None)
    SM.NOT_MODELLED.clear()
    SM.NOT_MODELLED.update(_saved["not_modelled"])
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


# ------------------------------------------------------------------------------ self-check against A1111's own code

A1111_REPO = "/work/.mirror/kklouzal+stable-diffusion-webui/repo"
A1111_REV = "82a973c0"  # v1.10.1 (the checkout's HEAD only changes lint CI; the files read are identical)


def _a1111_unipc(repo, rev, tmp):
    """A1111's uni_pc module (modules/models/diffusion/uni_pc/uni_pc.py) and its unipc() (the UniPCCFG class and the
    unipc function of modules/sd_samplers_timesteps_impl.py, executed verbatim with a stub `shared.opts` holding
    the uni_pc_* options). tqdm is stubbed when missing."""
    import importlib.util
    import os
    import subprocess
    import sys
    import types

    def show(path):
        return subprocess.run(["git", "-C", repo, "show", f"{rev}:{path}"], check=True, capture_output=True,
                              text=True).stdout
    src = show("modules/models/diffusion/uni_pc/uni_pc.py")
    path = os.path.join(tmp, "a1111_uni_pc.py")
    with open(path, "w") as f:
        f.write(src)
    stub = types.ModuleType("tqdm")  # A1111's progress bar, silenced (and not needed installed)

    class _Bar:
        def __init__(self, *a, **k):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *a):
            return False

        def update(self, *a):
            pass
    stub.tqdm = _Bar
    stub.trange = lambda *a, **k: range(*a)
    had = sys.modules.get("tqdm")
    sys.modules["tqdm"] = stub
    spec = importlib.util.spec_from_file_location("a1111_uni_pc", path)
    uni_pc = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(uni_pc)
    finally:
        if had is None:
            del sys.modules["tqdm"]
        else:
            sys.modules["tqdm"] = had
    impl = show("modules/sd_samplers_timesteps_impl.py")
    part = impl[impl.index("class UniPCCFG"):]
    opts = types.SimpleNamespace(uni_pc_variant=VARIANT, uni_pc_skip_type=SKIP_TYPE, uni_pc_order=ORDER,
                                 uni_pc_lower_order_final=LOWER_ORDER_FINAL)
    ns = {"torch": torch, "uni_pc": uni_pc, "shared": types.SimpleNamespace(opts=opts)}
    exec(compile(part, "sd_samplers_timesteps_impl.py[UniPCCFG:]", "exec"), ns)
    return uni_pc, ns["unipc"], opts


def _ldm_alphas_cumprod():
    """ldm's SD 1.x schedule as the checkpoints store it: betas = linspace(sqrt(0.00085), sqrt(0.012), 1000)^2 in
    float64, alphas_cumprod = cumprod(1 - betas), saved as float32."""
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
    return torch.cumprod(1. - betas, dim=0).to(torch.float32)


def _ddim_timesteps(steps):
    return torch.clip(torch.asarray(list(range(0, 1000, 1000 // steps))) + 1, 0, 999)


class _ToyEps:
    """eps(x, t) = tanh(x * a + t / 1000) (t the model input time, [B]); logs every call's x and t."""

    def __init__(self, a):
        self.a, self.calls = a, []

    def __call__(self, x, t, **kwargs):
        self.calls.append((x.clone(), t.clone()))
        return torch.tanh(x * self.a + expand_dims(t, x.dim()) / 1000)


def selfcheck(repo=A1111_REPO, rev=A1111_REV, ckpt=None):
    import tempfile
    import types
    import warnings
    warnings.filterwarnings("ignore", message="To copy construct from a tensor")  # A1111's logSNR: torch.tensor(t_T)
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        uni_pc, a1111_unipc, opts = _a1111_unipc(repo, rev, tmp)
    if ckpt:
        from safetensors.torch import load_file
        ac = load_file(ckpt)["alphas_cumprod"]
        print(f"alphas_cumprod from {ckpt}: {ac.dtype}")
    else:
        ac = _ldm_alphas_cumprod()
    g = torch.Generator().manual_seed(1200)
    a = torch.randn(1, 4, 16, 16, generator=g) * 0.7
    x_init = torch.randn(1, 4, 16, 16, generator=g)
    cases = []  # (name, timesteps, is_img2img, options)
    for steps in (10, 20, 7, 4, 3, 30, 13):
        cases.append((f"txt2img {steps} steps", _ddim_timesteps(steps), False, {}))
    for steps, strength in ((10, 0.6), (20, 0.75), (10, 0.3), (7, 0.5), (25, 0.999), (10, 0.45)):
        t_enc = int(min(strength, 0.999) * steps)
        cases.append((f"img2img {steps} steps strength {strength} (t_enc {t_enc})", _ddim_timesteps(steps)[:t_enc], True, {}))
    for opt in ({"uni_pc_variant": "bh2"}, {"uni_pc_order": 2}, {"uni_pc_order": 1}, {"uni_pc_order": 4},
                {"uni_pc_lower_order_final": False}, {"uni_pc_skip_type": "time_quadratic"},
                {"uni_pc_skip_type": "logSNR"}):
        cases.append((f"txt2img 10 steps {opt}", _ddim_timesteps(10), False, opt))
        cases.append((f"img2img 10 steps strength 0.8 {opt}", _ddim_timesteps(10)[:8], True, opt))
    failures = 0
    for name, ts, i2i, opt in cases:
        defaults = dict(uni_pc_variant=VARIANT, uni_pc_skip_type=SKIP_TYPE, uni_pc_order=ORDER,
                        uni_pc_lower_order_final=LOWER_ORDER_FINAL)
        for k, v in dict(defaults, **opt).items():
            setattr(opts, k, v)
        # A1111: unipc(model, x, timesteps, extra_args, callback, disable, is_img2img), model = the CFG denoiser
        # with .inner_model.inner_model.alphas_cumprod
        ref_eps = _ToyEps(a)
        ref_model = types.SimpleNamespace(inner_model=types.SimpleNamespace(inner_model=types.SimpleNamespace(alphas_cumprod=ac)))
        ref_model_call = ref_eps
        ref_steps = []

        class CfgModel:
            inner_model = ref_model.inner_model

            def __call__(self, x, t, **kw):
                return ref_model_call(x, t, **kw)
        x_ref = a1111_unipc(CfgModel(), x_init.clone(), ts, extra_args={}, callback=lambda d: ref_steps.append(d["x"].clone()),
                            disable=True, is_img2img=i2i)
        # ours, called as the oracle's kind-"t" path calls it
        our_eps = _ToyEps(a)
        ctx = types.SimpleNamespace(steps_out=[], record={})
        ctx.step = ctx.steps_out.append
        x_our, _, _ = sample_unipc(lambda x, t: our_eps(x, t), x_init.clone(), ts, ac, ctx, is_img2img=i2i,
                                   variant=opts.uni_pc_variant, skip_type=opts.uni_pc_skip_type, order=opts.uni_pc_order,
                                   lower_order_final=opts.uni_pc_lower_order_final)
        same_x = torch.equal(x_ref, x_our)
        same_steps = len(ref_steps) == len(ctx.steps_out) and all(torch.equal(p, q) for p, q in zip(ref_steps, ctx.steps_out))
        same_calls = len(ref_eps.calls) == len(our_eps.calls) and all(
            torch.equal(p[0], q[0]) and torch.equal(p[1], q[1]) and p[1].dtype == q[1].dtype
            for p, q in zip(ref_eps.calls, our_eps.calls))
        # the float64 twin: same algorithm in float64
        eps64 = _ToyEps(a.double())
        ctx64 = types.SimpleNamespace(steps_out=[], record={})
        ctx64.step = ctx64.steps_out.append
        x64, _, _ = sample_unipc(lambda x, t: eps64(x, t), x_init.double(), ts, ac, ctx64, is_img2img=i2i,
                                 variant=opts.uni_pc_variant, skip_type=opts.uni_pc_skip_type, order=opts.uni_pc_order,
                                 lower_order_final=opts.uni_pc_lower_order_final)
        rel64 = float((x_our.double() - x64).norm() / x64.norm())
        ok = same_x and same_steps and same_calls and x64.dtype == torch.float64 and rel64 < 1e-4
        failures += not ok
        rec = ctx.record["unipc"]
        print(f"{name:58} {len(our_eps.calls):2} model calls, {len(ctx.steps_out):2} updates, orders "
              f"{''.join(map(str, rec['orders']))}: x {'==' if same_x else '!='}, steps "
              f"{'==' if same_steps else '!='}, model inputs {'==' if same_calls else '!='} A1111; "
              f"f32 vs f64 rel L2 {rel64:.1e}  {'ok' if ok else 'FAIL'}", flush=True)
    print("all bit-identical to A1111's uni_pc.py / unipc()" if not failures else f"{failures} FAILED")
    return failures


def main():
    """python tools/a1111_unipc.py --selfcheck [--a1111 REPO] [--rev REV] [--ckpt CKPT]

    A1111's own uni_pc.py + UniPCCFG / unipc() (git show REV:... from the A1111 checkout REPO) vs sample_unipc on a
    toy eps model eps = tanh(x * a + t_input / 1000): txt2img and img2img (t_start) for several step counts with
    A1111's defaults, and bh2, orders 1 / 2 / 4, lower_order_final off, the other skip types: final x, every
    callback x and every model input (x, t) must be bit-identical in float32; the float64 twin must run and stay
    within 1e-4 relative L2. alphas_cumprod: ldm's SD 1.x schedule (float32), or --ckpt's."""
    import argparse
    import sys
    ap = argparse.ArgumentParser(description=main.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--selfcheck", action="store_true", required=True)
    ap.add_argument("--a1111", default=A1111_REPO, help="an A1111 git checkout (bare is fine)")
    ap.add_argument("--rev", default=A1111_REV)
    ap.add_argument("--ckpt", default=None, help="take alphas_cumprod from this .safetensors checkpoint")
    args = ap.parse_args()
    sys.exit(1 if selfcheck(args.a1111, args.rev, args.ckpt) else 0)


if __name__ == "__main__":
    main()
