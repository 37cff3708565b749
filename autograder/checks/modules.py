"""The generic check of an ``nn.Module`` class written by a student, used by every notebook.

:func:`check_module` runs, for each ``n_components`` and in this order (coarse to fine, stop at
the first failure):

1. the class is a class (not an instance, not the result of a call);
2. ``cls(n_components)`` builds an ``nn.Module`` (positional argument, as in the slides);
3. in eval mode, for each batch size: ``forward`` returns the outputs the :class:`Spec` names
   (one tensor, or a tuple of that many), each a plain float32 tensor of the expected shape with
   finite values;
4. two outputs that must differ do (e.g. ``z_mean`` and ``z_logvar``);
5. each output (or those ``Spec.depends`` names) depends on the input;
6. the notebook's own structural checks (``Spec.extra``, e.g. the VAE decoder's floor);
7. in train mode, gradients from every output reach the parameters and are finite.

It runs under :func:`~autograder.checks.core.isolated_rng`: the notebook's random state is left
untouched. Messages have four parts (tried, expected, got, hint).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from .core import (
    CheckFailure,
    NotImplementedYet,
    call,
    failure,
    isolated_rng,
    require_callable,
    require_dtype,
    require_finite,
    require_shape,
    require_tensor,
    shape_str,
)

_randn = torch.randn
_rand = torch.rand
_grad = torch.autograd.grad
_Tensor = torch.Tensor
_float32 = torch.float32
_equal = torch.Tensor.equal

#: Batch sizes of the eval-mode forward passes, and the latent sizes the classes are built with.
BATCH_SIZES = (1, 3, 64)
N_COMPONENTS = (2, 10)
#: Batch size of the gradient check (train mode, so BatchNorm sees more than one sample).
GRAD_BATCH = 4


def _shape(value) -> tuple:
    shape = getattr(value, "shape", None)
    return tuple(shape) if shape is not None else ()


def n_components_hint(n_components: int, got_shape: tuple) -> str:
    """Hint for a code shape that ignores ``n_components``."""
    if len(got_shape) == 2 and got_shape[1] != n_components:
        return (f"n_components is not honoured: {got_shape[1]} columns for "
                f"n_components={n_components}: use n_components in the last layer instead of a "
                f"fixed number")
    if len(got_shape) >= 1 and len(got_shape) != 2:
        return ("the batch dimension was lost or an extra one kept: flatten with x.flatten(1) (or "
                "x.view(x.shape[0], -1), not x.view(-1, k) with a fixed k), then a Linear layer "
                "to n_components")
    return "the output must be (batch_size, n_components): flatten, then a Linear layer"


def image_hint(got_shape: tuple) -> str:
    """Hint for an image-shaped output of the wrong shape."""
    if len(got_shape) == 2 and got_shape[1] == 784:
        return "reshape the flat output to (batch_size, 1, 28, 28), e.g. h.view(-1, 1, 28, 28)"
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


# -- what a class must do ------------------------------------------------------------------

def _code_shape(batch_size: int, n: int | None) -> tuple:
    return (batch_size, n)


def _image_shape(batch_size: int, n: int | None) -> tuple:
    return (batch_size, 1, 28, 28)


@dataclass(frozen=True)
class Output:
    """One output of ``forward``: its name, expected shape and the hint for a wrong shape."""

    name: str
    #: (batch_size, n_components) -> expected shape; n_components is None when unknown.
    shape: Callable[[int, int | None], tuple]
    #: (n_components, got shape) -> hint for a wrong shape.
    hint: Callable[[int | None, tuple], str]


def code(name: str) -> Output:
    """An output of shape (batch_size, n_components)."""
    return Output(name, _code_shape, lambda n, got: n_components_hint(n, got))


def image(name: str, hint: Callable[[int | None, tuple], str] | None = None) -> Output:
    """An output of shape (batch_size, 1, 28, 28); ``hint`` replaces :func:`image_hint`."""
    return Output(name, _image_shape, hint or (lambda n, got: image_hint(got)))


@dataclass(frozen=True)
class Spec:
    """What ``kind(n_components).forward(input)`` must return."""

    kind: str
    input_name: str
    #: (generator, batch_size, n_components) -> an input batch.
    make_input: Callable[[torch.Generator, int, int], torch.Tensor]
    outputs: tuple[Output, ...]
    #: Hint when a tuple is due and one tensor came back: (got shape) -> hint.
    single_hint: Callable[[tuple], str] | None = None
    #: Do the outputs have to differ from each other (z_mean and z_logvar)?
    distinct: bool = False
    #: The outputs that must change with the input (None: all). A learned log-variance that is
    #: the same for every input is a valid design, so the VAE names only the means here.
    depends: tuple[str, ...] | None = None
    #: Called on the raw outputs before the per-output checks: (outputs, batch_size, n, what).
    inspect: Callable | None = None
    #: Notebook-specific structural checks, eval mode: (model, n_components, generator).
    extra: Callable | None = None
    #: The name of the constructor's one argument, as messages show it.
    size: str = "n_components"

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(o.name for o in self.outputs)

    def returns(self) -> str:
        return self.names[0] if len(self.outputs) == 1 else f"({', '.join(self.names)})"


def image_input(gen: torch.Generator, batch_size: int, n: int) -> torch.Tensor:
    return images(batch_size, gen)


def code_input(gen: torch.Generator, batch_size: int, n: int) -> torch.Tensor:
    return codes(batch_size, n, gen)


# -- the steps -------------------------------------------------------------------------------

def require_class(cls, kind: str) -> None:
    """``cls`` is the class itself, not an instance of it."""
    if isinstance(cls, nn.Module):
        raise failure(f"check_{kind.lower()}: got an instance", f"the class {kind}",
                      f"an instance of {type(cls).__qualname__}",
                      f"pass the class itself: check_{kind.lower()}({kind}); the check builds "
                      f"{kind}(n_components) for several sizes")
    require_callable(cls, kind)


def build(cls, n_components: int, kind: str, size: str = "n_components") -> nn.Module:
    """Instantiate ``cls(n_components)``, which must give an nn.Module (``size``: the name of
    the argument, for messages)."""
    if not callable(cls):
        raise failure(f"{kind}: not defined", "a class", repr(cls), "run the cell that defines it")
    what = f"{kind}({size}={n_components})"
    model = call(cls, n_components, what=what)
    if not isinstance(model, nn.Module):
        raise failure(f"{what}: not a torch module", "an instance of a subclass of torch.nn.Module",
                      f"{type(model).__module__}.{type(model).__qualname__}",
                      f"declare class {kind}(nn.Module) and call super().__init__() first")
    return model


def forward(model: nn.Module, x: torch.Tensor, n: int | None, what: str):
    """Call the model; a crash on codes whose width the first Linear layer does not take is named."""
    try:
        return call(model, x, what=what)
    except NotImplementedYet:
        raise
    except CheckFailure as exc:
        first = next((m for m in model.modules() if isinstance(m, (nn.Linear, nn.Bilinear))), None)
        in_features = getattr(first, "in_features", None)
        if x.dim() == 2 and n is not None and in_features is not None and in_features != n:
            lines = [line for line in str(exc).splitlines() if not line.startswith("  hint:")]
            lines.append(f"  hint: n_components is not honoured: the first Linear layer takes "
                         f"{in_features} inputs but z has n_components={n} columns; use "
                         f"nn.Linear(n_components, ...)")
            raise CheckFailure("\n".join(lines)) from None
        raise


def split_outputs(out, spec: Spec, batch_size: int, n: int | None, what: str) -> tuple:
    """The outputs of one forward pass, checked coarse to fine: the return type, then for each
    output a real tensor, float32, the shape, finite values."""
    k = len(spec.outputs)
    if k == 1:
        outs = (out,)
    else:
        if isinstance(out, _Tensor):
            hint = (spec.single_hint(_shape(out)) if spec.single_hint else
                    f"forward must return a tuple {spec.returns()} of {k} tensors")
            raise failure(f"{what}: wrong return type", f"a tuple {spec.returns()}",
                          f"a single tensor of shape {shape_str(out.shape)}", hint)
        if not isinstance(out, (tuple, list)) or len(out) != k:
            got = (f"a {type(out).__name__} of {len(out)} items" if isinstance(out, (tuple, list))
                   else f"{type(out).__module__}.{type(out).__qualname__}")
            raise failure(f"{what}: wrong return type", f"a tuple {spec.returns()}", got,
                          f"return exactly {'two' if k == 2 else k} tensors, in this order: "
                          f"return {', '.join(spec.names)}")
        outs = tuple(out)
        if spec.inspect is not None:
            spec.inspect(outs, batch_size, n, what)
    for t, output in zip(outs, spec.outputs):
        w = what if k == 1 else f"{what}: {output.name}"
        require_tensor(t, w)
        require_dtype(t, _float32, w)
        expected = output.shape(batch_size, n)
        if None in expected and len(_shape(t)) == len(expected):
            expected = tuple(g if e is None else e for e, g in zip(expected, _shape(t)))
        require_shape(t, expected, w, output.hint(n, _shape(t)))
        require_finite(t, w)
    return outs


def check_tensor_output(out, shape: tuple, what: str, hint: str | None = None) -> torch.Tensor:
    """One output, coarse to fine: a real torch.Tensor, float32, the shape, finite values."""
    out = require_tensor(out, what)
    require_dtype(out, _float32, what)
    require_shape(out, shape, what, hint)
    require_finite(out, what)
    return out


def check_gradients(model: nn.Module, loss: torch.Tensor, what: str) -> None:
    """Backpropagating ``loss`` gives finite gradients, not all zero, to the parameters."""
    grads_reach_parameters(model, (loss,), ("the output",), what, torch.Generator().manual_seed(0))


def _check_distinct(outs, spec: Spec, what: str) -> None:
    a, b = outs[0], outs[1]
    if bool(_equal(a.detach(), b.detach())):
        first, second = spec.names[:2]
        raise failure(f"{what}: {first} and {second} are identical", "two different outputs",
                      "the same values",
                      f"compute {second} with its own layer (or its own half of the output), "
                      f"not with the layer of {first}")


def _check_depends_on_input(model, spec: Spec, n: int, gen: torch.Generator) -> None:
    x1, x2 = spec.make_input(gen, 2, n), spec.make_input(gen, 2, n)
    what = (f"{spec.kind}({spec.size}={n}) on two different batches {spec.input_name} of shape "
            f"{shape_str(x1.shape)} (eval mode)")
    with torch.no_grad():
        a = split_outputs(forward(model, x1, n, what), spec, 2, n, what)
        b = split_outputs(forward(model, x2, n, what), spec, 2, n, what)
    for name, t1, t2 in zip(spec.names, a, b):
        if spec.depends is not None and name not in spec.depends:
            continue
        if float((t1 - t2).abs().max()) == 0.0:
            raise failure(f"{what}: {name} does not depend on {spec.input_name}: the same output "
                          f"for two different inputs", f"different {name} for different {spec.input_name}",
                          f"identical {name}",
                          f"forward must compute from its argument {spec.input_name}, not from a "
                          f"stored or constant tensor")


def grads_reach_parameters(model: nn.Module, outs, names, what: str, gen: torch.Generator) -> None:
    """Backpropagating from each output gives finite gradients, not all zero, to the parameters."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise failure(f"{what}: has no trainable parameters", "layers with parameters",
                      "model.parameters() is empty",
                      "create the layers in __init__ as attributes (self.fc = nn.Linear(...)) "
                      "after super().__init__(), or wrap lists of layers in nn.Sequential / "
                      "nn.ModuleList")
    for t, name in zip(outs, names):
        hint = (f"do not use .detach(), .numpy(), .data or torch.no_grad() in forward; compute "
                f"{name} from a layer of the model")
        if not t.requires_grad:
            raise failure(f"{what}: {name} does not depend on the model's parameters (it is cut "
                          f"off from the parameters)", "gradients from it to the parameters",
                          "requires_grad=False", hint)
        w = _randn(t.shape, generator=gen)
        grads = call(_grad, (t * w).sum(), params, allow_unused=True, retain_graph=True,
                     what=f"{what}: backward pass from {name}")
        if all(g is None or not bool((g != 0).any()) for g in grads):
            raise failure(f"{what}: gradients from {name} do not reach the parameters",
                          "a nonzero gradient for some parameter", "all None or zero", hint)
        for g in grads:
            if g is not None:
                require_finite(g, f"{what}: gradient from {name}",
                               "look for log(0), sqrt(0), division by zero or exp of a large number")


def check_module(cls, spec: Spec, *, seed: int = 0, batch_sizes=BATCH_SIZES,
                 n_components_list=N_COMPONENTS, grad_batch: int = GRAD_BATCH) -> None:
    """``cls(n)`` for each n is an nn.Module whose forward returns ``spec``'s outputs, float32,
    finite, of the right shapes for every batch size, depending on the input, trainable."""
    require_class(cls, spec.kind)
    gen = torch.Generator().manual_seed(seed)
    with isolated_rng(seed):
        for n in n_components_list:
            model = build(cls, n, spec.kind, spec.size)
            model.eval()  # BatchNorm works at batch size 1, dropout is off
            for b in batch_sizes:
                x = spec.make_input(gen, b, n)
                what = (f"{spec.kind}({spec.size}={n}) on {spec.input_name} of shape "
                        f"{shape_str(x.shape)} (eval mode)")
                with torch.no_grad():
                    outs = split_outputs(forward(model, x.clone(), n, what), spec, b, n, what)
            if spec.distinct:
                _check_distinct(outs, spec, what)
            _check_depends_on_input(model, spec, n, gen)
            if spec.extra is not None:
                spec.extra(model, n, gen)
            model.train()
            x = spec.make_input(gen, grad_batch, n)
            what = (f"{spec.kind}({spec.size}={n}) on {spec.input_name} of shape "
                    f"{shape_str(x.shape)} (train mode)")
            outs = split_outputs(forward(model, x, n, what), spec, grad_batch, n, what)
            grads_reach_parameters(model, outs, spec.names, what, gen)
            model.zero_grad()


def module_check(spec: Spec, doc: str, *, batch_sizes=BATCH_SIZES, n_components_list=N_COMPONENTS,
                 grad_batch: int = GRAD_BATCH):
    """A notebook's ``check_<kind>(cls, *, seed=0, batch_sizes=..., n_components_list=...)``:
    :func:`check_module` of ``spec`` with these defaults, ``doc`` as its docstring."""
    def check(cls, *, seed: int = 0, batch_sizes=batch_sizes,
              n_components_list=n_components_list) -> None:
        check_module(cls, spec, seed=seed, batch_sizes=batch_sizes,
                     n_components_list=n_components_list, grad_batch=grad_batch)

    check.__name__ = check.__qualname__ = f"check_{spec.kind.lower()}"
    check.__doc__ = doc
    return check


# -- trained weights -----------------------------------------------------------------------

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
