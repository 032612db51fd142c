"""The network a run trains: built in, registered by name, or the user's own object.

* Built in: ``mlp`` (the DER paper's 784-100-100-K MLP, for flat inputs and one-channel
  28x28 images) and ``resnet18`` (its reduced-stem ResNet-18, for 3-channel images). A
  benchmark without a ``net`` gets the one its inputs suit.
* Registered: ``@register_backbone("name")`` on a factory ``f(num_classes) -> nn.Module``
  (it may also take ``input_shape``, the shape of one sample), for ``--backbone NAME``.
* An object: an ``nn.Module`` with one output per class (every run starts from a copy of
  its weights), or a factory (called after the run's seed is set, so each seed draws its
  own initial weights).

A network's identity (in the config hash) is its name, or its class's or factory's
qualified name, plus a fingerprint of its architecture and initial weights
(:func:`network_fingerprint`); the built-in networks are known by name alone.
"""

from __future__ import annotations

import copy
import hashlib
import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..data.protocols import BenchmarkInfo
from ..errors import ConfigError, describe
from ..plugins import (
    check_new_name,
    check_registration,
    load_entry_point_plugins,
    qualified_name,
)
from .run_config import NetworkChoice

if TYPE_CHECKING:
    from torch import nn

BUILTIN_BACKBONES = ("mlp", "resnet18")
_REGISTERED: dict[str, Callable] = {}
# (id(factory), num_classes, input shape) -> (factory, fingerprint); id(module) -> (key,
# module, fingerprint): ids, so that unhashable factories (a dataclass) can be cached too
_FINGERPRINTS: dict[tuple, tuple] = {}
_MODULE_FINGERPRINTS: dict[int, tuple] = {}


def register_backbone(name: str):
    """Decorator: make ``name`` a network of ``--backbone`` and sweep files. The decorated
    factory takes the number of classes (and, if it has such a parameter,
    ``input_shape``) and returns an ``nn.Module`` with one output per class."""
    check_new_name("backbone", name, BUILTIN_BACKBONES)

    def register(factory: Callable) -> Callable:
        check_registration("backbone", name, _REGISTERED.get(name), factory)
        _REGISTERED[name] = factory
        return factory
    return register


def backbone_names() -> list[str]:
    load_entry_point_plugins()
    return [*BUILTIN_BACKBONES, *sorted(_REGISTERED)]


def choose_network(net, benchmark: BenchmarkInfo) -> NetworkChoice:
    """What ``net`` (None, a name, an nn.Module or a factory) means for a run on
    ``benchmark``; a ConfigError when it cannot serve it (an unknown name, no network for
    these inputs)."""
    if net is None or net == benchmark.default_backbone:
        if benchmark.default_backbone is None:
            raise ConfigError(
                f"no built-in network takes {benchmark.name}'s inputs of shape "
                f"{benchmark.input_shape} (the MLP takes flat or 1x28x28 inputs, the "
                "ResNet-18 3-channel images): pass net= (an nn.Module or a factory), or "
                "--backbone NAME of one registered with @replaymask.register_backbone")
        return NetworkChoice()
    if isinstance(net, str):  # names are resolved without torch
        if net == "resnet18" and len(benchmark.input_shape) != 3:
            raise ConfigError(f"the resnet18 backbone takes images of shape (C, H, W); "
                              f"{benchmark.name}'s inputs are {benchmark.input_shape}")
        if net in BUILTIN_BACKBONES:
            return NetworkChoice(net)
        load_entry_point_plugins()
        if net not in _REGISTERED:
            raise ConfigError(f"--backbone: unknown backbone {net!r} (known: "
                              f"{', '.join(backbone_names())}; "
                              "a module of yours registers more with "
                              "@replaymask.register_backbone: load it with --import MODULE)")
        factory = _REGISTERED[net]
        return NetworkChoice(net, _factory_fingerprint(factory, benchmark), "registered",
                             factory=qualified_name(factory))
    from torch import nn  # an object: the user has imported torch already

    if isinstance(net, nn.Module):
        return NetworkChoice(qualified_name(type(net)), module_fingerprint(net), "module")
    if callable(net):
        return NetworkChoice(qualified_name(net), _factory_fingerprint(net, benchmark), "factory")
    raise ConfigError(f"net must be an nn.Module, a factory f(num_classes) -> nn.Module or a "
                      f"backbone's name, got {describe(net)}")


def build_network(choice: NetworkChoice, benchmark: BenchmarkInfo, source=None) -> nn.Module:
    """A fresh network for one run (call it after seeding: built-in networks and
    factories draw their initial weights from torch's generator); ``source`` is the
    nn.Module or factory of a choice of kind "module" or "factory"."""
    from .backbones import MLP, ResNet18

    if choice.kind in ("module", "factory"):
        if source is None:
            raise ConfigError(f"this run's network is an object ({choice.name}): pass it "
                              "as net=")
        if choice.kind == "module":
            return copy.deepcopy(source)
        return _call_factory(source, benchmark)
    name = choice.name or benchmark.default_backbone
    if name == "resnet18":
        return ResNet18(num_classes=benchmark.num_classes, in_channels=benchmark.input_shape[0])
    if name == "mlp":
        return MLP(input_size=_numel(benchmark.input_shape), num_classes=benchmark.num_classes)
    load_entry_point_plugins()
    if name not in _REGISTERED:
        raise ConfigError(f"unknown backbone {name!r} (known: {', '.join(backbone_names())})")
    return _call_factory(_REGISTERED[name], benchmark)


def default_network(benchmark) -> nn.Module:
    """The built-in network that suits ``benchmark``'s inputs (a Benchmark or its info),
    freshly initialised from torch's generator."""
    info = getattr(benchmark, "info", benchmark)
    return build_network(choose_network(None, info), info)


def check_network(net: nn.Module, benchmark, name: str) -> None:
    """One batch of the benchmark's test inputs through ``net`` (no gradient, evaluation
    mode, torch's random state untouched): a ConfigError when it fails or gives other
    than one output per class."""
    import torch
    from torch import nn

    if not isinstance(net, nn.Module):
        raise ConfigError(f"the network {name} must be an nn.Module, got {describe(net)}")
    if not any(p.requires_grad for p in net.parameters()):
        raise ConfigError(f"the network {name} has no trainable parameters")
    inputs = benchmark.prepare(benchmark.test_inputs[:2])
    device = next(net.parameters()).device
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            outputs = net(inputs.to(device))
    except Exception as error:
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ConfigError(f"the network {name} fails on a batch of shape "
                          f"{tuple(inputs.shape)} ({inputs.dtype}): {type(error).__name__}: "
                          f"{message}") from None
    finally:
        net.train(was_training)
    expected = (len(inputs), benchmark.num_classes)
    if not isinstance(outputs, torch.Tensor) or tuple(outputs.shape) != expected:
        shape = tuple(outputs.shape) if isinstance(outputs, torch.Tensor) else describe(outputs)
        raise ConfigError(f"the network {name} gives outputs of shape {shape} for a batch "
                          f"of {len(inputs)}, but {benchmark.name} has "
                          f"{benchmark.num_classes} classes: it needs one output per class, "
                          f"shape {expected}")


def module_fingerprint(net: nn.Module) -> str:
    """SHA-256 of a module's class, the code of its classes (the torch.nn ones excepted:
    their version is the torch version's), its architecture (its repr) and its weights and
    buffers. Cached per module until any of its tensors is changed in place."""
    import torch

    state = net.state_dict()
    key = (id(net), repr(net), tuple((name, t.data_ptr(), t._version)
                                     for name, t in state.items()))
    cached = _MODULE_FINGERPRINTS.get(id(net))
    if cached is not None and cached[0] == key and cached[1] is net:
        return cached[2]
    digest = hashlib.sha256(f"{qualified_name(type(net))}\n{net!r}\n".encode())
    for kind in sorted({type(module) for module in net.modules()}, key=qualified_name):
        digest.update(_source_of(kind).encode())
    for name, tensor in state.items():
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}:".encode())
        if tensor.numel():
            digest.update(memoryview(tensor.reshape(-1).view(torch.uint8).numpy()))
    if len(_MODULE_FINGERPRINTS) > 256:
        _MODULE_FINGERPRINTS.clear()
    _MODULE_FINGERPRINTS[id(net)] = (key, net, digest.hexdigest())
    return digest.hexdigest()


def _source_of(thing) -> str:
    """The code of a user's class or function ("" for torch's own, or where Python cannot
    find it: a class typed into an interpreter)."""
    if getattr(thing, "__module__", "").startswith("torch."):
        return ""
    try:
        return inspect.getsource(thing)
    except (OSError, TypeError):
        return ""


def _factory_fingerprint(factory: Callable, benchmark: BenchmarkInfo) -> str:
    """The fingerprint of a factory: its code and what it builds for ``benchmark`` with
    torch seeded 0 (torch's random state is left as it was)."""
    import torch

    key = (id(factory), benchmark.num_classes, benchmark.input_shape)
    cached = _FINGERPRINTS.get(key)
    if cached is None or cached[0] is not factory:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            net = _call_factory(factory, benchmark)
        digest = hashlib.sha256(b"factory\n" + _source_of(factory).encode()
                                + module_fingerprint(net).encode())
        cached = _FINGERPRINTS[key] = (factory, digest.hexdigest())
    return cached[1]


def _call_factory(factory: Callable, benchmark: BenchmarkInfo) -> nn.Module:
    from torch import nn

    kwargs = {}
    try:
        if "input_shape" in inspect.signature(factory).parameters:
            kwargs["input_shape"] = tuple(benchmark.input_shape)
    except (TypeError, ValueError):
        pass
    name = qualified_name(factory)
    try:
        net = factory(benchmark.num_classes, **kwargs)
    except Exception as error:
        message = str(error).splitlines()[0] if str(error) else ""
        raise ConfigError(f"the network factory {name} raised {type(error).__name__}"
                          + (f": {message}" if message else "")
                          + f" (called with num_classes={benchmark.num_classes})") from None
    if not isinstance(net, nn.Module):
        raise ConfigError(f"the network factory {name} must return an nn.Module, got "
                          f"{describe(net)}")
    return net


def _numel(shape) -> int:
    count = 1
    for size in shape:
        count *= size
    return count
