"""`fastgan train` / `fastgan sample` on bad input: one line, exit code 2, no traceback, and
no file written or changed. A run folder holding another run is never written into unless the
user says --resume or --overwrite."""
import json
import os

import pytest

pytest.importorskip("sklearn")
pytest.importorskip("PIL")

from fastgan.app import checkpoint as ckpt_io  # noqa: E402
from fastgan.app.cli import main  # noqa: E402
from helpers import cli_error  # noqa: E402

TINY = ["--nz", "8", "--ngf", "4", "--ndf", "4", "--batch-size", "8", "--device", "cpu"]


def snapshot(folder):
    """Every file under folder with its bytes: what 'nothing changed' compares."""
    files = {}
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                files[os.path.relpath(path, folder)] = f.read()
    return files


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    assert main(["train", *TINY, "--steps", "3", "--log-every", "1", "--out", str(out)]) == 0
    return out


def test_unreadable_checkpoints_name_the_cause(tmp_path, capsys, trained):
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    text = tmp_path / "passwd"
    text.write_text("root:x:0:0:root:/root:/bin/bash\n")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes((trained / "checkpoint.pt").read_bytes()[:2000])
    out = str(tmp_path / "x.png")
    assert "is empty (0 bytes)" in cli_error(capsys, "sample", "--checkpoint", str(empty), "--out", out)
    assert "not a file written by torch.save" in cli_error(capsys, "sample", "--checkpoint", str(text), "--out", out)
    assert "corrupt" in cli_error(capsys, "sample", "--checkpoint", str(truncated), "--out", out)
    assert "is a folder" in cli_error(capsys, "sample", "--checkpoint", str(trained), "--out", out)
    # --resume reads checkpoints through the same load()
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "checkpoint.pt").write_bytes(b"")
    assert "is empty" in cli_error(capsys, "train", *TINY, "--resume", "--out", str(tmp_path / "r"))
    assert not os.path.exists(out)
    with pytest.raises(ckpt_io.CheckpointError, match="is empty"):
        ckpt_io.load(str(empty))


@pytest.mark.parametrize("option,value,message", [
    ("--batch-size", "0", "argument --batch-size: must be >= 1"),
    ("--steps", "0", "argument --steps: must be >= 1"),
    ("--lr", "-1e-3", "argument --lr: must be > 0.0"),
    ("--lr", "nan", "argument --lr: must be a finite number"),
    ("--beta1", "1.0", "argument --beta1: must be >= 0.0 and < 1.0"),
    ("--nz", "0", "argument --nz: must be >= 1"),
    ("--ngf", "-4", "argument --ngf: must be >= 1"),
    ("--ndf", "100000", "argument --ndf: must be >= 1 and <= 2048"),
    ("--sample-every", "0", "argument --sample-every: must be >= 1"),
    ("--checkpoint-every", "-1", "argument --checkpoint-every: must be >= 1"),
    ("--log-every", "0", "argument --log-every: must be >= 1"),
    ("--ema-decay", "1.5", "argument --ema-decay: must be >= 0.0 and <= 1.0"),
    ("--dist-timeout", "0", "argument --dist-timeout: must be > 0.0"),
    ("--seed", "-1", "argument --seed: must be >= 0"),
    ("--data", "", "argument --data: must not be empty"),
])
def test_numeric_options_are_checked_up_front(tmp_path, capsys, option, value, message):
    out = tmp_path / "o"
    assert message in cli_error(capsys, "train", *TINY, f"{option}={value}", "--out", str(out))
    assert not out.exists()


def test_sample_n_and_single_image(tmp_path, capsys, trained):
    ckpt = str(trained / "checkpoint.pt")
    assert "argument --n: must be >= 1" in cli_error(capsys, "sample", "--checkpoint", ckpt, "--out",
                                                       str(tmp_path / "none.png"), "--n", "0")
    for extra in ([], ["--running-stats"]):  # one image, with the batch's or the running statistics
        out = tmp_path / f"one{len(extra)}.png"
        assert main(["sample", "--checkpoint", ckpt, "--out", str(out), "--n", "1", *extra]) == 0
        assert out.stat().st_size > 0


def test_sample_out_path(tmp_path, capsys, trained):
    ckpt = str(trained / "checkpoint.pt")
    assert "does not exist" in cli_error(capsys, "sample", "--checkpoint", ckpt, "--out",
                                         str(tmp_path / "no_such_dir" / "x.png"))
    assert not (tmp_path / "no_such_dir").exists()
    assert "must end in .png" in cli_error(capsys, "sample", "--checkpoint", ckpt, "--out", str(tmp_path / "x.jpg"))
    folder = tmp_path / "dir.png"
    folder.mkdir()
    assert "is a folder" in cli_error(capsys, "sample", "--checkpoint", ckpt, "--out", str(folder))


def test_train_out_is_a_file(tmp_path, capsys):
    target = tmp_path / "afile"
    target.write_text("keep me")
    assert "is a file" in cli_error(capsys, "train", *TINY, "--out", str(target))
    assert target.read_text() == "keep me"


def test_existing_run_needs_resume_or_overwrite(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *TINY, "--steps", "4", "--log-every", "2", "--sample-every", "2", "--out", str(out)]) == 0
    (out / "notes.txt").write_text("mine")
    before = snapshot(out)
    err = cli_error(capsys, "train", *TINY, "--steps", "2", "--out", str(out))
    assert "already holds a run" in err and "--resume" in err and "--overwrite" in err
    assert snapshot(out) == before
    assert "give one of them" in cli_error(capsys, "train", *TINY, "--resume", "--overwrite", "--out", str(out))
    # --overwrite deletes the old run's files (not the user's) and starts over
    assert main(["train", *TINY, "--steps", "2", "--log-every", "1", "--sample-every", "1", "--overwrite",
                 "--out", str(out)]) == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    assert sorted(os.listdir(out / "samples")) == ["step_0000001.png", "step_0000002.png"]
    assert (out / "notes.txt").read_text() == "mine"
    assert json.loads((out / "config.json").read_text())["steps"] == 2


def test_resume_with_nothing_to_do_leaves_the_run_untouched(tmp_path, capsys, trained):
    before = snapshot(trained)
    assert main(["train", *TINY, "--resume", "--steps", "2", "--out", str(trained)]) == 0
    assert snapshot(trained) == before


def test_config_file_errors_exit_2(tmp_path, capsys):
    out = str(tmp_path / "o")
    assert "does not exist" in cli_error(capsys, "train", "--config", str(tmp_path / "missing.toml"), "--out", out)
    bad = tmp_path / "bad.toml"
    bad.write_text("steps = \n")
    assert "cannot be read" in cli_error(capsys, "train", "--config", str(bad), "--out", out)
    bad.write_text("batch-size = 0\n")
    assert "argument --batch-size: must be >= 1" in cli_error(capsys, "train", "--config", str(bad), "--out", out)
    bad.write_text("image_size = 48\n")
    assert "argument --image-size: invalid choice" in cli_error(capsys, "train", "--config", str(bad), "--out", out)
    bad.write_text("ema = 'yes'\n")
    assert "argument --ema: expected bool" in cli_error(capsys, "train", "--config", str(bad), "--out", out)
    assert not os.path.exists(out)


def test_help_shows_every_default(capsys):
    for command in ("train", "sample"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = capsys.readouterr().out
        options = [line.split()[0].rstrip(",") for line in text.splitlines()
                   if line.startswith("  --") and not line.startswith("  --help")]
        blocks = text.split("\n  --")[1:]
        assert len(blocks) == len(options) > 5
        for block in blocks:
            name = block.split()[0]
            if name in ("checkpoint", "out") and command == "sample":
                continue  # required: no default
            assert "(default:" in " ".join(block.split()), f"{command} --{name} shows no default"


def test_runs_folder_is_ignored_by_git():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, ".gitignore")) as f:
        assert "runs/" in f.read().split()


def test_images_per_second_is_a_moving_average(monkeypatch):
    from fastgan.app import run_log

    clock = iter([0.0, 1.0, 2.0, 12.0, 13.0])  # one slow interval among fast ones
    monkeypatch.setattr(run_log.time, "perf_counter", lambda: next(clock))
    speed = run_log.Throughput(images_per_step=10, step=0, window=3)
    rates = [speed.update(step) for step in (1, 2, 3, 4)]
    assert rates[:2] == [10.0, 10.0]
    assert rates[2] == pytest.approx(30 / 12)  # the slow interval shared with the ones before it
    assert rates[3] == pytest.approx(30 / 12)  # window of 3 intervals: steps 1..4, from 1 s to 13 s
    assert speed.mean() == pytest.approx(40 / 13)


@pytest.mark.parametrize("argv,expected", [
    (["train", "--stpes", "100"], "fastgan train: error: unrecognized arguments: --stpes 100 (did you mean --steps?)"),
    (["sample", "--checkpoint", "c.pt", "--out", "g.png", "--nn", "3"],
     "fastgan sample: error: unrecognized arguments: --nn 3 (did you mean --n?)"),
    (["train", "--zzz"], "fastgan train: error: unrecognized arguments: --zzz"),
])
def test_an_unknown_option_gets_its_commands_usage_and_the_closest_option(capsys, argv, expected):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"usage: fastgan {argv[0]} ")  # the command's usage, not the top level's
    assert err.strip().splitlines()[-1] == expected
