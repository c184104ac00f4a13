"""Test helpers: run device-placement checks for CUDA on a machine without a GPU.

    with fake_cuda():
        model = build_model().to("cuda")
        batch = torch.randn(8, 3, 32, 32, device="cuda")
        loss = train_step_forward(model, batch)     # a CPU tensor mixed in anywhere raises

Inside `fake_cuda()` every tensor is a FakeTensor (shapes, dtypes and devices only, no data), so forward passes of
any size run in milliseconds and code that forgets a `.to(device)` fails with FakeTensorDeviceMismatchError exactly
where real CUDA would fail. Backward, `.item()`, `torch.cuda.*` calls and autocast do not run there (CUDA autocast
switches itself off with a warning when no GPU is present, which is silenced here). `fake_cuda(skip_backward=True)`
turns `loss.backward()` into a no-op and `torch.autograd.grad` into zeros shaped and placed like its inputs, so a
whole training step (forward, optimizer step on gradient-less parameters, schedulers) or a gradient-based
attribution can be run for its device placement.
"""
from __future__ import annotations

import contextlib
import warnings

import torch
from torch import nn

__all__ = ["fake_cuda", "is_fake", "DeviceMismatch"]

try:  # the error class moved between releases; both derive from RuntimeError
    from torch._subclasses.fake_tensor import FakeTensorDeviceMismatchError as DeviceMismatch
except ImportError:  # pragma: no cover - older torch
    DeviceMismatch = RuntimeError


def is_fake(t) -> bool:
    from torch._subclasses.fake_tensor import FakeTensor

    return isinstance(t, FakeTensor)


def _apply_replacing(self: nn.Module, fn, recurse: bool = True):
    """Module._apply for fake parameters: replace each parameter/buffer by its converted copy.

    The stock _apply swaps fake parameters in place (torch.utils.swap_tensors), which refuses tensors that the fake
    mode holds weak references to; replacing keeps `model.to("cuda")`, `.half()`, `.float()` working on fake
    modules. Optimisers must be built after `.to()` (as on a real GPU)."""
    if recurse:
        for child in self.children():
            child._apply(fn)
    for key, p in list(self._parameters.items()):
        if p is not None:
            with torch.no_grad():
                self._parameters[key] = nn.Parameter(fn(p), p.requires_grad)
    for key, b in list(self._buffers.items()):
        if b is not None:
            self._buffers[key] = fn(b)
    return self


def _zero_grad(outputs, inputs, *args, **kwargs):
    """torch.autograd.grad stand-in under skip_backward: zeros with the inputs' shapes, dtypes and devices."""
    return tuple(torch.zeros_like(t) for t in ((inputs,) if torch.is_tensor(inputs) else inputs))


@contextlib.contextmanager
def fake_cuda(skip_backward: bool = False):
    """Fake CUDA for device-placement tests on a CPU-only machine (see the module docstring).

    Yields the FakeTensorMode. Real tensors created before entering cannot be used inside (they raise too): build
    models, teachers and batches inside the block. skip_backward: `Tensor.backward` does nothing inside the block
    (backward needs a real CUDA context), so code that trains can be run end to end."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    from .data.loader import ResumableSampler

    original = nn.Module._apply
    original_backward, original_grad = torch.Tensor.backward, torch.autograd.grad
    original_indices = ResumableSampler.indices

    def _host_indices(self):  # sample order is host-side bookkeeping (a Python list): computed for real
        from torch._subclasses.fake_tensor import unset_fake_temporarily

        with unset_fake_temporarily():
            return original_indices(self)

    def _apply(self, fn, recurse=True):
        if any(is_fake(t) for t in self._parameters.values() if t is not None) or any(
                is_fake(t) for t in self._buffers.values() if t is not None):
            return _apply_replacing(self, fn, recurse)
        return original(self, fn, recurse)

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*CUDA is not available.*")
        warnings.filterwarnings("ignore", message=".*torch.cuda.amp.GradScaler is enabled, but CUDA.*")
        nn.Module._apply = _apply
        ResumableSampler.indices = _host_indices
        if skip_backward:
            torch.Tensor.backward = lambda self, *a, **k: None
            torch.autograd.grad = _zero_grad
        try:
            with FakeTensorMode(allow_non_fake_inputs=False) as mode:
                yield mode
        finally:
            nn.Module._apply = original
            torch.Tensor.backward, torch.autograd.grad = original_backward, original_grad
            ResumableSampler.indices = original_indices
