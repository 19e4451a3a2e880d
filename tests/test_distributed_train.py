"""`fastgan train` under torchrun on CPU (gloo, 2 processes): synchronised BatchNorm makes
2 ranks x batch B train exactly as 1 process x batch 2B; rank 0 alone writes; a rank that
dies or stops answering makes the other stop with a clear error in bounded time; the run
resumes from its last checkpoint with another number of processes."""
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch
import torch.distributed as dist

pytest.importorskip("sklearn")
pytest.importorskip("PIL")
pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="needs gloo")

from fastgan.app.config import TrainConfig  # noqa: E402
from fastgan.app.train import Trainer  # noqa: E402

TINY = ["--nz", "8", "--ngf", "4", "--ndf", "4", "--device", "cpu", "--sample-every", "1000", "--log-every", "5"]


def torchrun(out, *args, nproc=2, timeout=300):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "fastgan", "train", *TINY, "--out", str(out), *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def load(out):
    return torch.load(os.path.join(out, "checkpoint.pt"), weights_only=True)


def rows(out):
    with open(os.path.join(out, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def max_weight_difference(a, b):
    return max((a[net][k].double() - b[net][k].double()).abs().max().item() for net in ("G", "D") for k in a[net])


@pytest.fixture(scope="module")
def one_process_double_batch(tmp_path_factory):
    out = tmp_path_factory.mktemp("one") / "run"
    cfg = TrainConfig(nz=8, ngf=4, ndf=4, device="cpu", sample_every=1000, log_every=5, out=str(out), steps=20,
                      batch_size=8, dtype="float64", checkpoint_every=20)
    Trainer(cfg, log=lambda *_: None).run()
    return out


def test_two_ranks_with_sync_bn_train_as_one_process_with_twice_the_batch(tmp_path, one_process_double_batch):
    out = tmp_path / "two"
    torchrun(out, "--steps", "20", "--batch-size", "4", "--dtype", "float64", "--sync-bn", "--checkpoint-every", "20")
    two, one = load(out), load(one_process_double_batch)
    assert two["step"] == one["step"] == 20
    assert two["G"].keys() == one["G"].keys()  # no "module." prefix: the checkpoint holds the plain models
    assert max_weight_difference(two, one) < 1e-10
    r2, r1 = rows(out), rows(one_process_double_batch)
    assert [r["step"] for r in r2] == [5, 10, 15, 20]  # one row per log step: only rank 0 writes
    for a, b in zip(r2, r1):
        for key in ("loss_d", "loss_g", "d_real", "d_fake"):  # averaged over the ranks
            assert a[key] == pytest.approx(b[key], rel=1e-6), (a["step"], key)
    assert sorted(os.listdir(out / "samples")) == ["step_0000020.png"]


def test_without_sync_bn_the_ranks_normalise_with_their_own_statistics(tmp_path, one_process_double_batch):
    """The same run without --sync-bn differs from the whole-batch one: the check above can fail."""
    out = tmp_path / "two"
    torchrun(out, "--steps", "20", "--batch-size", "4", "--dtype", "float64", "--checkpoint-every", "20")
    assert max_weight_difference(load(out), load(one_process_double_batch)) > 1e-4


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_ranks(out, *args):
    """Two ranks started the way torchrun starts them (its environment variables), so the test
    can stop one of them; torchrun itself would also kill the survivor."""
    port, procs = free_port(), []
    for rank in range(2):
        env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": "2",
               "RANK": str(rank), "LOCAL_RANK": str(rank)}
        cmd = [sys.executable, "-m", "fastgan", "train", *TINY, "--out", str(out), "--batch-size", "4", *args]
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    return procs


def wait_for_checkpoint(out, procs, timeout=180):
    deadline = time.monotonic() + timeout
    while not os.path.exists(os.path.join(out, "checkpoint.pt")):
        for p in procs:
            assert p.poll() is None, p.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "no checkpoint was written"
        time.sleep(0.2)


@pytest.mark.parametrize("failure", ["dies", "stops answering"])
def test_a_lost_rank_stops_the_other_with_a_clear_error_and_the_run_resumes(tmp_path, failure):
    out = tmp_path / "run"
    procs = start_ranks(out, "--steps", "100000", "--checkpoint-every", "3", "--sync-bn", "--dist-timeout", "10")
    try:
        wait_for_checkpoint(out, procs)
        lost, survivor = procs[1], procs[0]
        lost.send_signal(signal.SIGKILL if failure == "dies" else signal.SIGSTOP)
        started = time.monotonic()
        _, err = survivor.communicate(timeout=90)  # raises TimeoutExpired if it hangs
        elapsed = time.monotonic() - started
    finally:
        for p in procs:
            p.kill()
            p.communicate()
    assert survivor.returncode == 2, err[-3000:]
    assert "rank 0 of 2: lost contact with another rank" in err and "restart with --resume" in err, err[-3000:]
    assert "Traceback" not in err
    assert elapsed < 60, f"the surviving rank took {elapsed:.0f} s to stop"
    saved = load(out)["step"]
    assert saved >= 3 and saved % 3 == 0
    # Resume from the last checkpoint with one process instead of two.
    cmd = [sys.executable, "-m", "fastgan", "train", *TINY, "--out", str(out), "--batch-size", "4", "--resume",
           "--steps", str(saved + 2), "--sync-bn"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"resumed from {out / 'checkpoint.pt'} at step {saved}" in done.stdout + done.stderr
    assert load(out)["step"] == saved + 2
