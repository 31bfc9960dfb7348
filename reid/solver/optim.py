"""Optimizers with parameter groups built from the config.

Every parameter of the model goes into the optimizer, trainable or not: freezing and unfreezing
later is done by ``requires_grad`` alone (a frozen parameter gets no gradient, and torch's
optimizers skip parameters whose ``grad`` is None, so it does not move, weight decay and momentum
included, as long as gradients are cleared with ``zero_grad()``'s default ``set_to_none=True``).

Default groups, one per kind of parameter (``name`` key of the group):

=====================  ===============================  ==================
group                  learning rate                    weight decay
=====================  ===============================  ==================
``body/weight``        BASE_LR                          WEIGHT_DECAY
``body/bias``          BASE_LR * BIAS_LR_FACTOR         WEIGHT_DECAY_BIAS
``body/norm_weight``   BASE_LR                          WEIGHT_DECAY_NORM
``body/norm_bias``     BASE_LR * BIAS_LR_FACTOR         WEIGHT_DECAY_NORM
``heads/<same>``       the same times HEADS_LR_FACTOR   the same
=====================  ===============================  ==================

"norm" = the weight and bias of normalisation layers (batch, instance, group, layer norm);
"bias" = any other parameter whose attribute name is ``bias``; "heads" = parameters under the
model's top-level child module named ``heads`` (after an optional DDP ``module.`` prefix).

Modules may also define their own groups: any module inside the model with a method
``param_groups(self) -> List[dict]`` (torch param-group dicts, e.g. center-loss centers with their
own ``lr`` and ``weight_decay``) has those groups added as they are; keys they leave out take the
optimizer's defaults (``lr`` = BASE_LR, ``weight_decay`` = WEIGHT_DECAY), and their parameters are
kept out of the default groups. The LR schedule scales every group from its own starting LR.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from yacs.config import CfgNode

from reid.config import ConfigError
from reid.config.schema import ConfigBlock, Key, declare
from reid.utils.registry import Registry, RegistryKeyError

OPTIMIZER_CONFIG = declare(
    ConfigBlock(
        "SOLVER",
        "The optimizer and its parameter groups.",
        {
            "OPT": Key(
                "Adam",
                '"Adam", "AdamW" or "SGD".',
            ),
            "BASE_LR": Key(
                3.5e-4,
                "Learning rate of the main parameter group once warm-up is over.",
            ),
            "BIAS_LR_FACTOR": Key(
                1.0,
                "LR multiplier of bias parameters.",
            ),
            "HEADS_LR_FACTOR": Key(
                1.0,
                "LR multiplier of the head's parameters.",
            ),
            "MOMENTUM": Key(
                0.9,
                "SGD momentum (Adam and AdamW use their betas).",
            ),
            "NESTEROV": Key(
                False,
                "Nesterov momentum for SGD.",
            ),
            "WEIGHT_DECAY": Key(
                0.0005,
                "Weight decay of the weights of non-normalisation layers.",
            ),
            "WEIGHT_DECAY_NORM": Key(
                0.0005,
                "Weight decay of normalisation layers' weights and biases.",
            ),
            "WEIGHT_DECAY_BIAS": Key(
                0.0005,
                "Weight decay of the other layers' biases.",
            ),
        },
    )
)


OPTIMIZER_REGISTRY = Registry("OPTIMIZER")
OPTIMIZER_REGISTRY.__doc__ = (
    """Optimizer builders ``fn(cfg, param_groups) -> torch.optim.Optimizer``, by SOLVER.OPT."""
)

NORM_TYPES = (
    nn.modules.batchnorm._BatchNorm,
    nn.modules.instancenorm._InstanceNorm,
    nn.GroupNorm,
    nn.LayerNorm,
)


@OPTIMIZER_REGISTRY.register(name="Adam")
def build_adam(cfg: CfgNode, param_groups: list[dict[str, Any]]) -> torch.optim.Optimizer:
    """Adam with L2 weight decay added to the gradient (torch's Adam)."""
    return torch.optim.Adam(
        param_groups, lr=cfg.SOLVER.BASE_LR, weight_decay=cfg.SOLVER.WEIGHT_DECAY
    )


@OPTIMIZER_REGISTRY.register(name="AdamW")
def build_adamw(cfg: CfgNode, param_groups: list[dict[str, Any]]) -> torch.optim.Optimizer:
    """Adam with decoupled weight decay: each step shrinks a parameter by lr * weight_decay."""
    return torch.optim.AdamW(
        param_groups, lr=cfg.SOLVER.BASE_LR, weight_decay=cfg.SOLVER.WEIGHT_DECAY
    )


@OPTIMIZER_REGISTRY.register(name="SGD")
def build_sgd(cfg: CfgNode, param_groups: list[dict[str, Any]]) -> torch.optim.Optimizer:
    momentum, nesterov = cfg.SOLVER.MOMENTUM, cfg.SOLVER.NESTEROV
    if momentum < 0:
        raise ConfigError(f"SOLVER.MOMENTUM must be >= 0, got {momentum}")
    if nesterov and momentum == 0:
        raise ConfigError("SOLVER.NESTEROV True needs SOLVER.MOMENTUM > 0, got 0")
    return torch.optim.SGD(
        param_groups,
        lr=cfg.SOLVER.BASE_LR,
        momentum=momentum,
        nesterov=nesterov,
        weight_decay=cfg.SOLVER.WEIGHT_DECAY,
    )


def _is_heads(module_name: str) -> bool:
    parts = module_name.split(".")
    if parts[0] == "module":
        parts = parts[1:]
    return bool(parts) and parts[0] == "heads"


def _custom_groups(model: nn.Module) -> list[dict[str, Any]]:
    """The groups modules declare through ``param_groups()``, checked and named."""
    model_params = {id(p) for p in model.parameters()}
    claimed: dict[int, str] = {}
    groups: list[dict[str, Any]] = []
    for module_name, module in model.named_modules():
        declare = getattr(module, "param_groups", None)
        if not callable(declare):
            continue
        owner = f"module '{module_name or type(module).__name__}' ({type(module).__name__}).param_groups()"
        declared = declare()
        if not isinstance(declared, (list, tuple)):
            raise TypeError(
                f"{owner} must return a list of param-group dicts, got {type(declared).__name__}"
            )
        for i, group in enumerate(declared):
            if not isinstance(group, dict) or "params" not in group:
                raise TypeError(f"{owner}[{i}] must be a dict with a 'params' entry, got {group!r}")
            params = group["params"]
            params = [params] if isinstance(params, torch.Tensor) else list(params)
            for p in params:
                if not isinstance(p, nn.Parameter) or id(p) not in model_params:
                    raise ValueError(
                        f"{owner}[{i}] lists a tensor that is not a parameter of the model"
                    )
                if id(p) in claimed:
                    raise ValueError(
                        f"{owner}[{i}] lists a parameter already claimed by {claimed[id(p)]}"
                    )
                claimed[id(p)] = owner
            out = dict(group, params=params)
            out.setdefault("name", f"{module_name or 'model'}/param_groups[{i}]")
            groups.append(out)
    return groups


def get_param_groups(cfg: CfgNode, model: nn.Module) -> list[dict[str, Any]]:
    """All of the model's parameters as param-group dicts (see the module docstring)."""
    solver = cfg.SOLVER
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
            lr = solver.BASE_LR
            if is_bias:
                lr *= solver.BIAS_LR_FACTOR
            if in_heads:
                lr *= solver.HEADS_LR_FACTOR
            if is_norm:
                kind, weight_decay = "norm", solver.WEIGHT_DECAY_NORM
            elif is_bias:
                kind, weight_decay = "bias", solver.WEIGHT_DECAY_BIAS
            else:
                kind, weight_decay = "weight", solver.WEIGHT_DECAY
            name = f"{'heads' if in_heads else 'body'}/{kind}"
            if is_norm:
                name += "_bias" if is_bias else "_weight"
            group = defaults.setdefault(
                name, {"name": name, "params": [], "lr": lr, "weight_decay": weight_decay}
            )
            group["params"].append(param)
    return groups + list(defaults.values())


def build_optimizer(cfg: CfgNode, model: nn.Module) -> torch.optim.Optimizer:
    """The optimizer named by SOLVER.OPT over all of ``model``'s parameters, in groups."""
    try:
        builder = OPTIMIZER_REGISTRY.get(cfg.SOLVER.OPT)
    except RegistryKeyError as e:
        raise ConfigError(f"SOLVER.OPT: {e}") from e
    groups = get_param_groups(cfg, model)
    if not groups:
        raise ValueError(f"build_optimizer: the model ({type(model).__name__}) has no parameters")
    return builder(cfg, groups)


def group_names(optimizer: torch.optim.Optimizer) -> list[str]:
    """The ``name`` of each param group, in order (for logging)."""
    return [str(g.get("name", f"group{i}")) for i, g in enumerate(optimizer.param_groups)]
