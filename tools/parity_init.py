"""The deterministic parameter formula of models/include/models/parity_init.h, for PyTorch.

Tensors are visited in state_dict() order; see the C++ header for the rules. Both sides
compute in double and then store in the tensor's dtype, so a torchvision model and ours get
identical values without any weight file.
"""
import math

import torch


def parity_values(name, shape, k):
    numel = 1
    for s in shape:
        numel *= s
    idx = torch.arange(numel, dtype=torch.float64)
    u = torch.sin(0.37 * (idx + 1) + 0.11 * (k + 1))
    if name.endswith("num_batches_tracked"):
        return torch.zeros(numel, dtype=torch.float64).reshape(shape)
    if name.endswith("running_var"):
        v = 1.0 + 0.5 * u.abs()
    elif name.endswith("running_mean"):
        v = 0.1 * u
    elif name.endswith("scale_weight"):
        v = 20.0 + u
    elif len(shape) == 1:
        v = 1.0 + 0.1 * u if (name.endswith(".weight") or name == "weight") else 0.05 * u
    else:
        fan_in = numel // shape[0] if shape[0] else 1
        v = u * math.sqrt(3.0 / fan_in)
    return v.reshape(shape)


@torch.no_grad()
def parity_init(model):
    for k, (name, t) in enumerate(model.state_dict().items()):
        t.copy_(parity_values(name, list(t.shape), k).to(t.dtype))
