"""What every wrapper shares: the velocity interface of DESIGN §2 and the guidance helpers."""

from __future__ import annotations

import torch


# a network with at most this many bytes of parameters and buffers is fingerprinted by all of them;
# a larger one by its config, its tensors' shapes and an evenly spaced sample of each tensor
FULL_HASH_BYTES = 64 << 20
SAMPLE_ELEMENTS = 4096
_PLAIN = (type(None), bool, int, float, str)


def _qualified(obj) -> str:
    kind = obj if isinstance(obj, type) or callable(obj) and hasattr(obj, "__qualname__") else type(obj)
    return f"{getattr(kind, '__module__', '?')}.{getattr(kind, '__qualname__', type(kind).__qualname__)}"


def _plain(value):
    """value with everything but None, bools, numbers, strings and their lists/tuples/dicts left
    out (a config's entries the checkpoint's fingerprint can hash)."""
    if type(value) in _PLAIN:
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items() if not str(k).startswith("_")}
    return type(value).__qualname__


def _spread(t: torch.Tensor):
    """An evenly spaced sample of at most SAMPLE_ELEMENTS entries of t (a meta tensor: its shape)."""
    if t.device.type == "meta":
        return f"meta{tuple(t.shape)}{t.dtype}"
    flat = t.detach().reshape(-1)
    return flat[:: max(1, flat.numel() // SAMPLE_ELEMENTS)][:SAMPLE_ELEMENTS]


def network_fingerprint(net):
    """What determines a network's output, for a search checkpoint's fingerprint (see
    oss_fast.engine.checkpoint): its own `fingerprint` if it has one; for a torch module (or a bound
    method of one, compiled or not) its class, config and parameters and buffers -- all of them up
    to FULL_HASH_BYTES, else their shapes and an evenly spaced sample of each (another checkpoint of
    the network changes them; an edit of a few weights may go unseen); for any other callable its
    qualified name."""
    own = getattr(net, "fingerprint", None)
    if own is not None:
        return own
    net = getattr(net, "eager", net)  # compile.CompiledCall: the callable it compiles
    module = getattr(net, "__self__", net)
    if not isinstance(module, torch.nn.Module):
        return {"callable": _qualified(net)}
    state = module.state_dict()
    size = sum(t.numel() * t.element_size() for t in state.values())
    found = {"module": _qualified(module), "config": _plain(dict(getattr(module, "config", None) or {})),
             "bytes": size}
    if size <= FULL_HASH_BYTES:
        found["state"] = {k: _spread(t) if t.device.type == "meta" else t for k, t in state.items()}
    else:
        found["sample"] = {k: [list(t.shape), str(t.dtype), _spread(t)] for k, t in state.items()}
    return found


def network_config(net) -> dict:
    """What a wrapper can read of its network's input layout: a diffusers model's config, or the
    attributes the original repositories' modules carry (in_channels, in_dim, patch_size); {} for a
    plain callable."""
    net = getattr(net, "eager", net)  # compile.CompiledCall
    module = getattr(net, "__self__", net)  # a bound forward
    config = getattr(module, "config", None)
    if config is not None and callable(getattr(config, "get", None)):
        return dict(config)
    return {name: getattr(module, name) for name in ("in_channels", "in_dim", "patch_size") if hasattr(module, name)}


def _patch_sizes(patch, count: int) -> tuple:
    """A config's patch_size (an int, or one per patched dimension) as `count` ints (1: none known)."""
    if isinstance(patch, int) and not isinstance(patch, bool):
        return (patch,) * count
    if isinstance(patch, (list, tuple)) and len(patch) == count and all(isinstance(p, int) for p in patch):
        return tuple(patch)
    return (1,) * count


def check_latent_shape(x, network: str, layout: str, rank: int, channels=None, channel_dim: int = 1,
                       patch=None, fix: str = "") -> None:
    """ValueError (one line) unless x is a tensor of `rank` dimensions with `channels` entries along
    channel_dim (when the network's config says) and the dimensions after it multiples of `patch`."""
    shape = tuple(x.shape) if isinstance(x, torch.Tensor) else None
    wanted = f"{network} takes latents {layout}"
    if isinstance(channels, int) and not isinstance(channels, bool):
        wanted += f" with {channels} channels (its in_channels)"
    if shape is None or len(shape) != rank:
        raise ValueError(f"{wanted}, got {'shape ' + str(shape) if shape else type(x).__name__}{fix}")
    if isinstance(channels, int) and not isinstance(channels, bool) and shape[channel_dim] != channels:
        raise ValueError(f"{wanted}, got {shape[channel_dim]} channels in shape {shape}{fix}")
    spatial = shape[channel_dim + 1:]
    sizes = _patch_sizes(patch, len(spatial))
    if any(n % p for n, p in zip(spatial, sizes)):
        raise ValueError(f"{network} cuts latents into patches of {'x'.join(map(str, sizes))}: the sizes "
                         f"{'x'.join(map(str, spatial))} after the channels of shape {shape} must be multiples")


class VelocityWrapper:
    """A model seen as `wrapper(x, t, cond, kwargs) -> v` on the grid `fm_steps`.

    t holds grid indices, one per row; rows of one call may belong to different samples and grid
    indices. per_sample_kwargs names the kwargs whose first dimension follows the samples (the
    search gathers them per row); cond always does. `fingerprint` is what a search checkpoint
    knows the wrapper by: its class, the network (network_fingerprint) and the settings that
    change its output (`fingerprint_fields`).
    """

    fm_steps: torch.Tensor
    per_sample_kwargs: tuple = ()

    def __call__(self, x, t, cond, kwargs):
        raise NotImplementedError

    def fingerprint_fields(self) -> dict:
        """The wrapper's settings that change its output, beyond the grid and the network."""
        return {}

    def check_latent(self, x) -> None:
        """ValueError (one line) if latents of x's shape [B, ...] do not fit the network's config;
        the search calls it on its noises before any model call, the wrapper on every call."""

    @property
    def fingerprint(self) -> dict:
        return dict(wrapper=_qualified(self), network=network_fingerprint(self.network), **self.fingerprint_fields())

    @property
    def network(self):
        """The wrapped network (or callable)."""
        return getattr(self, "model", None)


def repeat_rows(value, rows: int):
    """A shared input (first dimension 1, or a list of one) repeated for `rows` rows."""
    if isinstance(value, (list, tuple)):
        return list(value) * rows if len(value) == 1 else list(value)
    if value.shape[0] == rows:
        return value
    return value[:1].expand(rows, *value.shape[1:])


HALF_DTYPES = (torch.float16, torch.bfloat16)


def half_dtype(model) -> torch.dtype | None:
    """float16/bfloat16 when the network computes in it (a module, a diffusers model, or a bound
    forward of one), else None. Wrappers cast inputs into a half network and its outputs back out,
    so a network loaded the way diffusers' examples load it (torch_dtype=torch.bfloat16) just runs."""
    dtype = getattr(model, "dtype", None)
    if not isinstance(dtype, torch.dtype):
        owner = getattr(model, "__self__", model)
        params = getattr(owner, "parameters", None)
        dtype = next((p.dtype for p in params() if p.is_floating_point()), None) if callable(params) else None
    return dtype if dtype in HALF_DTYPES else None


def into(value, dtype):
    """A floating tensor cast to dtype (None: unchanged); anything else unchanged."""
    if dtype is None or not isinstance(value, torch.Tensor) or not value.is_floating_point():
        return value
    return value.to(dtype)


def guided(cond_pred: torch.Tensor, uncond_pred: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance: uncond + scale * (cond - uncond)."""
    return uncond_pred + scale * (cond_pred - uncond_pred)

