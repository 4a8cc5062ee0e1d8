"""Hand-offs to the tools people sample in: the ComfyUI node (comfyui.py). The diffusers hand-off
is a Schedule's own (schedule.py: to_diffusers, applied)."""
