"""The dataset formats `fastgan train --data` reads besides folders and MNIST: CIFAR-10's python
archive and folder, and StyleGAN2-ADA's dataset.json labels in a .zip or a folder. Each test
writes a tiny file of the format itself; nothing is downloaded."""
import io
import json
import os
import pickle
import tarfile
import zipfile

import numpy as np
import pytest
import torch

pytest.importorskip("PIL")
from PIL import Image  # noqa: E402

from fastgan.app import cifar  # noqa: E402
from fastgan.app.data import DataError, load  # noqa: E402

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def cifar_batches(per_batch=4, seed=0):
    """{file name: pickled bytes} of a CIFAR-10 folder, with the images and labels they hold."""
    rng = np.random.default_rng(seed)
    files, images, labels = {}, [], []
    for name in cifar.TRAIN_BATCHES:
        data = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        lab = rng.integers(0, 10, size=per_batch).tolist()
        files[name] = pickle.dumps({b"batch_label": name.encode(), b"labels": lab, b"data": data})
        images.append(data.reshape(-1, 3, 32, 32))
        labels += lab
    files["test_batch"] = pickle.dumps({b"labels": [0], b"data": np.zeros((1, 3072), np.uint8)})
    files[cifar.META] = pickle.dumps({b"label_names": [c.encode() for c in CLASSES]})
    return files, torch.from_numpy(np.concatenate(images)), torch.tensor(labels)


def write_cifar_folder(root):
    files, images, labels = cifar_batches()
    folder = root / cifar.FOLDER
    folder.mkdir(parents=True)
    for name, raw in files.items():
        (folder / name).write_bytes(raw)
    return folder, images, labels


def test_cifar_archive_and_folders_give_the_same_images_and_labels(tmp_path):
    folder, images, labels = write_cifar_folder(tmp_path / "extracted")
    archive = tmp_path / cifar.ARCHIVE
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=cifar.FOLDER)
    for source in (archive, folder, folder.parent):
        data = load(str(source), 32, 3)
        assert torch.equal(data.images, images), source
        assert torch.equal(data.labels, labels) and data.class_names == CLASSES
    gray = load(str(folder), 32, 1).images
    expected = (images.double() * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    assert gray.shape == (20, 1, 32, 32) and (gray.double() - expected).abs().max() <= 0.5 + 1e-3  # rounded
    assert load(str(folder), 64, 3).images.shape == (20, 3, 64, 64)


def test_a_cifar_pickle_cannot_run_code(tmp_path):
    folder, _, _ = write_cifar_folder(tmp_path)

    class Boom:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    (folder / "data_batch_3").write_bytes(pickle.dumps({b"data": Boom(), b"labels": []}))
    with pytest.raises(DataError, match=r"data_batch_3 .* is not a CIFAR-10 batch \(UnpicklingError: refusing "
                                        r"(posix|nt)\.system"):
        load(str(folder), 32, 3)


def test_broken_cifar_sources_are_named(tmp_path):
    folder, _, _ = write_cifar_folder(tmp_path)
    (folder / "data_batch_5").unlink()
    (folder / "data_batch_1").write_bytes(pickle.dumps({b"data": np.zeros((2, 10), np.uint8), b"labels": [0, 1]}))
    archive = tmp_path / cifar.ARCHIVE
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=cifar.FOLDER)
    with pytest.raises(DataError, match="lacks CIFAR-10's data_batch_5"):
        load(str(archive), 32, 3)
    (folder / "data_batch_5").write_bytes((folder / "data_batch_2").read_bytes())
    with pytest.raises(DataError, match=r"data_batch_1 in .* is not a CIFAR-10 batch: data of shape \(2, 10\)"):
        load(str(folder), 32, 3)
    archive.write_bytes(b"truncated")
    with pytest.raises(DataError, match="cannot be read as cifar-10-python.tar.gz"):
        load(str(archive), 32, 3)


def png(value, size=8):
    buf = io.BytesIO()
    Image.new("L", (size, size), value).save(buf, format="PNG")
    return buf.getvalue()


def test_stylegan_dataset_json_gives_the_labels(tmp_path):
    names = ["00000/img00000000.png", "00000/img00000001.png", "00000/img00000002.png"]
    labels = [7, 0, 3]
    meta = json.dumps({"labels": [[n, c] for n, c in zip(names, labels)]})
    archive = tmp_path / "data.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for i, n in enumerate(names):
            z.writestr(n, png(40 * i))
        z.writestr("dataset.json", meta)
    folder = tmp_path / "folder"
    for i, n in enumerate(names):
        (folder / n).parent.mkdir(parents=True, exist_ok=True)
        (folder / n).write_bytes(png(40 * i))
    (folder / "dataset.json").write_text(meta)
    for source in (archive, folder):
        data = load(str(source), 32, 1)
        assert data.labels.tolist() == labels  # class numbers kept, not renumbered
        assert data.num_classes == 8 and data.class_names == [str(i) for i in range(8)]
        assert data.images[:, 0, 0, 0].tolist() == [0, 40, 80]
    (folder / "dataset.json").write_text(json.dumps({"labels": None}))
    assert load(str(folder), 32, 1).labels is None  # unlabelled, and the one sub-folder is no class
    (folder / "dataset.json").write_text(json.dumps({"labels": [[names[0], 1]]}))
    with pytest.raises(DataError, match=r"dataset.json gives no label for '00000/img00000001.png' and 1 other"):
        load(str(folder), 32, 1)
    (folder / "dataset.json").write_text(json.dumps({"labels": [[names[0]]]}))
    with pytest.raises(DataError, match=r"labels must be a list of \[file name, class number\] pairs"):
        load(str(folder), 32, 1)


def test_conditional_training_on_cifar(tmp_path):
    from fastgan.app.config import TrainConfig
    from fastgan.app.train import Trainer

    folder, _, labels = write_cifar_folder(tmp_path / "data")
    cfg = TrainConfig(data=str(folder.parent), out=str(tmp_path / "run"), channels=3, conditional=True, steps=2,
                      nz=8, ngf=4, ndf=4, batch_size=4, device="cpu")
    trainer = Trainer(cfg, log=lambda *_: None).run()
    assert trainer.num_classes == 10 and trainer.step == 2
    assert torch.equal(trainer.data.labels, labels)


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
@pytest.mark.parametrize("numpy_module", [b"numpy._core.multiarray", b"numpy.core.multiarray"])
def test_cifar_batches_of_any_pickle_protocol_and_numpy_spelling(protocol, numpy_module):
    """The published files are Python 2 pickles of numpy 1 arrays (numpy.core.multiarray); a
    batch pickled again by Python 3 at protocol 2 spells its bytes through _codecs.encode."""
    data = np.arange(2 * 3072, dtype=np.int64).astype(np.uint8).reshape(2, 3072)
    raw = pickle.dumps({b"data": data, b"labels": [3, 9]}, protocol=protocol)
    raw = raw.replace(b"numpy._core.multiarray", numpy_module).replace(b"numpy.core.multiarray", numpy_module)
    images, labels = cifar._batch(raw, "batch")
    assert torch.equal(images, torch.from_numpy(data.reshape(2, 3, 32, 32))) and labels.tolist() == [3, 9]


def image_folder(root, n, classes=("a", "b")):
    """n small PNGs of distinct greys in one sub-folder per class."""
    for i in range(n):
        path = root / classes[i % len(classes)] / f"{i:05d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(png(i % 256))
    return root


def cache_files(folder):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_the_first_load_decodes_into_the_cache_and_later_ones_map_it(tmp_path, monkeypatch):
    from fastgan.app import data as data_io

    source, cache_dir = image_folder(tmp_path / "images", 12), tmp_path / "cache"
    in_memory = load(str(source), 16, 1)
    first = load(str(source), 16, 1, str(cache_dir))
    assert [n.rsplit(".", 1)[1] for n in cache_files(cache_dir)] == ["json", "npy"]  # no lock or temporary left
    monkeypatch.setattr(data_io, "_decode_job", None)  # a second decode would fail
    again = load(str(source), 16, 1, str(cache_dir))
    for data in (first, again):
        assert torch.equal(data.images, in_memory.images) and torch.equal(data.labels, in_memory.labels)
        assert data.class_names == ["a", "b"]
    assert again.images.data_ptr() != first.images.data_ptr()  # each run maps the file itself
    monkeypatch.undo()
    (source / "a" / "00000.png").write_bytes(png(99))  # a changed source is decoded again, under a new name
    os.utime(source / "a" / "00000.png", ns=(1, 1))
    changed = load(str(source), 16, 1, str(cache_dir))
    assert changed.images[0, 0, 0, 0] == 99 and len(cache_files(cache_dir)) == 4


def test_an_interrupted_decode_leaves_nothing_a_later_run_trusts(tmp_path, monkeypatch):
    from fastgan.app import data as data_io

    source, cache_dir = image_folder(tmp_path / "images", 6), tmp_path / "cache"
    real_decode, calls = data_io._decode_job, []

    def dies_at_the_fourth(job):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real_decode(job)

    monkeypatch.setattr(data_io, "_decode_job", dies_at_the_fourth)
    with pytest.raises(KeyboardInterrupt):
        load(str(source), 16, 1, str(cache_dir))
    assert cache_files(cache_dir) == []
    monkeypatch.undo()
    assert load(str(source), 16, 1, str(cache_dir)).images.shape == (6, 1, 16, 16)


def test_a_lock_left_by_a_dead_process_is_taken_over(tmp_path):
    import socket
    import subprocess
    import sys

    from fastgan.app import cache

    source, cache_dir = image_folder(tmp_path / "images", 4), tmp_path / "cache"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    name = cache.key(str(source), 16, 1, lambda n: n.endswith(".png") or n == "dataset.json")
    cache_dir.mkdir()
    (cache_dir / f"{name}.lock").write_text(f"{socket.gethostname()} {dead.stdout.strip()}")
    assert load(str(source), 16, 1, str(cache_dir)).images.shape == (4, 1, 16, 16)
    assert not (cache_dir / f"{name}.lock").exists()


def test_decoding_on_all_cores_gives_the_bits_of_one_core(tmp_path, monkeypatch):
    from fastgan.app import data as data_io

    source = image_folder(tmp_path / "images", 300)
    parallel = load(str(source), 16, 1)
    monkeypatch.setattr(data_io.os, "sched_getaffinity", lambda pid: {0})
    serial = load(str(source), 16, 1)
    assert torch.equal(parallel.images, serial.images) and torch.equal(parallel.labels, serial.labels)


def test_an_unwritable_cache_is_one_clear_error(tmp_path):
    source = image_folder(tmp_path / "images", 3)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(DataError, match=r"the data cache .*a-file/cache' cannot be written .* set --data-cache to a "
                                        r"writable folder, or to 'none'"):
        load(str(source), 16, 1, str(blocker / "cache"))
