"""Bundled models that need no download."""

from .digits_flow import DigitsFlow, digits
from .gaussian_mixture import GaussianMixtureFlow, shifted_grid

__all__ = ["DigitsFlow", "GaussianMixtureFlow", "digits", "shifted_grid"]
