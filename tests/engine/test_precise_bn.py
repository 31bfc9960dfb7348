"""Precise BN: the recomputed statistics equal an independent recomputation; frozen layers,
modes, momenta and counters are kept; the hook runs before every evaluation."""

import copy
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from reid.config import ConfigError, get_cfg
from reid.engine.precise_bn import PreciseBN, precise_bn_config, update_bn_stats


class Net(nn.Module):
    """conv-BN-relu-dropout, conv-BN-relu, pool, fc-BN; one BN used in training mode only."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(4)
        self.drop = nn.Dropout(0.5)
        self.conv2 = nn.Conv2d(4, 5, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(5)
        self.fc = nn.Linear(5, 6)
        self.bn3 = nn.BatchNorm1d(6)
        self.train_only = nn.BatchNorm1d(6)
        for bn in (self.bn1, self.bn2, self.bn3, self.train_only):
            c = bn.num_features
            bn.weight.data = torch.rand(c) + 0.5
            bn.bias.data = torch.randn(c)
            bn.running_mean.data = torch.randn(c)
            bn.running_var.data = torch.rand(c) + 0.5
            bn.num_batches_tracked.fill_(7)

    def forward(self, batch: dict) -> torch.Tensor:
        x = self.drop(F.relu(self.bn1(self.conv1(batch["images"]))))
        x = F.relu(self.bn2(self.conv2(x)))
        x = self.fc(x.mean((2, 3)))
        if self.training:
            x = self.train_only(x)
        return self.bn3(x)


def _batches(n: int, seed: int = 0) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    return [
        {"images": torch.randn(6, 3, 5, 4, generator=g, dtype=torch.float64) * 2 + i}
        for i in range(n)
    ]


def reference_stats(net: Net, batches: list[dict], frozen: tuple[str, ...] = ()) -> dict:
    """Per-batch input mean / unbiased variance of bn1..bn3, averaged over the batches, with the
    BN layers normalising by batch statistics (running ones for ``frozen`` layers) and dropout
    off: written out with functional ops, no BatchNorm module."""

    def norm(x: torch.Tensor, bn: nn.BatchNorm2d, name: str, stats: dict) -> torch.Tensor:
        dims = [0, *range(2, x.dim())]
        stats.setdefault(name, []).append((x.mean(dims), x.var(dims, correction=1)))
        if name in frozen:
            mean, var = bn.running_mean, bn.running_var
        else:
            mean, var = x.mean(dims), x.var(dims, correction=0)
        shape = [1, -1] + [1] * (x.dim() - 2)
        x = (x - mean.view(shape)) / torch.sqrt(var.view(shape) + bn.eps)
        return x * bn.weight.view(shape) + bn.bias.view(shape)

    stats: dict = {}
    with torch.no_grad():
        for batch in batches:
            x = F.conv2d(batch["images"], net.conv1.weight, net.conv1.bias, padding=1)
            x = F.relu(norm(x, net.bn1, "bn1", stats))
            x = F.conv2d(x, net.conv2.weight, padding=1)
            x = F.relu(norm(x, net.bn2, "bn2", stats))
            x = F.linear(x.mean((2, 3)), net.fc.weight, net.fc.bias)
            norm(x, net.bn3, "bn3", stats)
    return {
        name: (torch.stack([m for m, _ in v]).mean(0), torch.stack([s for _, s in v]).mean(0))
        for name, v in stats.items()
    }


@pytest.mark.parametrize("frozen", [(), ("bn2",)], ids=["all-trained", "bn2-frozen"])
def test_statistics_equal_an_independent_recomputation(frozen: tuple[str, ...]) -> None:
    net = Net().double()
    net.train()
    for name in frozen:
        getattr(net, name).eval()
    before = copy.deepcopy(net.state_dict())
    batches = _batches(5)
    expected = reference_stats(net, batches, frozen)
    updated = update_bn_stats(net, iter(batches + _batches(3, seed=1)), num_iter=5)
    assert updated == 3 - len(frozen)  # train_only is in training mode but never runs
    for name in ("bn1", "bn2", "bn3"):
        bn = getattr(net, name)
        if name in frozen:
            assert torch.equal(bn.running_mean, before[f"{name}.running_mean"])
            assert torch.equal(bn.running_var, before[f"{name}.running_var"])
        else:
            torch.testing.assert_close(bn.running_mean, expected[name][0], rtol=1e-12, atol=1e-12)
            torch.testing.assert_close(bn.running_var, expected[name][1], rtol=1e-12, atol=1e-12)
    for key, value in before.items():  # weights, counters and the unused layer untouched
        if not (key.endswith(("running_mean", "running_var")) and key[:3] in ("bn1", "bn2", "bn3")):
            assert torch.equal(net.state_dict()[key], value), key
    assert net.training and net.drop.training and net.bn1.momentum == 0.1
    assert [getattr(net, n).training for n in ("bn1", "bn2", "bn3")] == [
        n not in frozen for n in ("bn1", "bn2", "bn3")
    ]


def test_running_out_of_batches_is_an_error_and_restores_the_model() -> None:
    net = Net().double()
    before = copy.deepcopy(net.state_dict())
    with pytest.raises(ValueError, match="precise BN needs 4 batches but the data gave only 2"):
        update_bn_stats(net, iter(_batches(2)), num_iter=4)
    assert all(torch.equal(net.state_dict()[k], v) for k, v in before.items())
    assert net.training and net.bn1.momentum == 0.1


class _Trainer:
    def __init__(self, max_epoch: int) -> None:
        self.epoch, self.max_epoch = 0, max_epoch


def test_hook_runs_on_evaluation_epochs_and_continues_the_batches() -> None:
    net = Net().double()
    batches = _batches(3)
    seen: list[float] = []
    net.register_forward_pre_hook(lambda m, inputs: seen.append(float(inputs[0]["images"].mean())))
    hook = PreciseBN(net, DataLoader(batches, batch_size=None), num_iter=2, period=3)
    hook.trainer = _Trainer(max_epoch=7)  # type: ignore[assignment]
    ran = []
    for epoch in range(7):
        hook.trainer.epoch = epoch
        count = len(seen)
        hook.after_epoch()
        if len(seen) > count:
            ran.append(epoch + 1)
    assert ran == [3, 6, 7]  # every 3 epochs and after the last, as the evaluation
    order = [round(m) for m in seen]
    means = [round(float(b["images"].mean())) for b in batches]
    assert order == [means[i % 3] for i in range(6)]  # b0 b1 | b2 b0 | b1 b2


def test_moving_average_copy_follows_the_trained_models_modes() -> None:
    trained = Net().double()
    trained.bn2.eval()  # frozen by the training plan
    average = copy.deepcopy(trained).train()  # an EMA copy: every layer in training mode
    before = average.bn2.running_mean.clone()
    hook = PreciseBN(average, DataLoader(_batches(2), batch_size=None), 2, 1, reference=trained)
    assert hook.layers() == [average.bn1, average.bn3, average.train_only]
    hook.update()
    assert torch.equal(average.bn2.running_mean, before)
    assert not torch.equal(average.bn1.running_mean, trained.bn1.running_mean)


def test_errors() -> None:
    with pytest.raises(ValueError, match="num_iter must be >= 1, got 0"):
        PreciseBN(Net(), DataLoader(_batches(1), batch_size=None), 0, 1)
    with pytest.raises(ValueError, match="no BatchNorm layer"):
        PreciseBN(nn.Linear(2, 2), DataLoader(_batches(1), batch_size=None), 1, 1)
    cfg = get_cfg()
    cfg.TEST.PRECISE_BN.NUM_ITER = 0
    with pytest.raises(ConfigError, match=r"^TEST\.PRECISE_BN\.NUM_ITER must be >= 1, got 0"):
        precise_bn_config(cfg)


def test_batches_come_from_the_dataset_training_loader_config() -> None:
    cfg = get_cfg()
    assert (cfg.TEST.PRECISE_BN.ENABLED, cfg.TEST.PRECISE_BN.DATASET) == (False, "Market1501")
    assert cfg.TEST.PRECISE_BN.NUM_ITER == 300  # fastreid's defaults
    cfg.TEST.PRECISE_BN.DATASET = "VeRi"
    cfg.DATASETS.NAMES = ["Market1501", "DukeMTMC"]
    out = precise_bn_config(cfg)
    assert list(out.DATASETS.NAMES) == ["VeRi"] and out.DATALOADER.NUM_WORKERS == 0
    assert list(cfg.DATASETS.NAMES) == ["Market1501", "DukeMTMC"]  # the run's config untouched


SCRIPT = """
import importlib.util, os, sys
sys.path.insert(0, {root!r})
import torch
import torch.distributed as dist
from reid.engine.precise_bn import update_bn_stats

spec = importlib.util.spec_from_file_location("precise_bn_tests", {this!r})
tests = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tests)


def main(rank, port, out):
    url = "tcp://127.0.0.1:%d" % port
    dist.init_process_group("gloo", init_method=url, rank=rank, world_size=2)
    torch.manual_seed(0)
    net = tests.Net().double()
    batches = tests._batches(4)[2 * rank : 2 * rank + 2]  # rank 0: batches 0, 1; rank 1: 2, 3
    update_bn_stats(net, iter(batches), 2)
    state = {{name: value.clone() for name, value in net.state_dict().items()}}
    torch.save(state, os.path.join(out, "rank%d.pt" % rank))
    dist.destroy_process_group()


if __name__ == "__main__":
    torch.multiprocessing.spawn(main, args=(int(sys.argv[1]), sys.argv[2]), nprocs=2)
"""


@pytest.mark.slow  # two processes
def test_statistics_are_averaged_over_the_processes(tmp_path, free_port) -> None:
    this = os.path.abspath(__file__)
    root = os.path.dirname(os.path.dirname(os.path.dirname(this)))
    script = tmp_path / "run.py"
    script.write_text(SCRIPT.format(root=root, this=this))
    port = free_port()
    subprocess.run([sys.executable, str(script), str(port), str(tmp_path)], check=True, timeout=300)
    states = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    torch.manual_seed(0)
    expected = reference_stats(Net().double(), _batches(4))  # all four batches in one process
    for name in ("bn1", "bn2", "bn3"):
        for state in states:  # both ranks hold the average over all the batches
            torch.testing.assert_close(state[f"{name}.running_mean"], expected[name][0])
            torch.testing.assert_close(state[f"{name}.running_var"], expected[name][1])
