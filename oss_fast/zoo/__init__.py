"""Bundled models that need no download, and loading models by name."""

from .digits_flow import DigitsFlow, digits
from .gaussian_mixture import GaussianMixtureFlow
from .loading import BUNDLED, DEFAULT_MODEL, load_model, noises

__all__ = ["DigitsFlow", "GaussianMixtureFlow", "digits", "BUNDLED", "DEFAULT_MODEL", "load_model", "noises"]
