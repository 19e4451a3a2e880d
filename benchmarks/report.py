"""Turn pytest-benchmark JSON into the fastgan report: a Markdown table (variant, median,
images/s, ratio to stock eager, peak memory), a PNG bar chart, the roofline on GPU, and
the issue targets with pass/miss and by how much.

    python benchmarks/report.py bench.json [more.json ...] [--out DIR]
writes DIR/<device>-<date>.{json,md,png} (DIR: bench-report/ in the current folder), adding -2,
-3, ... to the name rather than overwrite an earlier report. The project's committed results
are made with --out benchmarks/results.

Given several runs of the suite, each case's time is the median of the runs' medians. On a
shared 2-core machine a slow spell can last for a whole case (tens of milliseconds), which
the rounds inside one run cannot outvote; separate runs can. The saved JSON holds every
run's benchmarks (tagged extra_info.run), so the report can be made again from it alone."""
import argparse
import datetime
import json
import os
import re
import shutil
import statistics
from collections import defaultdict


def load(paths):
    """(merged pytest-benchmark data, rows): one row per benchmark per run."""
    merged, rows = None, []
    for run, path in enumerate(paths):
        with open(path) as f:
            data = json.load(f)
        for b in data["benchmarks"]:
            info = b.setdefault("extra_info", {})
            info.setdefault("run", f"{run}")  # a merged file keeps its own tags
            if "variant" not in info or not b.get("stats"):
                continue
            rows.append({"group": b["group"], "variant": info["variant"],
                         "median": b["stats"]["median"] / info.get("inner", 1), "info": info})
        if merged is None:
            merged = data
        else:
            merged["benchmarks"] += data["benchmarks"]
    return merged, rows


def by_group(rows):
    """groups[group][variant]: the first run's row, its median replaced by the median over runs."""
    times = defaultdict(list)
    groups = defaultdict(dict)
    for r in rows:
        times[r["group"], r["variant"]].append(r["median"])
        groups[r["group"]].setdefault(r["variant"], dict(r))
    paired = defaultdict(list)
    for r in rows:
        if "paired_ratio" in r["info"]:
            paired[r["group"], r["variant"]].append(r["info"]["paired_ratio"])
    for (group, variant), ts in times.items():
        groups[group][variant]["median"] = statistics.median(ts)
        groups[group][variant]["runs"] = len(ts)
        if paired.get((group, variant)):
            groups[group][variant]["paired_ratio"] = statistics.median(paired[group, variant])
    return groups


def runs_of(rows):
    return len({r["info"]["run"] for r in rows})


def ceilings(groups):
    c = groups.get("device ceilings", {})
    out = {}
    if "copy" in c:
        out["bandwidth"] = c["copy"]["info"]["bytes"] / c["copy"]["median"]
    for k in ("matmul-bf16", "matmul-tf32"):
        if k in c:
            out[k] = c[k]["info"]["flops"] / c[k]["median"]
    return out


def baseline_of(variants):
    return variants.get("stock-eager") or variants.get("stock")


def step_table(name, variants, ceil):
    base = baseline_of(variants)
    lines = [f"### {name}", "", "| variant | median ms | images/s | vs stock eager | peak memory MiB | roofline |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    floor = None
    if base and "flops" in base["info"] and ceil:
        rate = ceil.get("matmul-bf16" if "bf16" in name else "matmul-tf32")
        if rate and ceil.get("bandwidth"):
            floor = max(base["info"]["flops"] / rate, base["info"]["min_bytes"] / ceil["bandwidth"])
    for v, r in sorted(variants.items(), key=lambda kv: kv[1]["median"]):
        ratio = base["median"] / r["median"] if base else float("nan")
        if v == "fastgan-eager" and base and "paired_ratio" in r:  # alternating rounds, as the targets use
            ratio = 1.0 / r["paired_ratio"]
        roof = f"{floor / r['median']:.0%} of floor" if floor else ""
        lines.append(f"| {v} | {r['median'] * 1e3:.2f} | {r['info'].get('batch', 0) / r['median']:.0f} | "
                     f"{ratio:.2f}x | {r['info'].get('peak_mib', 0):.1f} | {roof} |")
    if base and "paired_ratio" in variants.get("fastgan-eager", {}):
        lines.append("\nfastgan-eager's ratio comes from rounds in which it and stock eager ran alternately; "
                     "the others divide the medians.")
    if floor:
        lines.append(f"\nFloor: {floor * 1e3:.3f} ms = max(FLOPs {base['info']['flops'] / 1e9:.1f} G over the measured "
                     f"matmul rate, conv bytes {base['info']['min_bytes'] / 1e6:.0f} MB over the measured copy bandwidth).")
    return lines, floor


def speedup(v):
    """stock / fastgan for a group with both variants: from alternating rounds where the
    benchmark recorded them (conftest.paired_ratio), else from the two medians."""
    paired = v["fastgan"].get("paired_ratio")
    return 1.0 / paired if paired else v["stock"]["median"] / v["fastgan"]["median"]


def eager_speedup(v):
    """stock eager / fastgan eager for a step group, as speedup() for an op."""
    return speedup({"stock": v["stock-eager"], "fastgan": v["fastgan-eager"]})


def op_table(groups, ceil):
    lines = ["| op | stock ms | fastgan ms | speed-up | fastgan peak MiB | fastgan bandwidth |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for name, v in sorted(groups.items()):
        if not name.startswith("op ") or "stock" not in v or "fastgan" not in v:
            continue
        s, f = v["stock"], v["fastgan"]
        bw = ""
        if ceil.get("bandwidth") and "min_bytes" in f["info"]:
            bw = f"{f['info']['min_bytes'] / f['median'] / ceil['bandwidth']:.0%} of copy"
        lines.append(f"| {name[3:]} | {s['median'] * 1e3:.3f} | {f['median'] * 1e3:.3f} | "
                     f"{speedup(v):.2f}x | {f['info'].get('peak_mib', 0):.1f} | {bw} |")
    return lines


HOST_TARGET = 0.7  # fastgan / stock host time, every layer and the whole step
OPS_TARGET = 0.6  # fastgan / stock ops dispatched per training step


def host_table(groups):
    """The host-overhead group (benchmarks/test_host_overhead.py): fastgan / stock per case,
    lower is better, and the ops dispatched per training step."""
    host = {n[len("host "):]: v for n, v in groups.items() if n.startswith("host ") and "stock" in v and "fastgan" in v}
    if not host:
        return [], []
    lines = ["| case | stock us | fastgan us | fastgan / stock |", "| --- | ---: | ---: | ---: |"]
    verdicts = []
    for case, v in sorted(host.items()):
        s, f = v["stock"]["median"], v["fastgan"]["median"]
        # The ratio of alternating rounds where the benchmark recorded one (see test_host_overhead).
        ratio = v["fastgan"].get("paired_ratio", f / s)
        lines.append(f"| {case} | {s * 1e6:.1f} | {f * 1e6:.1f} | {ratio:.2f} |")
        verdicts.append(check_at_most(f"host time, {case}", ratio, HOST_TARGET))
        ops_s, ops_f = v["stock"]["info"].get("ops_per_step"), v["fastgan"]["info"].get("ops_per_step")
        if ops_s and ops_f:
            lines.append(f"| ops dispatched per step | {ops_s} | {ops_f} | {ops_f / ops_s:.2f} |")
            verdicts.append(check_at_most("ops dispatched per training step", ops_f / ops_s, OPS_TARGET))
    return lines, verdicts


def check_at_most(label, value, target):
    verdict = "met" if value <= target else f"MISSED by {(value - target) / target:.0%}"
    return f"- {label}: {value:.2f} of stock (target <= {target}) — {verdict}"


def check(label, value, target):
    ok = value >= target
    verdict = "met" if ok else f"MISSED by {(target - value) / target:.0%}"
    return f"- {label}: {value:.2f}x (target {target}x) — {verdict}"


def targets(groups, gpu, floors):
    out = []
    ops = {n: v for n, v in groups.items() if n.startswith("op ") and "stock" in v and "fastgan" in v}
    speed = {n: speedup(v) for n, v in ops.items()}
    steps = {n: v for n, v in groups.items() if n.startswith("step ")}
    if not gpu:
        for n, v in steps.items():
            if "fastgan-eager" in v and "stock-eager" in v:
                out.append(check(f"fastgan eager step vs stock eager ({n})", eager_speedup(v), 1.0))
        bn = {n: s for n, s in speed.items() if n.startswith("op bn+") and "fwd+bwd" in n}
        if bn:
            worst = min(bn, key=bn.get)
            out.append(check(f"fused BN+act fwd+bwd vs stock pair, worst layer ({worst[3:]})", bn[worst], 1.3))
            out.append(check("fused BN+act fwd+bwd vs stock pair, median layer", statistics.median(bn.values()), 1.3))
        return out
    for n, v in steps.items():
        if "fastgan-eager" in v and "stock-eager" in v:
            out.append(check(f"fastgan eager vs stock eager ({n})", eager_speedup(v), 1.3))
        compiled = [r["median"] for k, r in v.items() if k.startswith("stock-compile")]
        if "fastgan-graph" in v and compiled:
            out.append(check(f"fastgan graph vs best torch.compile ({n})", min(compiled) / v["fastgan-graph"]["median"], 1.15))
        if "bf16" in n and "fastgan-graph" in v and floors.get(n):
            ratio = v["fastgan-graph"]["median"] / floors[n]
            out.append(f"- bf16 channels_last fastgan graph: {ratio:.2f}x the roofline floor (target within 2.5x) — "
                       + ("met" if ratio <= 2.5 else f"MISSED by {ratio / 2.5 - 1:.0%}"))
    for label, pattern, target in [("BN+act fwd+bwd fp32 NCHW", r"op bn\+.* fwd\+bwd fp32 nchw", 1.5),
                                   ("BN+act fwd+bwd bf16 NHWC", r"op bn\+.* fwd\+bwd bf16 nhwc", 1.3),
                                   ("BCE fwd+bwd", r"op bce fwd\+bwd", 2.0)]:
        vals = [s for n, s in speed.items() if re.match(pattern, n)]
        if vals:
            out.append(check(f"{label}, worst shape", min(vals), target))
    return out


def chart(groups, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no PNG (pip install matplotlib)")
        return False
    steps = {n: v for n, v in groups.items() if n.startswith("step ")}
    ops = {n: v for n, v in groups.items() if n.startswith("op ") and "stock" in v and "fastgan" in v}
    panels = len(steps) + (1 if ops else 0)
    if panels == 0:
        return False
    fig, axes = plt.subplots(panels, 1, figsize=(10, 2.2 + 0.35 * max([len(v) for v in steps.values()] + [len(ops) if ops else 0]) * 1.0 * panels / max(panels, 1)), squeeze=False)
    i = 0
    for name, v in steps.items():
        base = baseline_of(v)
        items = sorted(v.items(), key=lambda kv: kv[1]["median"])
        ax = axes[i][0]
        ax.barh([k for k, _ in items], [base["median"] / r["median"] for _, r in items],
                color=["tab:orange" if k.startswith("fastgan") else "tab:gray" for k, _ in items])
        ax.axvline(1.0, color="k", lw=0.8)
        ax.set_title(f"{name}: speed-up over stock eager")
        i += 1
    if ops:
        ax = axes[i][0]
        names = sorted(ops)
        ax.barh([n[3:] for n in names], [speedup(ops[n]) for n in names],
                color="tab:orange")
        ax.axvline(1.0, color="k", lw=0.8)
        ax.tick_params(axis="y", labelsize=6)
        ax.set_title("per op: fastgan speed-up over the stock nn.* sequence")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json", nargs="+", help="pytest-benchmark JSON of one or more runs of the suite")
    parser.add_argument("--out", default="bench-report", help="folder for the report (default: %(default)s)")
    args = parser.parse_args(argv)
    data, rows = load(args.json)
    groups = by_group(rows)
    device = rows[0]["info"].get("device", "unknown") if rows else "unknown"
    gpu = "device ceilings" in groups
    ceil = ceilings(groups)
    date = datetime.date.today().isoformat()
    os.makedirs(args.out, exist_ok=True)
    stem = unused_stem(args.out, re.sub(r"[^A-Za-z0-9.-]+", "-", device).strip("-")[:60] + f"-{date}")
    md = [f"# fastgan benchmarks: {device}", "",
          f"{date}; torch {data.get('machine_info', {}).get('python_implementation', '')} "
          f"{_torch_version()}; medians after warm-up, variants side by side in one process"
          + (f"; each time the median of {runs_of(rows)} runs of the suite." if runs_of(rows) > 1 else "."), ""]
    if ceil:
        md.append("Measured ceilings: " + ", ".join(
            f"copy {v / 1e12:.2f} TB/s" if k == "bandwidth" else f"{k} {v / 1e12:.0f} TFLOP/s" for k, v in ceil.items()))
        md.append("")
    md += ["## Training step", ""]
    floors = {}
    for name, variants in sorted(groups.items()):
        if name.startswith("step "):
            lines, floor = step_table(name, variants, ceil)
            floors[name] = floor
            md += lines + [""]
    host_lines, host_verdicts = host_table(groups)
    if host_lines:
        md += ["## Host overhead", "", "Tiny tensors (batch 2, 4 channels, 2x2; DCGAN-32 at width 8 for the step), one "
               "thread, oneDNN off, so that what remains is the host's time per call: Python, dispatcher, autograd. "
               "Lower is better. The times are each variant's own medians; fastgan / stock is the median ratio of "
               "rounds in which the two ran alternately, which the machine's drift over seconds hardly biases.", ""] + host_lines + [""]
    md += ["## Per op", "", "Speed-up is stock / fastgan from rounds in which the two ran alternately (the median "
           "of their ratios); the two time columns are each variant's own medians, which this machine's drift "
           "can move apart, so they need not agree with it.", ""] + op_table(groups, ceil)
    md += ["", "## Targets", ""] + targets(groups, gpu, floors)
    md += host_verdicts
    text = "\n".join(md) + "\n"
    with open(os.path.join(args.out, stem + ".md"), "w") as f:
        f.write(text)
    saved = os.path.join(args.out, stem + ".json")
    if len(args.json) > 1:
        with open(saved, "w") as f:
            json.dump(data, f)
    elif os.path.abspath(args.json[0]) != os.path.abspath(saved):
        shutil.copyfile(args.json[0], saved)
    chart(groups, os.path.join(args.out, stem + ".png"))
    print(text)
    print(f"wrote {os.path.join(args.out, stem)}.{{md,json,png}}")


def unused_stem(folder, stem):
    """stem, or stem-2, stem-3, ...: the first whose .md, .json and .png are all new in folder."""
    candidate, n = stem, 1
    while any(os.path.exists(os.path.join(folder, candidate + ext)) for ext in (".md", ".json", ".png")):
        n += 1
        candidate = f"{stem}-{n}"
    return candidate


def _torch_version():
    try:
        import torch
        return torch.__version__
    except ImportError:
        return ""


if __name__ == "__main__":
    main()
