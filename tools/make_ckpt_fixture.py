#!/usr/bin/env python3
"""Writes Tests/Fixtures/models/tiny-sd15.ckpt: the committed tiny checkpoint's tensors (fp16, as
stored) re-saved the way original SD 1.x .ckpt files are — torch.save of
{"state_dict": …, "global_step": …, "epoch": …} (zip format, pickle protocol 2). Run by hand with the
reference venv (torch + safetensors):

    REF_VENV/bin/python tools/make_ckpt_fixture.py
"""
import os

import torch
from safetensors.torch import load_file

MODELS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "Tests", "Fixtures", "models")
sd = load_file(os.path.join(MODELS, "tiny-sd15.safetensors"))
torch.save({"state_dict": sd, "global_step": 470000, "epoch": 6}, os.path.join(MODELS, "tiny-sd15.ckpt"))
