"""fastreid's keys of features reid does not have: accepted at fastreid's defaults, else errors.

fastreid's ``config/defaults.py`` names a few features that reid does not implement (knowledge
distillation, the MoCo memory of its projects). Their keys are declared here with fastreid's
defaults, so that any fastreid config file, or the full ``config.yaml`` fastreid writes, loads; a
value other than the default asks for the missing feature and is an error naming the key and the
feature (:func:`check_unsupported`, run by ``check_config``), never silently ignored.
"""

from __future__ import annotations

from yacs.config import CfgNode

from .schema import ConfigBlock, ConfigError, Key, declare

__all__ = ["UNSUPPORTED_CONFIG", "UNSUPPORTED_FEATURES", "check_unsupported"]

_KD = "knowledge distillation (fastreid's Distiller meta-architecture and its teachers)"
_MOCO = "the MoCo memory queue of fastreid's projects (reid has no MoCo meta-architecture)"

UNSUPPORTED_FEATURES = {
    "MODEL.QUEUE_SIZE": _MOCO,
    "KD.MODEL_CONFIG": _KD,
    "KD.MODEL_WEIGHTS": _KD,
    "KD.EMA.ENABLED": f"the EMA teacher of {_KD}",
    "KD.EMA.MOMENTUM": f"the EMA teacher of {_KD}",
}

UNSUPPORTED_CONFIG = declare(
    ConfigBlock(
        "",
        "fastreid's keys of features reid does not have; only fastreid's defaults are accepted.",
        {
            "MODEL.QUEUE_SIZE": Key(
                8192, f"fastreid: size of {_MOCO}. Not supported: must stay 8192."
            ),
            "KD.MODEL_CONFIG": Key(
                [],
                "fastreid: the teachers' config files for knowledge distillation. Not "
                "supported: must stay [].",
            ),
            "KD.MODEL_WEIGHTS": Key(
                [],
                "fastreid: the teachers' weights for knowledge distillation. Not supported: "
                "must stay [].",
            ),
            "KD.EMA.ENABLED": Key(
                False,
                "fastreid: an EMA of the student as distillation teacher. Not supported: "
                "must stay False.",
            ),
            "KD.EMA.MOMENTUM": Key(
                0.999, "fastreid: momentum of that EMA teacher. Not supported: must stay 0.999."
            ),
        },
    ),
    owner=__name__,
)


def _same(value: object, default: object) -> bool:
    if isinstance(default, list):
        return isinstance(value, (list, tuple)) and list(value) == default
    return value == default


def check_unsupported(cfg: CfgNode) -> None:
    """Raise if a key of :data:`UNSUPPORTED_CONFIG` asks for its feature.

    Raises:
        ConfigError: Naming the key, its value and the feature reid does not have.
    """
    for name, key in UNSUPPORTED_CONFIG:
        value = UNSUPPORTED_CONFIG.value(cfg, name)
        if not _same(value, key.default):
            raise ConfigError(
                f"{name} is {value!r}: it configures {UNSUPPORTED_FEATURES[name]}, which reid "
                f"does not have; leave it at fastreid's default {key.default!r}"
            )
