#!/usr/bin/env python3
"""Hostile torch-style files for the restricted unpickler's tests (stdlib only, run by hand):

    python3 tools/make_pickle_fixtures.py

Writes Tests/Fixtures/pickle/evil-os-system.pt: a zip laid out as torch.save writes it whose
data.pkl calls os.system (GLOBAL 'posix system' + REDUCE) — loading it must be refused by name,
never executed; and evil-eval.pt, the same with builtins.eval through STACK_GLOBAL (protocol 4).
"""
import os
import pickle
import zipfile

OUT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "Tests", "Fixtures", "pickle")


class SystemCall:
    def __reduce__(self):
        return (os.system, ("touch /tmp/atelier-pwned",))


class EvalCall:
    def __reduce__(self):
        return (eval, ("__import__('os').system('touch /tmp/atelier-pwned')",))


def write(name, payload, protocol):
    with zipfile.ZipFile(os.path.join(OUT, name), "w", compression=zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", pickle.dumps({"state_dict": payload}, protocol=protocol))
        z.writestr("archive/version", "3\n")


os.makedirs(OUT, exist_ok=True)
write("evil-os-system.pt", SystemCall(), 2)
write("evil-eval.pt", EvalCall(), 4)
