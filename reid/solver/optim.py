"""Optimizers with parameter groups: :func:`make_optimizer` from plain arguments,
:func:`build_optimizer` from SOLVER.

Every parameter of the model goes into the optimizer, trainable or not: freezing and unfreezing
later is done by ``requires_grad`` alone (a frozen parameter gets no gradient, and torch's
optimizers skip parameters whose ``grad`` is None, so it does not move, weight decay and momentum
included, as long as gradients are cleared with ``zero_grad()``'s default ``set_to_none=True``).

Default groups, one per kind of parameter (``name`` key of the group; the capitals are the SOLVER
keys, the arguments of :func:`make_optimizer` in lower case):

=====================  ===============================  ==================
group                  learning rate                    weight decay
=====================  ===============================  ==================
``body/weight``        BASE_LR                          WEIGHT_DECAY
``body/bias``          BASE_LR * BIAS_LR_FACTOR         WEIGHT_DECAY_BIAS
``body/norm_weight``   BASE_LR                          WEIGHT_DECAY_NORM
``body/norm_bias``     BASE_LR * BIAS_LR_FACTOR         WEIGHT_DECAY_BIAS
``heads/<same>``       the same times HEADS_LR_FACTOR   the same
=====================  ===============================  ==================

"norm" = the weight and bias of normalisation layers (batch, instance, group, layer norm);
"bias" = any other parameter whose attribute name is ``bias``; "heads" = parameters under the
model's top-level child module named ``heads`` (after an optional DDP ``module.`` prefix). As in
fastreid, every bias, a normalisation layer's included, has WEIGHT_DECAY_BIAS.

Modules may also define their own groups: any module inside the model with a method
``param_groups(self) -> List[dict]`` (torch param-group dicts, e.g. center-loss centers with their
own ``lr`` and ``weight_decay``) has those groups added as they are; keys they leave out take the
optimizer's defaults (``lr`` = BASE_LR, ``weight_decay`` = WEIGHT_DECAY), and their parameters are
kept out of the default groups. The LR schedule scales every group from its own starting LR.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import nn
from yacs.config import CfgNode

from reid.config.schema import ConfigBlock, ConfigError, InvalidArgument, Key, declare
from reid.utils.registry import Registry

__all__ = [
    "OPTIMIZER_CONFIG",
    "OPTIMIZER_REGISTRY",
    "build_optimizer",
    "get_param_groups",
    "group_names",
    "make_optimizer",
]

OPTIMIZER_CONFIG = declare(
    ConfigBlock(
        "SOLVER",
        "The optimizer and its parameter groups (reid/solver/optim.py).",
        {
            "OPT": Key("Adam", 'The optimizer: "Adam", "AdamW" or "SGD".'),
            "BASE_LR": Key(
                3e-4, "Learning rate of the main parameter groups once the warm-up is over."
            ),
            "BIAS_LR_FACTOR": Key(1.0, "LR multiplier of bias parameters."),
            "HEADS_LR_FACTOR": Key(1.0, "LR multiplier of the head's parameters."),
            "MOMENTUM": Key(0.9, "SGD's momentum (Adam and AdamW use their betas)."),
            "NESTEROV": Key(False, "Nesterov momentum for SGD."),
            "WEIGHT_DECAY": Key(0.0005, "Weight decay of the weights of non-normalisation layers."),
            "WEIGHT_DECAY_NORM": Key(0.0005, "Weight decay of normalisation layers' weights."),
            "WEIGHT_DECAY_BIAS": Key(
                0.0005, "Weight decay of every bias, normalisation layers' included (fastreid's)."
            ),
            "OPT_IMPL": Key(
                "auto",
                (
                    'The optimizer\'s implementation: "fused" (one kernel for all parameters; '
                    'lets a float16 gradient scaler step without a host read), "foreach" '
                    '(batched over parameters), "for_loop" (one parameter at a time) or "auto" '
                    "(fused when every parameter is on CUDA, else torch's default)."
                ),
            ),
        },
    )
)


OPTIMIZER_REGISTRY = Registry("OPTIMIZER")
OPTIMIZER_REGISTRY.__doc__ = """Optimizers by SOLVER.OPT: ``fn(param_groups, lr, weight_decay,
momentum, nesterov, **implementation) -> torch.optim.Optimizer``; ``lr`` and ``weight_decay`` are
the defaults of groups that do not set their own; ``implementation`` is torch's ``fused=True``,
``foreach=True`` or ``foreach=False`` (SOLVER.OPT_IMPL), or empty for torch's default: a function
without ``**implementation`` supports only "auto"."""

IMPLEMENTATIONS = {
    "fused": {"fused": True},
    "foreach": {"foreach": True},
    "for_loop": {"foreach": False},
}


def _implementation(opt: str, opt_impl: str, params: list[torch.Tensor]) -> dict[str, bool]:
    """The keyword arguments that select SOLVER.OPT_IMPL's implementation of optimizer ``opt``."""
    if opt_impl != "auto" and opt_impl not in IMPLEMENTATIONS:
        raise InvalidArgument(
            "opt_impl", f"must be one of {['auto', *IMPLEMENTATIONS]}, got {opt_impl!r}"
        )
    accepts = any(
        p.kind is inspect.Parameter.VAR_KEYWORD
        for p in inspect.signature(OPTIMIZER_REGISTRY.get(opt)).parameters.values()
    )
    if opt_impl == "auto":
        on_cuda = bool(params) and all(p.is_cuda for p in params)
        return dict(IMPLEMENTATIONS["fused"]) if accepts and on_cuda else {}
    if not accepts:
        raise InvalidArgument(
            "opt_impl", f"{opt_impl!r} is not available for optimizer {opt!r} (only 'auto')"
        )
    return dict(IMPLEMENTATIONS[opt_impl])


NORM_TYPES = (
    nn.modules.batchnorm._BatchNorm,
    nn.modules.instancenorm._InstanceNorm,
    nn.GroupNorm,
    nn.LayerNorm,
)


@OPTIMIZER_REGISTRY.register(name="Adam")
def adam(
    param_groups: list[dict[str, Any]],
    lr: float,
    weight_decay: float,
    momentum: float = 0.9,
    nesterov: bool = False,
    **implementation: Any,
) -> torch.optim.Optimizer:
    """Adam with L2 weight decay added to the gradient (torch's Adam); no momentum option."""
    return torch.optim.Adam(param_groups, lr=lr, weight_decay=weight_decay, **implementation)


@OPTIMIZER_REGISTRY.register(name="AdamW")
def adamw(
    param_groups: list[dict[str, Any]],
    lr: float,
    weight_decay: float,
    momentum: float = 0.9,
    nesterov: bool = False,
    **implementation: Any,
) -> torch.optim.Optimizer:
    """Adam with decoupled weight decay: each step shrinks a parameter by lr * weight_decay."""
    return torch.optim.AdamW(param_groups, lr=lr, weight_decay=weight_decay, **implementation)


@OPTIMIZER_REGISTRY.register(name="SGD")
def sgd(
    param_groups: list[dict[str, Any]],
    lr: float,
    weight_decay: float,
    momentum: float = 0.9,
    nesterov: bool = False,
    **implementation: Any,
) -> torch.optim.Optimizer:
    """SGD with (optionally Nesterov) momentum and L2 weight decay."""
    if momentum < 0:
        raise InvalidArgument("momentum", f"must be >= 0, got {momentum}")
    if nesterov and momentum == 0:
        raise InvalidArgument("nesterov", f"True needs a momentum > 0, got momentum {momentum}")
    return torch.optim.SGD(
        param_groups,
        lr=lr,
        momentum=momentum,
        nesterov=nesterov,
        weight_decay=weight_decay,
        **implementation,
    )


def _is_heads(module_name: str) -> bool:
    parts = module_name.split(".")
    if parts[0] == "module":
        parts = parts[1:]
    return bool(parts) and parts[0] == "heads"


def _checked_groups(owner: str, declared: Any) -> list[dict[str, Any]]:
    """What a ``param_groups()`` returned, checked to be param-group dicts, ``params`` as lists."""
    if not isinstance(declared, (list, tuple)):
        raise TypeError(
            f"{owner} must return a list of param-group dicts, got {type(declared).__name__}"
        )
    groups = []
    for i, group in enumerate(declared):
        if not isinstance(group, dict) or "params" not in group:
            raise TypeError(f"{owner}[{i}] must be a dict with a 'params' entry, got {group!r}")
        params = group["params"]
        groups.append(
            dict(group, params=[params] if isinstance(params, torch.Tensor) else list(params))
        )
    return groups


def _custom_groups(model: nn.Module) -> list[dict[str, Any]]:
    """The groups modules declare through ``param_groups()``, each parameter of the model once."""
    model_params = {id(p) for p in model.parameters()}
    claimed: dict[int, str] = {}
    groups: list[dict[str, Any]] = []
    for module_name, module in model.named_modules():
        declare = getattr(module, "param_groups", None)
        if not callable(declare):
            continue
        kind = type(module).__name__
        owner = f"module '{module_name or kind}' ({kind}).param_groups()"
        for i, group in enumerate(_checked_groups(owner, declare())):
            for p in group["params"]:
                if not isinstance(p, nn.Parameter) or id(p) not in model_params:
                    raise ValueError(
                        f"{owner}[{i}] lists a tensor that is not a parameter of the model"
                    )
                if id(p) in claimed:
                    raise ValueError(
                        f"{owner}[{i}] lists a parameter already claimed by {claimed[id(p)]}"
                    )
                claimed[id(p)] = owner
            group.setdefault("name", f"{module_name or 'model'}/param_groups[{i}]")
            groups.append(group)
    return groups


def get_param_groups(
    model: nn.Module,
    base_lr: float,
    bias_lr_factor: float = 1.0,
    heads_lr_factor: float = 1.0,
    weight_decay: float = 0.0005,
    weight_decay_norm: float = 0.0005,
    weight_decay_bias: float = 0.0005,
) -> list[dict[str, Any]]:
    """All of the model's parameters as named param-group dicts (see the module docstring).

    Args:
        model: The model; modules with ``param_groups()`` declare their own groups first.
        base_lr, bias_lr_factor, heads_lr_factor: The groups' LRs.
        weight_decay, weight_decay_norm, weight_decay_bias: The groups' weight decays: of weights,
            of normalisation layers' weights and of every bias.

    Returns:
        The declared groups, then one default group per kind of parameter present.

    >>> model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    >>> groups = get_param_groups(
    ...     model, base_lr=0.1, bias_lr_factor=2.0, weight_decay_norm=0.0, weight_decay_bias=0.001
    ... )
    >>> for group in groups:
    ...     print(group["name"], len(group["params"]), group["lr"], group["weight_decay"])
    body/weight 1 0.1 0.0005
    body/bias 1 0.2 0.001
    body/norm_weight 1 0.1 0.0
    body/norm_bias 1 0.2 0.001
    """
    groups = _custom_groups(model)
    seen: set[int] = {id(p) for g in groups for p in g["params"]}
    defaults: dict[str, dict[str, Any]] = {}
    for module_name, module in model.named_modules():
        is_norm = isinstance(module, NORM_TYPES)
        in_heads = _is_heads(module_name)
        for param_name, param in module.named_parameters(recurse=False):
            if id(param) in seen:
                continue
            seen.add(id(param))
            is_bias = param_name == "bias"
            lr = base_lr
            if is_bias:
                lr *= bias_lr_factor
            if in_heads:
                lr *= heads_lr_factor
            kind = "norm" if is_norm else "bias" if is_bias else "weight"
            decay = weight_decay_bias if is_bias else weight_decay_norm if is_norm else weight_decay
            name = f"{'heads' if in_heads else 'body'}/{kind}"
            if is_norm:
                name += "_bias" if is_bias else "_weight"
            group = defaults.setdefault(
                name, {"name": name, "params": [], "lr": lr, "weight_decay": decay}
            )
            group["params"].append(param)
    return groups + list(defaults.values())


def make_optimizer(
    model: nn.Module,
    opt: str = "Adam",
    base_lr: float = 3.5e-4,
    bias_lr_factor: float = 1.0,
    heads_lr_factor: float = 1.0,
    momentum: float = 0.9,
    nesterov: bool = False,
    weight_decay: float = 0.0005,
    weight_decay_norm: float = 0.0005,
    weight_decay_bias: float = 0.0005,
    opt_impl: str = "auto",
) -> torch.optim.Optimizer:
    """The optimizer ``opt`` over all of ``model``'s parameters, in groups.

    Args:
        model: The model (every parameter goes in, trainable or not).
        opt: A registered optimizer: "Adam", "AdamW" or "SGD".
        base_lr: The LR of the main groups, and of declared groups that set none.
        bias_lr_factor, heads_lr_factor: LR multipliers of biases and of the heads' parameters.
        momentum, nesterov: SGD's momentum.
        weight_decay: Of the weights; also of declared groups that set none.
        weight_decay_norm, weight_decay_bias: Of normalisation layers' weights and of every bias.
        opt_impl: "auto", "fused", "foreach" or "for_loop" (see SOLVER.OPT_IMPL).

    Raises:
        InvalidArgument: ``opt`` is not registered, the LR is not positive, a weight decay is
            negative, SGD's momentum is invalid, or ``opt_impl`` is unknown or not available.
        ValueError: The model has no parameters.

    >>> optimizer = make_optimizer(nn.Linear(2, 1), "SGD", base_lr=0.1, bias_lr_factor=2.0)
    >>> type(optimizer).__name__, [g["lr"] for g in optimizer.param_groups]
    ('SGD', [0.1, 0.2])
    """
    if opt not in OPTIMIZER_REGISTRY:
        raise InvalidArgument(
            "opt",
            f"must name a registered optimizer ({', '.join(OPTIMIZER_REGISTRY.names())}), "
            f"got {opt!r}",
        )
    if not base_lr > 0:
        raise InvalidArgument("base_lr", f"must be positive, got {base_lr}")
    decays = {
        "weight_decay": weight_decay,
        "weight_decay_norm": weight_decay_norm,
        "weight_decay_bias": weight_decay_bias,
    }
    for name, value in decays.items():
        if value < 0:
            raise InvalidArgument(name, f"must be >= 0, got {value}")
    groups = get_param_groups(
        model,
        base_lr,
        bias_lr_factor=bias_lr_factor,
        heads_lr_factor=heads_lr_factor,
        weight_decay=weight_decay,
        weight_decay_norm=weight_decay_norm,
        weight_decay_bias=weight_decay_bias,
    )
    if not groups:
        raise ValueError(f"make_optimizer: the model ({type(model).__name__}) has no parameters")
    implementation = _implementation(opt, opt_impl, [p for g in groups for p in g["params"]])
    return OPTIMIZER_REGISTRY.get(opt)(
        groups,
        lr=base_lr,
        weight_decay=weight_decay,
        momentum=momentum,
        nesterov=nesterov,
        **implementation,
    )


def build_optimizer(cfg: CfgNode, model: nn.Module) -> torch.optim.Optimizer:
    """:func:`make_optimizer` with the arguments of the SOLVER keys of ``OPTIMIZER_CONFIG``.

    Raises:
        ConfigError: A key has a value the optimizer cannot use; the message names it.
    """
    args = OPTIMIZER_CONFIG.arguments(cfg)
    try:
        return make_optimizer(model, **args)
    except InvalidArgument as e:
        if e.argument not in args.sources:
            raise
        raise ConfigError(f"{args.sources[e.argument]} {e.problem}") from None


def group_names(optimizer: torch.optim.Optimizer) -> list[str]:
    """The ``name`` of each param group, in order (for logging)."""
    return [str(g.get("name", f"group{i}")) for i, g in enumerate(optimizer.param_groups)]
