"""Subprocesses that run this checkout's oss_fast, not whatever oss_fast is installed."""

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]  # the repository root: the folder holding oss_fast/


def checkout_env(env=None) -> dict:
    """env (default: this process's environment) with the repository root first on PYTHONPATH."""
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = os.pathsep.join(path for path in (str(ROOT), env.get("PYTHONPATH", "")) if path)
    return env
