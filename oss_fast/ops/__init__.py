"""Device ops, one per file: each with its pure-torch reference beside the fast versions."""

from .euler import euler_rows
from .euler_cost import euler_costs, euler_costs_torch

__all__ = ["euler_rows", "euler_costs", "euler_costs_torch"]
