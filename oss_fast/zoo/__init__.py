"""Bundled models that need no download, and loading models by name."""

from .digits_flow import DigitsFlow, digits
from .gaussian_mixture import GaussianMixtureFlow
from .patches_flow import PatchesFlow, patches
from .loading import BUNDLED, DEFAULT_MODEL, load_model, noises

__all__ = ["DigitsFlow", "GaussianMixtureFlow", "PatchesFlow", "digits", "patches", "BUNDLED", "DEFAULT_MODEL", "load_model", "noises"]
