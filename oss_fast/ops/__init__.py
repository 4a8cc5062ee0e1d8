"""Device ops, one per file: each with its pure-torch reference beside the fast versions; which of
them runs is chosen in backend.py."""

from .backend import pick_backend
from .combo_cost import combine, combo_costs, combo_costs_torch, round_to
from .euler import euler_rows
from .euler_cost import euler_costs, euler_costs_torch
from .step_rows import step_rows, step_rows_torch

__all__ = ["combine", "combo_costs", "combo_costs_torch", "euler_rows", "euler_costs", "euler_costs_torch",
           "pick_backend", "round_to", "step_rows", "step_rows_torch"]
