"""`fastgan train --arch mlp` on the bundled digits and on MNIST's idx files (written here, tiny),
the idx reader's errors, and sampling from an MLP checkpoint."""
import gzip
import json
import os
import struct

import pytest
import torch

pytest.importorskip("sklearn")
pytest.importorskip("PIL")

from fastgan.app import data as data_io  # noqa: E402
from fastgan.app.cli import main  # noqa: E402
from fastgan.app.config import TrainConfig  # noqa: E402
from fastgan.app.train import Trainer  # noqa: E402


def write_idx(path, array, compress):
    header = struct.pack(f">BBBB{array.dim()}I", 0, 0, 0x08, array.dim(), *array.shape)
    raw = header + array.numpy().tobytes()
    with (gzip.open if compress else open)(path, "wb") as f:
        f.write(raw)


@pytest.fixture(params=[False, True], ids=["plain", "gz"])
def mnist_folder(tmp_path, request):
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (40, 28, 28), dtype=torch.uint8, generator=g)
    labels = torch.arange(40, dtype=torch.uint8) % 10
    suffix = ".gz" if request.param else ""
    write_idx(tmp_path / f"train-images-idx3-ubyte{suffix}", images, request.param)
    write_idx(tmp_path / f"train-labels-idx1-ubyte{suffix}", labels, request.param)
    return tmp_path, images, labels


def test_idx_files_are_read_exactly(mnist_folder):
    folder, images, labels = mnist_folder
    data = data_io.load(str(folder), 28, 1)
    assert torch.equal(data.images[:, 0], images) and torch.equal(data.labels, labels.long())
    assert data.class_names == [str(i) for i in range(10)]
    assert data_io.load(str(folder), 32, 3).images.shape == (40, 3, 32, 32)


def test_bad_idx_files_get_one_line(tmp_path, capsys):
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03" + struct.pack(">3I", 2, 28, 28) + b"x")
    assert main(["train", "--arch", "mlp", "--data", str(tmp_path), "--image-size", "28", "--out",
                 str(tmp_path / "run"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("fastgan: error:") and "holds 1 values where its header (2, 28, 28) says 1568" in err
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"PK\x03\x04 not idx")
    assert main(["train", "--arch", "mlp", "--data", str(tmp_path), "--image-size", "28", "--out",
                 str(tmp_path / "run"), "--device", "cpu"]) == 2
    assert "not an idx file of unsigned bytes with 3 dimensions" in capsys.readouterr().err


def test_mlp_gan_trains_on_mnist_files_and_samples(mnist_folder, tmp_path):
    folder, _, _ = mnist_folder
    out = tmp_path / "run"
    assert main(["train", "--arch", "mlp", "--data", str(folder), "--image-size", "28", "--steps", "3",
                 "--batch-size", "8", "--ngf", "4", "--ndf", "4", "--nz", "8", "--log-every", "1", "--out", str(out),
                 "--device", "cpu"]) == 0
    assert (out / "checkpoint.pt").exists() and (out / "samples" / "step_0000003.png").exists()
    assert main(["sample", "--checkpoint", str(out / "checkpoint.pt"), "--out", str(tmp_path / "grid.png"),
                 "--n", "4"]) == 0


def test_mlp_gan_learns_on_digits(tmp_path):
    cfg = TrainConfig(out=str(tmp_path / "run"), arch="mlp", steps=30, nz=16, ngf=4, ndf=4, batch_size=32,
                      log_every=1, sample_every=1000, checkpoint_every=1000, device="cpu", lr=5e-4)
    trainer = Trainer(cfg, log=lambda *_: None).run()
    assert type(trainer.g).__name__ == "MLPGenerator"
    with open(os.path.join(cfg.out, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    assert max(r["d_real"] - r["d_fake"] for r in rows[:10]) > 0.05


def test_arch_option_errors(tmp_path, capsys):
    assert main(["train", "--image-size", "28", "--out", str(tmp_path / "a"), "--device", "cpu"]) == 2
    assert "the DCGAN takes 32, 64, 128, got 28" in capsys.readouterr().err
    assert main(["train", "--arch", "mlp", "--conditional", "--out", str(tmp_path / "b"), "--device", "cpu"]) == 2
    assert "--conditional needs --arch dcgan" in capsys.readouterr().err
