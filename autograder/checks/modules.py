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

Steps 4, 5 and 7 accuse a model only after a second look (:func:`look_again`): a freshly
initialised ReLU can be dead for every input of the usual size (a ReLU before a BatchNorm at the
end, a negative bias), and then a correct model gives the same output for two inputs, or no
gradient. The second look tries larger and negated inputs and fresh initialisations of the
layers; a model whose code ignores its input fails on every one of them.

A wrong shape (step 3) or a failed gradient step (7) names the layers that ``forward`` never
uses (their parameters get no gradient, :func:`unused_layers`): a skipped last layer is the
usual cause of a wrong shape.

It runs under :func:`~autograder.checks.core.isolated_rng`: the notebook's random state is left
untouched. Messages have four parts (tried, expected, got, hint).
"""
from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial

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
_enable_grad = torch.enable_grad
_no_grad = torch.no_grad
_deepcopy = copy.deepcopy

#: Batch sizes of the eval-mode forward passes, and the latent sizes the classes are built with.
BATCH_SIZES = (1, 3, 64)
N_COMPONENTS = (2, 10)
#: Batch size of the gradient check (train mode, so BatchNorm sees more than one sample).
GRAD_BATCH = 4
#: The second look before a structural check accuses (:func:`look_again`): the usual inputs
#: times each of these factors (a dead ReLU wakes up for larger or negated inputs), on the model
#: and on REINITS fresh initialisations of its layers, batches of WAKE_BATCH inputs in eval
#: mode (in train mode, the gradient check's batch size). REINIT_SEED seeds the first of them.
WAKE_SCALES = (1.0, -1.0, 10.0, -10.0, 100.0, -100.0)
REINITS = 3
REINIT_SEED = 1000
WAKE_BATCH = 8
#: The "got" line of a failure that the second look confirmed.
LOOKED_AGAIN = (f"also for inputs scaled by {', '.join(f'{s:g}' for s in WAKE_SCALES[1:])} and "
                f"for {REINITS} fresh initialisations of the layers")


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


def split_outputs(out, spec: Spec, batch_size: int, n: int | None, what: str,
                  diagnose: Callable[[], str | None] | None = None) -> tuple:
    """The outputs of one forward pass, checked coarse to fine: the return type, then for each
    output a real tensor, float32, the shape, finite values. ``diagnose()``, called only for a
    wrong shape, may name its likely cause (see :func:`unused_note`): it leads the hint."""
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
        hint = output.hint(n, _shape(t))
        if diagnose is not None and _shape(t) != tuple(expected):
            cause = diagnose()
            hint = f"{cause}; {hint}" if cause else hint
        require_shape(t, expected, w, hint)
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


# -- a second look before accusing, and the layers forward never uses -------------------------

def reinitialised(model: nn.Module, seed: int) -> nn.Module | None:
    """A copy of ``model``, in the same mode, whose layers draw their parameters afresh (each
    submodule's ``reset_parameters``, seeded); None if it cannot be copied or reset."""
    try:
        fresh = _deepcopy(model)
        with isolated_rng(seed):
            for module in fresh.modules():
                reset = getattr(module, "reset_parameters", None)
                if callable(reset):
                    reset()
    except Exception:  # a module that cannot be copied: no fresh initialisations to look at
        return None
    return fresh


def second_looks(model: nn.Module) -> Iterator[nn.Module]:
    """``model``, then (made only when asked for) REINITS fresh initialisations of it."""
    yield model
    for k in range(REINITS):
        fresh = reinitialised(model, REINIT_SEED + k)
        if fresh is None:
            return
        yield fresh


def look_again(model: nn.Module, suspects, probe: Callable) -> list:
    """The suspects (names of outputs) that a second look does not clear.

    ``probe(m, scale, left)`` runs ``m`` (the model, then fresh initialisations of it) on inputs
    scaled by ``scale`` (each of WAKE_SCALES) and returns the names in ``left`` for which it
    found evidence (an output that changed, a nonzero gradient). Whatever goes wrong on these
    unusual inputs (a crash, a wrong or non-finite output) is no evidence either way: the first
    look has already checked the model on the usual ones.
    """
    left = list(suspects)
    for m in second_looks(model):
        for scale in WAKE_SCALES:
            if not left:
                return left
            try:
                cleared = probe(m, scale, tuple(left))
            except CheckFailure:
                continue
            left = [name for name in left if name not in cleared]
    return left


def unused_layers(model: nn.Module, outs) -> list[tuple[str, nn.Module | None]]:
    """The layers and parameters of ``model`` that get no gradient from ``outs`` (the autograd
    graph of the outputs does not reach them), as (``self.<name> (<type>)``, the layer, or None
    for a parameter of its own). Empty when no trainable parameter is reached at all (a cut-off
    output, which its own check names)."""
    params = [p for p in model.parameters() if p.requires_grad]
    tensors = [t for t in outs if isinstance(t, _Tensor) and t.requires_grad]
    if not params or not tensors:
        return []
    try:
        with _enable_grad():
            total = sum(_Tensor.sum(t) for t in tensors)
        grads = _grad(total, params, allow_unused=True, retain_graph=True)
    except Exception:  # a graph that cannot be differentiated: nothing to say about layers
        return []
    unused = {id(p) for p, g in zip(params, grads) if g is None}
    if not unused or len(unused) == len(params):
        return []
    found: list[tuple[str, nn.Module | None]] = []

    def visit(prefix: str, module: nn.Module) -> None:
        trainable = [p for p in module.parameters() if p.requires_grad]
        if prefix and trainable and all(id(p) in unused for p in trainable):
            found.append((f"self.{prefix[:-1]} ({type(module).__name__})", module))
            return
        for key, p in module.named_parameters(recurse=False):
            if id(p) in unused:
                found.append((f"self.{prefix}{key} (a Parameter)", None))
        for key, child in module.named_children():
            visit(f"{prefix}{key}.", child)

    visit("", model)
    return found


def _listed(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + f" and {names[-1]}"


def unused_hint(parts: list[tuple[str, nn.Module | None]], called: set[int]) -> str | None:
    """What the layers of :func:`unused_layers` have in common with a bug: a layer that forward
    never calls ('self.fc (Linear) is never used in forward: its parameters got no gradient'),
    or one that it calls but whose result never reaches the outputs. ``called``: the ids of the
    modules that the forward pass called."""
    never = [name for name, m in parts if m is not None
             and not any(id(sub) in called for sub in m.modules())]
    cut = [name for name, m in parts if name not in never]
    notes = []
    if never:
        one = len(never) == 1
        notes.append(f"{_listed(never)} {'is' if one else 'are'} never used in forward: "
                     f"{'its' if one else 'their'} parameters got no gradient (apply "
                     f"{'it' if one else 'them'} in forward, or delete {'it' if one else 'them'})")
    if cut:
        one = len(cut) == 1
        notes.append(f"{_listed(cut)} {'is' if one else 'are'} called in forward but "
                     f"{'its' if one else 'their'} parameters got no gradient: "
                     f"{'its' if one else 'their'} result never reaches the outputs")
    return "; ".join(notes) or None


def unused_note(model: nn.Module, x: torch.Tensor, n: int | None, what: str) -> str | None:
    """:func:`unused_hint` for one more forward pass of ``model`` on ``x``, with gradients on
    and a hook on every layer that records the calls (None if it names nothing or the pass
    fails)."""
    called: set[int] = set()
    handles = []
    try:
        for module in model.modules():
            handles.append(module.register_forward_hook(
                lambda m, args, out: called.add(id(m))))
        with _enable_grad():
            out = forward(model, x.clone(), n, what)
            parts = unused_layers(model, out if isinstance(out, (tuple, list)) else (out,))
    except CheckFailure:
        return None
    finally:
        for handle in handles:
            handle.remove()
    return unused_hint(parts, called)


def _with_hint(exc: CheckFailure, note: str | None) -> CheckFailure:
    """``exc`` with ``note`` leading its hint."""
    if not note:
        return exc
    lines = str(exc).splitlines()
    for i, line in enumerate(lines):
        if line.startswith("  hint: "):
            lines[i] = f"  hint: {note}; {line[len('  hint: '):]}"
            return CheckFailure("\n".join(lines))
    return CheckFailure("\n".join([*lines, f"  hint: {note}"]))


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return float((_Tensor.detach(a) - _Tensor.detach(b)).abs().max()) == 0.0


# -- the structural steps ----------------------------------------------------------------------

def _check_distinct(model, outs, spec: Spec, n: int, what: str) -> None:
    if not bool(_equal(outs[0].detach(), outs[1].detach())):
        return
    gen = torch.Generator().manual_seed(REINIT_SEED)

    def probe(m, scale, left):
        x = scale * spec.make_input(gen, WAKE_BATCH, n)
        with _no_grad():
            a, b = split_outputs(forward(m, x, n, what), spec, WAKE_BATCH, n, what)[:2]
        return () if bool(_equal(a, b)) else left

    if look_again(model, ("pair",), probe):
        first, second = spec.names[:2]
        raise failure(f"{what}: {first} and {second} are identical", "two different outputs",
                      f"the same values ({LOOKED_AGAIN})",
                      f"compute {second} with its own layer (or its own half of the output), "
                      f"not with the layer of {first}")


def _check_depends_on_input(model, spec: Spec, n: int, gen: torch.Generator) -> None:
    x1, x2 = spec.make_input(gen, 2, n), spec.make_input(gen, 2, n)
    what = (f"{spec.kind}({spec.size}={n}) on two different batches {spec.input_name} of shape "
            f"{shape_str(x1.shape)} (eval mode)")
    with _no_grad():
        a = split_outputs(forward(model, x1, n, what), spec, 2, n, what,
                          partial(unused_note, model, x1, n, what))
        b = split_outputs(forward(model, x2, n, what), spec, 2, n, what)
    suspects = [name for name, t1, t2 in zip(spec.names, a, b)
                if (spec.depends is None or name in spec.depends) and _same(t1, t2)]
    if not suspects:
        return
    wake = torch.Generator().manual_seed(REINIT_SEED)

    def probe(m, scale, left):
        y1 = scale * spec.make_input(wake, WAKE_BATCH, n)
        y2 = scale * spec.make_input(wake, WAKE_BATCH, n)
        with _no_grad():
            c = split_outputs(forward(m, y1, n, what), spec, WAKE_BATCH, n, what)
            d = split_outputs(forward(m, y2, n, what), spec, WAKE_BATCH, n, what)
        return {name for name, t1, t2 in zip(spec.names, c, d) if name in left and not _same(t1, t2)}

    left = look_again(model, suspects, probe)
    if left:
        name = left[0]
        raise failure(f"{what}: {name} does not depend on {spec.input_name}: the same output "
                      f"for two different inputs", f"different {name} for different {spec.input_name}",
                      f"identical {name} ({LOOKED_AGAIN})",
                      f"forward must compute from its argument {spec.input_name}, not from a "
                      f"stored or constant tensor")


def _reaches(model: nn.Module, t: torch.Tensor, gen: torch.Generator, what: str) -> bool | None:
    """Whether backpropagating from ``t`` (weighted at random) gives some parameter of ``model``
    a nonzero gradient; None when no parameter is in its graph at all."""
    params = [p for p in model.parameters() if p.requires_grad]
    w = _randn(t.shape, generator=gen)
    grads = call(_grad, (t * w).sum(), params, allow_unused=True, retain_graph=True, what=what)
    if all(g is None for g in grads):
        return None
    return any(g is not None and bool((g != 0).any()) for g in grads)


def grads_reach_parameters(model: nn.Module, outs, names, what: str, gen: torch.Generator,
                           again: Callable | None = None,
                           diagnose: Callable[[], str | None] | None = None) -> None:
    """Backpropagating from each output gives finite gradients, not all zero, to the parameters.

    ``again(m, scale)``, if given, runs ``m`` (the model or a fresh initialisation of it) on new
    inputs scaled by ``scale`` and returns its outputs: an output whose gradients are all zero
    (a ReLU dead at initialisation) fails only if they stay zero there too (:func:`look_again`).
    ``diagnose()``, called only when the check fails, may name the layers that got no gradient
    (:func:`unused_note`): it leads the hint.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise failure(f"{what}: has no trainable parameters", "layers with parameters",
                      "model.parameters() is empty",
                      "create the layers in __init__ as attributes (self.fc = nn.Linear(...)) "
                      "after super().__init__(), or wrap lists of layers in nn.Sequential / "
                      "nn.ModuleList")

    def hint(name: str) -> str:
        return (f"do not use .detach(), .numpy(), .data or torch.no_grad() in forward; compute "
                f"{name} from a layer of the model")

    def note() -> str | None:
        return diagnose() if diagnose is not None else None

    def unreached(name: str, got: str) -> CheckFailure:
        return _with_hint(failure(f"{what}: gradients from {name} do not reach the parameters",
                                  "a nonzero gradient for some parameter", got, hint(name)),
                          note())

    zero = []
    for t, name in zip(outs, names):
        if not t.requires_grad:
            raise _with_hint(failure(f"{what}: {name} does not depend on the model's parameters "
                                     f"(it is cut off from the parameters)",
                                     "gradients from it to the parameters", "requires_grad=False",
                                     hint(name)),
                             note())
        w = _randn(t.shape, generator=gen)
        grads = call(_grad, (t * w).sum(), params, allow_unused=True, retain_graph=True,
                     what=f"{what}: backward pass from {name}")
        if all(g is None for g in grads):
            raise unreached(name, "all None or zero")
        if not any(g is not None and bool((g != 0).any()) for g in grads):
            zero.append(name)
            continue
        for g in grads:
            if g is not None:
                require_finite(g, f"{what}: gradient from {name}",
                               "look for log(0), sqrt(0), division by zero or exp of a large number")
    if not zero:
        return
    if again is not None:
        wake = torch.Generator().manual_seed(REINIT_SEED)

        def probe(m, scale, left):
            fresh = again(m, scale)
            return {name for name, t in zip(names, fresh)
                    if name in left and _reaches(m, t, wake, what)}

        zero = look_again(model, zero, probe)
    if zero:
        raise unreached(zero[0], "all zero" + (f" ({LOOKED_AGAIN})" if again is not None else ""))


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
                with _no_grad():
                    outs = split_outputs(forward(model, x.clone(), n, what), spec, b, n, what,
                                         partial(unused_note, model, x, n, what))
            if spec.distinct:
                _check_distinct(model, outs, spec, n, what)
            _check_depends_on_input(model, spec, n, gen)
            if spec.extra is not None:
                spec.extra(model, n, gen)
            model.train()
            x = spec.make_input(gen, grad_batch, n)
            what = (f"{spec.kind}({spec.size}={n}) on {spec.input_name} of shape "
                    f"{shape_str(x.shape)} (train mode)")
            outs = split_outputs(forward(model, x, n, what), spec, grad_batch, n, what,
                                 partial(unused_note, model, x, n, what))
            wake = torch.Generator().manual_seed(REINIT_SEED)

            def again(m, scale, n=n, what=what, wake=wake):
                y = scale * spec.make_input(wake, grad_batch, n)
                return split_outputs(forward(m, y, n, what), spec, grad_batch, n, what)

            grads_reach_parameters(model, outs, spec.names, what, gen, again,
                                   partial(unused_note, model, x, n, what))
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
