"""oss_fast's ComfyUI custom-node folder: copy or symlink it into ComfyUI/custom_nodes, with oss_fast
installed into the Python ComfyUI runs with (`pip install /path/to/oss_fast`, a clone or a wheel built
from one). ComfyUI imports the folder and reads NODE_CLASS_MAPPINGS (the "OSS schedule" node);
importing it also puts the OSS schedules in ComfyUI's scheduler list (register_schedulers)."""

try:
    # absolute: ComfyUI imports this folder as a top-level module of its own name, not as part of oss_fast
    from oss_fast.integrations.comfyui import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS, register_schedulers
except ModuleNotFoundError as err:
    if err.name != "oss_fast":
        raise
    raise ModuleNotFoundError("oss_fast is not installed in the Python ComfyUI runs with: pip install "
                              "/path/to/oss_fast (a clone, or dist/oss_fast-*.whl built from one)",
                              name="oss_fast") from None

register_schedulers()

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
