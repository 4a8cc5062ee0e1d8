"""Hand-offs to the tools people sample in: diffusers (diffusers.py: call arguments, schedulers and
exports, which Schedule's to_diffusers, applied, ... call), the ComfyUI node (comfyui.py) and
diffusers pipelines loaded by name (pipelines.py)."""
