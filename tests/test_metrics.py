"""FID and KID: the statistics against closed forms, scipy and a direct MMD; `fastgan fid` and
`fastgan train --fid-every` end to end with a tiny TorchScript feature network written here, so
that nothing is downloaded."""
import json
import os

import numpy as np
import pytest
import torch

from fastgan.app import metrics

pytest.importorskip("sklearn")
pytest.importorskip("PIL")

from fastgan.app.cli import main  # noqa: E402
from helpers import cli_error  # noqa: E402
from fastgan.app.config import TrainConfig  # noqa: E402
from fastgan.app.train import Trainer  # noqa: E402


def random_spd(d, generator, scale=1.0):
    a = torch.randn(d, d, dtype=torch.float64, generator=generator)
    return scale * (a @ a.T / d + 0.1 * torch.eye(d, dtype=torch.float64))


# --- the Frechet distance --------------------------------------------------------------

def test_frechet_distance_of_diagonal_gaussians_matches_the_closed_form():
    g = torch.Generator().manual_seed(0)
    m1, m2 = torch.randn(6, dtype=torch.float64, generator=g), torch.randn(6, dtype=torch.float64, generator=g)
    v1, v2 = torch.rand(6, dtype=torch.float64, generator=g) + 0.1, torch.rand(6, dtype=torch.float64, generator=g) * 5
    expected = ((m1 - m2) ** 2).sum() + (v1 + v2 - 2 * (v1 * v2).sqrt()).sum()
    got = metrics.frechet_distance(metrics.Gaussian(m1, torch.diag(v1)), metrics.Gaussian(m2, torch.diag(v2)))
    assert got == pytest.approx(expected.item(), rel=1e-12, abs=1e-12)


def test_trace_sqrt_of_non_commuting_2x2_matches_the_closed_form():
    """For 2x2 PSD matrices with product P: tr(P^(1/2)) = sqrt(tr P + 2 sqrt(det P))."""
    g = torch.Generator().manual_seed(1)
    for _ in range(20):
        s1, s2 = random_spd(2, g), random_spd(2, g, scale=30.0)
        assert not torch.allclose(s1 @ s2, s2 @ s1)  # the case the symmetric rewrite must get right
        p = s1 @ s2
        expected = (p.trace() + 2 * p.det().sqrt()).sqrt().item()
        assert metrics.trace_sqrt_product(s1, s2) == pytest.approx(expected, rel=1e-12)


def test_frechet_distance_matches_scipy_sqrtm():
    scipy_linalg = pytest.importorskip("scipy.linalg")
    g = torch.Generator().manual_seed(2)
    d = 32
    s1, s2 = random_spd(d, g), random_spd(d, g, scale=4.0)
    m1, m2 = torch.randn(d, dtype=torch.float64, generator=g), torch.randn(d, dtype=torch.float64, generator=g)
    root = scipy_linalg.sqrtm(s1.numpy() @ s2.numpy())
    expected = (((m1 - m2) ** 2).sum() + s1.trace() + s2.trace()).item() - 2 * float(root.real.trace())
    got = metrics.frechet_distance(metrics.Gaussian(m1, s1), metrics.Gaussian(m2, s2))
    assert got == pytest.approx(expected, rel=1e-9)


def test_fid_of_a_set_with_itself_is_zero_even_with_a_singular_covariance():
    """64-d features from 40 images: the covariance has rank 39. The distance must still be ~0,
    not a negative number or a NaN from the square root of a near-singular product."""
    g = torch.Generator().manual_seed(3)
    feats = torch.randn(40, 64, dtype=torch.float64, generator=g) * 3 + 10
    assert 0.0 <= metrics.fid(feats, feats) < 1e-8
    other = torch.randn(40, 64, dtype=torch.float64, generator=g) * 3 + 10
    assert metrics.fid(feats, other) == pytest.approx(metrics.fid(other, feats), rel=1e-9)
    assert metrics.fid(feats, other) > 1.0


def test_gaussian_fit_is_the_unbiased_covariance():
    g = torch.Generator().manual_seed(4)
    x = torch.randn(50, 5, dtype=torch.float64, generator=g)
    fit = metrics.Gaussian.fit(x)
    torch.testing.assert_close(fit.cov, torch.cov(x.T), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(fit.mean, x.mean(0), rtol=1e-12, atol=1e-12)


# --- KID --------------------------------------------------------------------------------

def direct_mmd2(x, y):
    m, d = len(x), x.shape[1]
    k = lambda a, b: (float(a @ b) / d + 1.0) ** 3  # noqa: E731
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    return xx + yy - 2 * xy


def test_mmd2_matches_a_direct_computation():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(7, 5, dtype=torch.float64, generator=g)
    y = torch.randn(7, 5, dtype=torch.float64, generator=g) * 1.5 + 0.3
    assert metrics.mmd2_unbiased(x, y) == pytest.approx(direct_mmd2(x, y), rel=1e-12)


def test_kid_separates_distributions_and_is_unbiased_for_equal_ones():
    g = torch.Generator().manual_seed(6)
    a, b = torch.randn(400, 8, dtype=torch.float64, generator=g), torch.randn(400, 8, dtype=torch.float64, generator=g)
    same, same_std = metrics.kid(a, b, subsets=50, subset_size=100)
    shifted, _ = metrics.kid(a, b + 1.0, subsets=50, subset_size=100)
    assert abs(same) < 3 * same_std / 50 ** 0.5 + 1e-3  # unbiased: centred on zero, may be negative
    assert shifted > 50 * max(abs(same), same_std / 50 ** 0.5)


# --- the feature network and the commands -----------------------------------------------

class TinyFeatures(torch.nn.Module):
    """Stands in for the Inception network: same call, 96 pooled-colour features (RGB)."""

    def forward(self, images: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        x = torch.nn.functional.adaptive_avg_pool2d(images.float() / 255.0, 4)
        return torch.cat([x.flatten(1), (x * x).flatten(1)], 1)


@pytest.fixture
def tiny_network(tmp_path):
    path = tmp_path / "tiny-features.pt"
    torch.jit.save(torch.jit.script(TinyFeatures()), str(path))
    return str(path)


def test_a_missing_network_is_named_with_where_to_get_it(tmp_path, capsys):
    err = cli_error(capsys, "fid", "--inception", str(tmp_path / "nope.pt"), "--real", "digits", "--fake",
                         "digits")
    assert "inception-2015-12-05.pt" in err and "downloads nothing" in err
    assert "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/inception-2015-12-05.pt" in err
    (tmp_path / "junk.pt").write_bytes(b"not torchscript")
    err = cli_error(capsys, "fid", "--inception", str(tmp_path / "junk.pt"), "--real", "digits", "--fake",
                         "digits")
    assert "not a loadable TorchScript file" in err
    for option, value, expected in (("--n", "1", "--n: must be an integer >= 2"),
                                    ("--kid-subsets", "0", "--kid-subsets: must be >= 1"),
                                    ("--kid-subset-size", "1", "--kid-subset-size: must be >= 2")):
        err = cli_error(capsys, "fid", "--inception", str(tmp_path / "nope.pt"), "--real", "digits", "--fake",
                             "digits", option, value)
        assert expected in err
    out = tmp_path / "run"
    err = cli_error(capsys, "train", "--fid-every", "5", "--out", str(out), "--device", "cpu")
    assert "--fid-every" in err and "inception-2015-12-05.pt" in err
    assert not out.exists()  # nothing written


def test_fid_command_on_image_sets_and_on_a_checkpoint(tmp_path, tiny_network, capsys):
    assert main(["fid", "--inception", tiny_network, "--real", "digits", "--fake", "digits", "--n", "300",
                 "--image-size", "32", "--channels", "1", "--kid-subsets", "5", "--kid-subset-size", "100"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("FID ") and "KID" in line
    fid_same = float(line.split()[1])
    assert 0.0 <= fid_same < 0.5  # two random subsets of the same data

    cfg = TrainConfig(out=str(tmp_path / "run"), steps=2, nz=8, ngf=4, ndf=4, batch_size=8, log_every=1,
                      sample_every=1000, checkpoint_every=1000, device="cpu")
    Trainer(cfg, log=lambda *_: None).run()
    assert main(["fid", "--inception", tiny_network, "--real", "digits", "--fake",
                 os.path.join(cfg.out, "checkpoint.pt"), "--n", "64", "--batch-size", "32", "--kid-subsets", "3",
                 "--kid-subset-size", "32"]) == 0
    fid_untrained = float(capsys.readouterr().out.split()[1])
    assert fid_untrained > 10 * fid_same  # a G after two steps is far from the data


def test_statistics_files_hold_pytorch_fids_layout_and_score_as_the_images_do(tmp_path, tiny_network, capsys):
    from fastgan.app.evaluate import real_images

    stats = tmp_path / "digits.npz"
    common = ["fid", "--inception", tiny_network, "--n", "300", "--image-size", "32", "--channels", "1"]
    assert main([*common, "--real", "digits", "--save-stats", str(stats)]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {stats}"
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".npz") == ["digits.npz"]  # no temporary left
    feats = metrics.features(metrics.load_feature_network(tiny_network), real_images("digits", 32, 1, 300)).numpy()
    with np.load(stats) as f:
        assert f["mu"].dtype == f["sigma"].dtype == np.float64 and int(f["n"]) == 300
        np.testing.assert_allclose(f["mu"], feats.mean(0), rtol=1e-12)
        np.testing.assert_allclose(f["sigma"], np.cov(feats, rowvar=False), rtol=1e-10, atol=1e-14)

    kid = ["--kid-subsets", "2", "--kid-subset-size", "50"]
    assert main([*common, "--real", "digits", "--fake", "digits", *kid]) == 0
    from_images = capsys.readouterr().out
    assert main([*common, "--real", str(stats), "--fake", "digits"]) == 0
    from_file = capsys.readouterr().out
    assert float(from_file.split()[1]) == pytest.approx(float(from_images.split()[1]), rel=1e-9)
    assert float(from_file.split()[1]) > 0
    assert "KID n/a (real statistics from a file)" in from_file and "(300 real, 300 generated images)" in from_file


def test_bad_statistics_files_and_options_get_one_line(tmp_path, tiny_network, capsys):
    fid = ["fid", "--inception", tiny_network, "--n", "50", "--image-size", "32", "--channels", "1"]
    score = [*fid, "--fake", "digits", "--real"]
    (tmp_path / "junk.npz").write_bytes(b"junk")
    np.savez(tmp_path / "no-mu.npz", sigma=np.eye(3))
    np.savez(tmp_path / "shapes.npz", mu=np.zeros(3), sigma=np.eye(4))
    np.savez(tmp_path / "other-net.npz", mu=np.zeros(3), sigma=np.eye(3))
    np.savez(tmp_path / "nan.npz", mu=np.full(96, np.nan), sigma=np.eye(96))
    np.savez(tmp_path / "pickled.npz", mu=np.array([object()], dtype=object), sigma=np.eye(1))
    for name, expected in (("missing.npz", "does not exist"), ("junk.npz", "not a readable .npz statistics file"),
                           ("no-mu.npz", "has no mu array"), ("shapes.npz", "expected (D,) and (D, D)"),
                           ("other-net.npz", "3-d statistics and the network gives 96-d features"),
                           ("nan.npz", "NaN or infinite"), ("pickled.npz", "not a readable .npz statistics file")):
        assert expected in cli_error(capsys, *score, str(tmp_path / name)), name
    assert "must end in .npz" in cli_error(capsys, *fid, "--real", "digits", "--save-stats", str(tmp_path / "s.txt"))
    assert "does not exist" in cli_error(capsys, *fid, "--real", "digits", "--save-stats",
                                         str(tmp_path / "nope" / "s.npz"))
    assert "needs --fake" in cli_error(capsys, *fid, "--real", "digits")
    assert "already a statistics file" in cli_error(capsys, *fid, "--real", str(tmp_path / "nan.npz"),
                                                    "--save-stats", str(tmp_path / "s.npz"))


def test_train_logs_fid_and_kid(tmp_path, tiny_network):
    cfg = TrainConfig(out=str(tmp_path / "run"), steps=4, nz=8, ngf=4, ndf=4, batch_size=8, log_every=1,
                      sample_every=1000, checkpoint_every=1000, device="cpu", fid_every=2, inception=tiny_network,
                      fid_n=64)
    Trainer(cfg, log=lambda *_: None).run()
    with open(os.path.join(cfg.out, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    fid_rows = [r for r in rows if "fid" in r]
    assert [r["step"] for r in fid_rows] == [2, 4]
    assert all(r["fid"] > 0 and r["kid_std"] >= 0 for r in fid_rows)
    assert len([r for r in rows if "loss_d" in r]) == 4
    assert os.path.exists(os.path.join(cfg.out, "loss.png")) and os.path.exists(os.path.join(cfg.out, "fid.png"))
