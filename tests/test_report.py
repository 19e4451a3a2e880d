"""benchmarks/report.py on made-up pytest-benchmark JSON: one ratio per row, noise marked as
noise and never counted as a met or missed target, no empty GPU columns on a CPU run, and no
report written over an earlier one."""
import json
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "benchmarks"))
import report  # noqa: E402


def bench(group, variant, median, iqr=0.0, **info):
    return {"group": group, "stats": {"median": median, "iqr": iqr, "rounds": 25},
            "extra_info": {"variant": variant, "device": "Test CPU", **info}}


def paired(ratio, q1, q3):
    return {"paired_ratio": ratio, "paired_q1": q1, "paired_q3": q3}


def write(tmp_path, benchmarks, name="bench.json"):
    path = tmp_path / name
    path.write_text(json.dumps({"machine_info": {}, "benchmarks": benchmarks}))
    return str(path)


def make_report(tmp_path, *paths):
    out = tmp_path / "report"
    report.main([*paths, "--out", str(out)])
    (md,) = [name for name in os.listdir(out) if name.endswith(".md")]
    return (out / md).read_text()


def row(text, name):
    (line,) = [line for line in text.splitlines() if line.startswith(f"| {name} |")]
    return line


def test_noise_is_marked_and_counts_for_no_target(tmp_path):
    text = make_report(tmp_path, write(tmp_path, [
        # clean: every round has fastgan at about half stock's time, and the medians agree
        bench("op bn+relu G1 fwd+bwd fp32 nchw", "stock", 2e-3, 1e-5),
        bench("op bn+relu G1 fwd+bwd fp32 nchw", "fastgan", 1e-3, 1e-5, **paired(0.5, 0.48, 0.52)),
        # the rounds straddle 1: no win, no loss
        bench("op bn+relu G2 fwd+bwd fp32 nchw", "stock", 2e-3, 1e-5),
        bench("op bn+relu G2 fwd+bwd fp32 nchw", "fastgan", 2e-3, 1e-5, **paired(0.95, 0.8, 1.1)),
        # the rounds agree on 1.06x but the medians say 5.9x: the machine drifted
        bench("op conv+act D-in fwd fp32 nchw", "stock", 2.77e-3, 1e-5),
        bench("op conv+act D-in fwd fp32 nchw", "fastgan", 0.471e-3, 1e-5, **paired(0.943, 0.93, 0.95)),
        # a step whose paired ratio is 1.00x while its medians say 0.73x
        bench("step MLP-GAN-28 batch 64 fp32", "stock-eager", 24.10e-3, 1e-4, batch=64, peak_mib=0.0),
        bench("step MLP-GAN-28 batch 64 fp32", "fastgan-eager", 33.16e-3, 1e-4, batch=64, peak_mib=0.0,
              **paired(1.0, 0.9, 1.12)),
    ]))
    assert row(text, "bn+relu G1 fwd+bwd fp32 nchw").endswith("| 2.00x |")
    assert "1.05x (noise: the rounds span 0.91x-1.25x)" in row(text, "bn+relu G2 fwd+bwd fp32 nchw")
    assert "1.06x (noise: the medians say 5.88x)" in row(text, "conv+act D-in fwd fp32 nchw")
    assert "1.00x (noise: the rounds span 0.89x-1.11x)" in row(text, "fastgan-eager")
    targets = text.split("## Targets")[1]
    assert "median layer: 1.05x (target 1.3x) — not measured cleanly" in targets  # the lower middle of two
    assert "(step MLP-GAN-28 batch 64 fp32): 1.00x (target 1.0x) — not measured cleanly" in targets
    assert "worst layer (bn+relu G2 fwd+bwd fp32 nchw): 1.05x (target 1.3x) — not measured cleanly" in targets
    assert "MISSED" not in targets
    # a CPU run has no measured ceilings and no allocator peak: no columns for them
    assert row(text, "op") == "| op | stock ms | fastgan ms | speed-up |"
    assert row(text, "variant") == "| variant | median ms | images/s | vs stock eager |"


def test_a_clean_miss_is_a_miss(tmp_path):
    text = make_report(tmp_path, write(tmp_path, [
        bench("op bn+relu G1 fwd+bwd fp32 nchw", "stock", 1e-3, 1e-6),
        bench("op bn+relu G1 fwd+bwd fp32 nchw", "fastgan", 0.9e-3, 1e-6, **paired(0.9, 0.89, 0.91)),
    ]))
    assert "1.11x (target 1.3x) — MISSED by 15%" in text


def test_reports_are_never_written_over(tmp_path):
    path = write(tmp_path, [bench("op bce fwd fp32", "stock", 2e-3), bench("op bce fwd fp32", "fastgan", 1e-3)])
    for _ in range(2):
        report.main([path, "--out", str(tmp_path / "report")])
    first, second = sorted((n for n in os.listdir(tmp_path / "report") if n.endswith(".md")), key=len)
    assert second == first[:-len(".md")] + "-2.md"


@pytest.mark.parametrize("q1,q3,clean", [(0.4, 0.6, True), (0.9, 1.1, False), (1.1, 1.3, True)])
def test_ratio_is_noise_exactly_when_the_rounds_straddle_one(q1, q3, clean):
    ratio = report.Ratio({"median": 1.0, "rounds": 25},
                         {"median": 1 / ((1 / q1 + 1 / q3) / 2), "rounds": 25, **paired((q1 + q3) / 2, q1, q3)})
    assert ratio.clean is clean


def test_one_round_is_noise(tmp_path):
    one = {"median": 1.0, "rounds": 1}
    assert report.Ratio(one, {**one, "median": 0.5}).why() == "noise: 1 round(s) give no spread"


def test_a_step_group_without_stock_eager_is_still_reported(tmp_path):
    # A run cut short can leave only a compiled variant of a step; its row has no ratio to show.
    path = tmp_path / "bench.json"
    path.write_text(json.dumps({"machine_info": {"python_version": "3.12.3"}, "datetime": "2026-01-02T03:04:05",
                                "benchmarks": [bench("step DCGAN-64 batch 128 fp32", "stock-compile", 0.012,
                                                     batch=128, torch="2.11.0+cu130")]}))
    text = make_report(tmp_path, str(path))
    assert "| stock-compile | 12.00 | 10667 | n/a |" in text
    assert "2026-01-02; torch 2.11.0+cu130, Python 3.12.3;" in text


def test_a_gpu_run_without_ceilings_gets_the_gpu_targets(tmp_path):
    # The per-op run alone has no device-ceiling group; each benchmark records gpu=True.
    text = make_report(tmp_path, write(tmp_path, [
        bench("op bn+relu G3 fwd+bwd fp32 nchw", "stock", 2e-3, 1e-6, gpu=True),
        bench("op bn+relu G3 fwd+bwd fp32 nchw", "fastgan", 1.5e-3, 1e-6, gpu=True, **paired(0.75, 0.74, 0.76)),
    ]))
    targets = text.split("## Targets")[1]
    assert "BN+act fwd+bwd fp32 NCHW, worst shape: 1.33x (target 1.5x) — MISSED by 11%" in targets
