"""Bundled models that need no download."""

from .gaussian_mixture import GaussianMixtureFlow, shifted_grid

__all__ = ["GaussianMixtureFlow", "shifted_grid"]
