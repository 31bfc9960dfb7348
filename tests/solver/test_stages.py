"""Training plans: parsing SOLVER.STAGES and the LR factor across stages."""

import pytest

from reid.config import ConfigError, get_cfg
from reid.solver import (
    CosineSchedule,
    LRSchedule,
    MultiStepSchedule,
    Stage,
    StagedSchedule,
    build_training_plan,
    stage_at_epoch,
)

STAGES = [
    {"NAME": "warm", "EPOCHS": 2, "LOSSES": {"CrossEntropyLoss": 1.0}},
    {"NAME": "tune", "EPOCHS": 1, "TRAINABLE": ["heads\\."], "SOLVER": {"BASE_LR": 0.5}},
]


def _staged_config():
    cfg = get_cfg()
    s = cfg.SOLVER
    s.MAX_EPOCH, s.BASE_LR, s.SCHED, s.STEPS, s.GAMMA = 3, 1.0, "MultiStepLR", [1], 0.1
    s.WARMUP_ITERS, s.STAGES = 0, STAGES
    return cfg


def test_plan_from_the_config():
    plan = build_training_plan(_staged_config())
    assert [(s.name, s.start_epoch, s.epochs) for s in plan] == [("warm", 0, 2), ("tune", 2, 1)]
    assert plan[0].loss_weights == {"CrossEntropyLoss": 1.0} and plan[1].loss_weights is None
    assert plan[1].trainable == ("heads\\.",) and plan[1].solver_overrides == {"BASE_LR": 0.5}
    assert stage_at_epoch(plan, 5) is plan[1]
    single = build_training_plan(get_cfg())
    assert [(s.name, s.start_epoch, s.epochs) for s in single] == [("train", 0, 120)]


@pytest.mark.parametrize(
    "stage, message",
    [
        (
            {"EPOCHS": 3, "LOSS": {}},
            r"SOLVER.STAGES\[0\]: unknown key 'LOSS'; did you mean 'LOSSES'",
        ),
        ({"EPOCHS": 0}, r"SOLVER.STAGES\[0\].EPOCHS must be a whole number >= 1, got 0"),
        ({"EPOCHS": 3, "TRAINABLE": ["("]}, r"SOLVER.STAGES\[0\].TRAINABLE: '\(' is not a valid"),
        (
            {"EPOCHS": 3, "SOLVER": {"GAMMA": "x"}},
            r"SOLVER.STAGES\[0\].SOLVER: SOLVER.GAMMA expects a value of type float",
        ),
        ({"EPOCHS": 2}, r"MAX_EPOCH \(3\) must equal the sum of the stages' EPOCHS \(2 = 2\)"),
    ],
)
def test_plan_errors_name_the_stage_and_key(stage, message):
    cfg = _staged_config()
    cfg.SOLVER.STAGES = [stage]
    with pytest.raises(ConfigError, match=message):
        build_training_plan(cfg)


def test_a_stage_with_its_own_schedule_counts_from_its_start():
    plan = [Stage(0, "a", start_epoch=0, epochs=2), Stage(1, "b", start_epoch=2, epochs=2)]
    run = LRSchedule(MultiStepSchedule([1], 0.1, iters_per_epoch=10), 10, max_iters=40)
    own = LRSchedule(CosineSchedule(0, 20, 0.0), 10, max_iters=20)
    staged = StagedSchedule(plan, run, {1: (own, 0.5)})
    assert (staged.iters_per_epoch, staged.max_iters) == (10, 40)
    assert [staged.factor(i) for i in (0, 9, 10, 19)] == pytest.approx([1.0, 1.0, 0.1, 0.1])
    assert [staged.factor(i) for i in (20, 30, 39)] == pytest.approx(
        [0.5, 0.25, 0.5 * own.factor(19)]
    )
    assert staged.events() == [
        (0, "stage 1 'a' starts; start"),
        (10, "step x0.1 (epoch 1)"),
        (20, "stage 2 'b' starts; start; cosine decay starts"),
        (30, "cosine decay half-way"),
        (39, "last iteration"),
    ]
    assert staged.summary().startswith("stage 1: global schedule | stage 2: no warm-up; Cosine")


def test_config_builds_the_same_staged_schedule():
    cfg = _staged_config()
    plan = build_training_plan(cfg)
    from_config = StagedSchedule(cfg, plan, 10)
    run = LRSchedule(MultiStepSchedule([1], 0.1, iters_per_epoch=10), 10, max_iters=30)
    own = LRSchedule(MultiStepSchedule([1], 0.1, iters_per_epoch=10), 10, max_iters=10)
    plain = StagedSchedule(plan, run, {1: (own, 0.5)})
    assert [from_config.factor(i) for i in range(30)] == [plain.factor(i) for i in range(30)]
    assert from_config.events() == plain.events()
    assert from_config.summary() == plain.summary()
