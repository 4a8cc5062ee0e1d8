"""k-diffusion's samplers (k_diffusion.sampling) without its package's heavy imports.

The package's __init__ pulls torchvision, CLIP, wandb and more; the samplers need only torch, scipy
and one helper of k_diffusion.utils. run.sh installs k-diffusion with --no-deps; this loads
sampling.py alone, with stand-ins for the modules that only other samplers use.
"""

import functools
import importlib.util
import sys
import types
from pathlib import Path


@functools.cache
def load_sampling():
    """The k_diffusion.sampling module, or None when k-diffusion is not installed."""
    spec = importlib.util.find_spec("k_diffusion")
    if spec is None:
        return None
    folder = Path(spec.submodule_search_locations[0])
    for name in ("torchdiffeq", "torchsde"):  # only the adaptive and SDE samplers use them
        if importlib.util.find_spec(name) is None:
            stand_in = types.ModuleType(name)
            stand_in.odeint, stand_in.BrownianInterval = None, object
            sys.modules.setdefault(name, stand_in)
    utils = types.ModuleType("k_diffusion.utils")
    utils.append_dims = lambda x, n: x[(...,) + (None,) * (n - x.ndim)]
    package = types.ModuleType("k_diffusion")
    package.__path__, package.utils = [str(folder)], utils
    sys.modules["k_diffusion"], sys.modules["k_diffusion.utils"] = package, utils
    module_spec = importlib.util.spec_from_file_location("k_diffusion.sampling", folder / "sampling.py")
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module
