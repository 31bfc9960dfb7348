"""Two CPU processes with gloo: the run completes, ranks see disjoint identity-complete data, and
only rank 0 writes."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.slow  # end-to-end trainings

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    sys.path.insert(0, {root!r})
    from reid.config import load_config
    from reid.engine import DefaultTrainer, default_setup, launch
    from reid.utils import comm

    class RecordingTrainer(DefaultTrainer):
        seen = []

        def before_epoch(self):
            super().before_epoch()
            inner = self._data_iter

            def record():
                for batch in inner:
                    self.seen.append([self.epoch, batch["img_paths"], batch["targets"].tolist()])
                    yield batch

            self._data_iter = record()

    def main(opts, out):
        cfg = default_setup(load_config(None, opts))
        trainer = RecordingTrainer(cfg)
        trainer.resume_or_load(resume=False)
        trainer.train()
        with open(os.path.join(out, "seen_rank%d.json" % comm.get_rank()), "w") as f:
            json.dump(trainer.seen, f)

    if __name__ == "__main__":
        opts, out, url = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
        launch(main, 2, dist_url=url, args=(opts, out))
    """
)


def test_two_gloo_processes_train_on_disjoint_identity_complete_shards(
    tmp_path, tiny_opts, free_port
):
    out = tmp_path / "ddp"
    out.mkdir()
    script = tmp_path / "run_ddp.py"
    script.write_text(SCRIPT.format(root=ROOT))
    opts = [
        *tiny_opts,
        "OUTPUT_DIR",
        str(out),
        "SOLVER.IMS_PER_BATCH",
        "16",
        "TEST.EVAL_PERIOD",
        "2",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            str(script),
            json.dumps(opts),
            str(out),
            f"tcp://127.0.0.1:{free_port()}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    seen = [json.load(open(out / f"seen_rank{r}.json")) for r in (0, 1)]
    assert len(seen[0]) == len(seen[1]) > 0
    for (e0, paths0, ids0), (e1, paths1, ids1) in zip(*seen):
        assert e0 == e1
        assert len(paths0) == len(paths1) == 8  # 16 images over 2 ranks
        assert not set(paths0) & set(paths1)
        assert not set(ids0) & set(ids1), "an identity was split across ranks"
        for ids in (ids0, ids1):
            assert all(ids.count(i) == 4 for i in set(ids))  # K = 4 images of each identity
    files = sorted(os.listdir(out))
    assert "model_final.pth" in files and "results.json" in files
    assert "log.txt" in files and "log.txt.rank1" in files
    assert not [f for f in files if f.endswith(".tmp")]


def test_torchrun_launch_of_train_net_completes(tmp_path, tiny_opts, free_port):
    out = tmp_path / "torchrun"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        str(free_port()),
        os.path.join(ROOT, "tools", "train_net.py"),
        *tiny_opts,
        "OUTPUT_DIR",
        str(out),
        "SOLVER.IMS_PER_BATCH",
        "16",
        "SOLVER.MAX_EPOCH",
        "1",
        "TEST.EVAL_PERIOD",
        "1",
    ]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Rank 1 of 2" in (out / "log.txt.rank1").read_text()
    results = json.load(open(out / "results.json"))
    assert results["epoch"] == 1 and "mAP" in results["results"]["Synthetic"]
    assert sorted(f for f in os.listdir(out) if f.endswith(".pth")) == [
        "model_best.pth",
        "model_final.pth",
    ]


FROZEN_RANK = textwrap.dedent(
    """
    import json, os, signal, sys
    sys.path.insert(0, {root!r})
    from reid.config import load_config
    from reid.engine import DefaultTrainer, default_setup, launch
    from reid.engine.launch import run_tool
    from reid.engine.train_loop import HookBase
    from reid.utils import comm

    class FreezeRank1(HookBase):
        def before_step(self):
            if comm.get_rank() == 1 and self.trainer.iter == 1:
                os.kill(os.getpid(), signal.SIGSTOP)  # frozen: alive, but never answers

    def main(opts):
        trainer = DefaultTrainer(default_setup(load_config(None, opts)))
        trainer.register_hooks([FreezeRank1()])
        trainer.resume_or_load(resume=False)
        trainer.train()

    if __name__ == "__main__":
        opts, url = json.loads(sys.argv[1]), sys.argv[2]
        sys.exit(run_tool(lambda: launch(main, 2, dist_url=url, args=(opts,), timeout_s=10)))
    """
)


def test_a_frozen_rank_makes_the_others_fail_after_the_timeout_naming_it(
    tmp_path, tiny_opts, free_port
):
    script = tmp_path / "frozen.py"
    script.write_text(FROZEN_RANK.format(root=ROOT))
    opts = [*tiny_opts, "OUTPUT_DIR", str(tmp_path / "ddp"), "SOLVER.IMS_PER_BATCH", "16"]
    proc = subprocess.run(
        [sys.executable, str(script), json.dumps(opts), f"tcp://127.0.0.1:{free_port()}"],
        capture_output=True,
        text=True,
        timeout=240,  # without the timeout the other rank would wait 30 minutes
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (
        "error (rank 0): rank 0: a collective operation failed waiting for the other ranks "
        "(timeout 10 s, --dist-timeout); rank 1 did not respond (frozen, killed or far slower "
        "than the others)."
    ) in proc.stderr, proc.stderr[-3000:]
    assert proc.stderr.rstrip().endswith(
        "error: the process of rank 0 failed (exit code 1); its error is printed above"
    )
    assert "Traceback" not in proc.stderr
