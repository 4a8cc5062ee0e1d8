"""Models by name (the bundled ones, or a user's `module:factory`) and their starting noises:
what the CLI, the comparison report and the quality table draw on."""

from __future__ import annotations

import importlib
import inspect

from .digits_flow import digits
from .gaussian_mixture import GaussianMixtureFlow
from .patches_flow import patches

BUNDLED = ("digits", "patches", "gaussian_mixture")
DEFAULT_MODEL = "digits"


def load_model(spec: str, teacher_steps: int = 100, shift: float = 1.0, device: str = "cpu"):
    """A bundled model by name, or `module:factory` called with teacher_steps/shift/device where it
    takes them. ValueError when the spec names nothing usable."""
    if spec == "digits":
        return digits(teacher_steps=teacher_steps, shift=shift, device=device)
    if spec == "patches":
        return patches(teacher_steps=teacher_steps, shift=shift, device=device)
    if spec in ("gaussian_mixture", "mixture"):
        return GaussianMixtureFlow(teacher_steps=teacher_steps, shift=shift, device=device)
    if ":" not in spec:
        raise ValueError(f"unknown model {spec!r}: use one of {', '.join(BUNDLED)} or module:factory")
    module_name, factory_name = spec.split(":", 1)
    try:
        module = importlib.import_module(module_name)
    except Exception as err:  # a module that fails to import is the user's mistake, reported in one line
        raise ValueError(f"cannot import {module_name!r} for model {spec}: {type(err).__name__}: {err}") from None
    factory = getattr(module, factory_name, None)
    if not callable(factory):
        raise ValueError(f"{module_name} has no factory {factory_name!r}")
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):  # a builtin without a signature: given none of ours
        params = {}
    kwargs = {k: v for k, v in dict(teacher_steps=teacher_steps, shift=shift, device=device).items() if k in params}
    try:
        model = factory(**kwargs)
    except TypeError as err:
        raise ValueError(f"{spec} cannot be called with {sorted(kwargs) or 'no arguments'}: {err}") from None
    except Exception as err:
        raise ValueError(f"{spec} raised {type(err).__name__}: {err}") from None
    if not hasattr(model, "fm_steps"):
        raise ValueError(f"{spec} returned {type(model).__name__}, which has no fm_steps")
    return model


def noises(model, n: int, seed: int):
    """(z, cond): the model's own noise(n, seed) and, for class-conditional models, labels(n, seed)."""
    if not hasattr(model, "noise"):
        raise ValueError(f"{type(model).__name__} has no noise(n, seed) method to draw starting points from")
    cond = model.labels(n, seed) if hasattr(model, "labels") else None
    return model.noise(n, seed=seed), cond
