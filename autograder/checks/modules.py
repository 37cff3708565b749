"""Generic checks of nn.Module classes written by students: construction, output types
and shapes over several batch sizes and n_components, gradients, input dependence."""
from __future__ import annotations

import torch
from torch import nn

from .core import CheckFailure, call, failure, require_dtype, require_finite, require_shape, require_tensor

_randn = torch.randn
_rand = torch.rand


def build(cls, n_components: int, what: str) -> nn.Module:
    """Instantiate ``cls(n_components)``, which must give an nn.Module."""
    if not callable(cls):
        raise failure(f"{what}: not defined", "a class", repr(cls),
                      "run the cell that defines it")
    model = call(cls, n_components, what=f"{what}(n_components={n_components})")
    if not isinstance(model, nn.Module):
        raise failure(f"{what}(n_components={n_components}): not an nn.Module",
                      "an instance of a subclass of torch.nn.Module", type(model).__name__,
                      "derive the class from nn.Module and call super().__init__()")
    return model


def n_components_hint(n_components: int, got_shape: tuple) -> str:
    """Hint for a code shape that ignores ``n_components``."""
    if len(got_shape) == 2 and got_shape[1] != n_components:
        return (f"the code has {got_shape[1]} columns for n_components={n_components}: "
                f"use n_components in the last layer instead of a fixed number")
    return "the output must be (batch_size, n_components): flatten, then a Linear layer"


def image_hint(got_shape: tuple) -> str:
    """Hint for an image-shaped output of the wrong shape."""
    if len(got_shape) == 2 and got_shape[1] == 784:
        return "reshape the flat output to (batch_size, 1, 28, 28)"
    if len(got_shape) == 3:
        return "keep the channel dimension: (batch_size, 1, 28, 28)"
    if len(got_shape) == 4 and got_shape[-1] != 28:
        return ("transposed convolutions change the size by (kernel_size - 1) - 2*padding; "
                "work the sizes out layer by layer back to 28 x 28")
    return "the output must have the shape of the input images, (batch_size, 1, 28, 28)"


def images(batch_size: int, generator: torch.Generator) -> torch.Tensor:
    """A batch of random images in [0, 1], shape (batch_size, 1, 28, 28)."""
    return _rand(batch_size, 1, 28, 28, generator=generator)


def codes(batch_size: int, n_components: int, generator: torch.Generator) -> torch.Tensor:
    """A batch of standard-normal codes, shape (batch_size, n_components)."""
    return _randn(batch_size, n_components, generator=generator)


def check_tensor_output(out, shape: tuple, what: str, hint: str) -> torch.Tensor:
    """A real float32 tensor of the given shape with finite values."""
    out = require_tensor(out, what)
    require_shape(out, shape, what, hint)
    require_dtype(out, torch.float32, what)
    require_finite(out, what)
    return out


def check_gradients(model: nn.Module, loss: torch.Tensor, what: str) -> None:
    """Backpropagating ``loss`` gives finite gradients, not all zero, to the parameters."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise failure(f"{what}: has no trainable parameters", "layers with parameters",
                      "model.parameters() is empty",
                      "create the layers in __init__ as attributes (self.fc = nn.Linear(...)), "
                      "or wrap lists of layers in nn.Sequential / nn.ModuleList")
    if not loss.requires_grad:
        raise failure(f"{what}: the output is cut off from the parameters",
                      "an output that requires grad", "requires_grad=False",
                      "do not use .detach(), .numpy(), .data or torch.no_grad() in forward")
    model.zero_grad()
    loss.backward()
    grads = [p.grad for p in params if p.grad is not None]
    if not grads or all(float(g.abs().sum()) == 0.0 for g in grads):
        raise failure(f"{what}: gradients do not reach the parameters",
                      "non-zero gradients", "all gradients are zero or None",
                      "do not use .detach(), .numpy(), .data or torch.no_grad() in forward")
    if not all(bool(torch.isfinite(g).all()) for g in grads):
        raise failure(f"{what}: non-finite gradients", "finite gradients", "nan or inf",
                      "look for log(0), sqrt(0) or division by zero in forward")


def load_weights(what: str, *pairs) -> None:
    """Load saved weights into models, ``pairs`` of (model, path); any problem (missing,
    unreadable, corrupt or mis-fitting file) becomes a CheckFailure naming it."""
    import contextlib
    import io

    from data_tools.utils import WeightsError, load_model

    try:
        with contextlib.redirect_stdout(io.StringIO()):
            for model, path in pairs:
                load_model(model, path)
    except WeightsError as exc:
        raise CheckFailure(f"loading the trained {what}: {exc}") from None
    except OSError as exc:  # e.g. a file the grader may not read
        raise failure(f"loading the trained {what}: could not read {exc.filename or 'the weights'}",
                      "a readable file", f"{type(exc).__name__}: {exc.strerror or exc}",
                      "save the weights again with save_model and submit the .pth files with "
                      "the notebook") from None
