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
                         "median": b["stats"]["median"] / info.get("inner", 1),
                         "iqr": b["stats"].get("iqr", 0.0) / info.get("inner", 1),
                         "rounds": b["stats"].get("rounds", 0), "info": info})
        if merged is None:
            merged = data
        else:
            merged["benchmarks"] += data["benchmarks"]
    return merged, rows


def by_group(rows):
    """groups[group][variant]: the first run's row, its median, spread and paired ratio (with its
    quartiles) replaced by their medians over runs."""
    values = defaultdict(lambda: defaultdict(list))
    groups = defaultdict(dict)
    for r in rows:
        groups[r["group"]].setdefault(r["variant"], dict(r))
        found = values[r["group"], r["variant"]]
        found["median"].append(r["median"])
        found["iqr"].append(r["iqr"])
        found["rounds"].append(r["rounds"])
        for key in PAIRED_KEYS:
            if key in r["info"]:
                found[key].append(r["info"][key])
    for (group, variant), found in values.items():
        row = groups[group][variant]
        row["runs"] = len(found["median"])
        row["run_spread"] = max(found["median"]) / min(found["median"]) - 1
        if found.get("paired_ratio"):
            row["paired_min"], row["paired_max"] = min(found["paired_ratio"]), max(found["paired_ratio"])
        for key, vs in found.items():
            row[key] = statistics.median(vs)
    return groups


def runs_of(rows):
    """How many runs measured each benchmark, at most: merged runs of different selections (the
    GPU check's steps, ops, ... runs) measure each benchmark once."""
    runs = defaultdict(set)
    for r in rows:
        runs[r["group"], r["variant"]].add(r["info"]["run"])
    return max((len(v) for v in runs.values()), default=0)


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


def step_ratio(variants, variant):
    """Each step variant's speed over stock eager, one method per row for the table and the chart."""
    base, row = baseline_of(variants), variants[variant]
    if base is None or row is base:  # a run cut short can leave a group without stock eager
        return None
    if variant in ("fastgan-eager", "fastgan") and "paired_ratio" in row:  # alternating rounds, as the targets use
        return Ratio(base, row)
    return Ratio(base, {k: v for k, v in row.items() if k not in PAIRED_KEYS})


def step_table(name, variants, ceil, gpu):
    base = baseline_of(variants)
    floor = None
    if base and "flops" in base["info"] and ceil:
        rate = ceil.get("matmul-bf16" if "bf16" in name else "matmul-tf32")
        if rate and ceil.get("bandwidth"):
            floor = max(base["info"]["flops"] / rate, base["info"]["min_bytes"] / ceil["bandwidth"])
    # Peak memory is the CUDA allocator's; on the CPU the resident-set increase under malloc's
    # reuse says little, and the roofline needs a GPU's measured ceilings.
    header = (["variant", "median ms", "images/s", "vs stock eager"] + ["peak memory MiB"] * gpu
              + ["roofline"] * bool(floor))
    lines = [f"### {name}", "", "| " + " | ".join(header) + " |", "| --- |" + " ---: |" * (len(header) - 1)]
    for v, r in sorted(variants.items(), key=lambda kv: kv[1]["median"]):
        ratio = step_ratio(variants, v) if base else None
        cells = [v, f"{r['median'] * 1e3:.2f}", f"{r['info'].get('batch', 0) / r['median']:.0f}",
                 "1.00x" if base and ratio is None else str(ratio) if ratio else "n/a"]
        if gpu:
            cells.append(f"{r['info'].get('peak_mib', 0):.1f}")
        if floor:
            cells.append(f"{floor / r['median']:.0%} of floor")
        lines.append("| " + " | ".join(cells) + " |")
    paired = [v for v in ("fastgan-eager", "fastgan") if "paired_ratio" in variants.get(v, {})]
    if base and paired:
        lines.append(f"\n{paired[0]}'s ratio comes from rounds in which it and stock eager ran alternately; "
                     "the others divide the medians. A ratio the run's spread cannot support is marked noise.")
    if floor:
        lines.append(f"\nFloor: {floor * 1e3:.3f} ms = max(FLOPs {base['info']['flops'] / 1e9:.1f} G over the measured "
                     f"matmul rate, conv bytes {base['info']['min_bytes'] / 1e6:.0f} MB over the measured copy "
                     "bandwidth).")
    return lines, floor


PAIRED_KEYS = ("paired_ratio", "paired_q1", "paired_q3")


MIN_ROUNDS = 3  # fewer timed rounds (FASTGAN_BENCH_QUICK=1 has one) give no spread to judge by


class Ratio:
    """stock time / fastgan time (higher: fastgan faster), and whether the run supports it.
    From the alternating rounds where the benchmark recorded them (conftest.paired_ratio), else
    from the two medians. It is noise when the rounds' quartiles straddle 1 (the run cannot
    tell a win from a loss), or when the two medians, timed in separate windows, put the ratio
    outside those quartiles by more than the medians' own spread: the quartiles of their rounds
    and, over several runs of the suite, how far the runs' medians lie apart (the drift)."""

    def __init__(self, stock, fastgan):
        self.by_medians = stock["median"] / fastgan["median"]
        spread = 1 + sum(row.get("iqr", 0) / row["median"] + row.get("run_spread", 0) for row in (stock, fastgan))
        paired = fastgan.get("paired_ratio")
        self.source = "rounds" if not paired or "paired_q1" in fastgan else "runs"
        if paired and "paired_q1" in fastgan:
            self.value = 1 / paired
            self.low, self.high = 1 / fastgan["paired_q3"], 1 / fastgan["paired_q1"]
        elif paired:  # recorded before the quartiles were: the runs' paired ratios, if several
            self.value = 1 / paired
            self.low, self.high = 1 / fastgan.get("paired_max", paired), 1 / fastgan.get("paired_min", paired)
        else:
            self.value, self.low, self.high = self.by_medians, self.by_medians / spread, self.by_medians * spread
        self.rounds = int(min(stock.get("rounds", 0), fastgan.get("rounds", 0)))  # a median over runs
        self.noise = ("rounds" if self.rounds < MIN_ROUNDS else
                      "straddle" if self.low <= 1 <= self.high else
                      "medians" if paired and not self.low / spread <= self.by_medians <= self.high * spread else "")

    @property
    def clean(self):
        return not self.noise

    def why(self, inverse=False):
        """The reason it is noise, in the direction shown: stock/fastgan, or fastgan/stock."""
        shown = (lambda x: f"{1 / x:.2f}") if inverse else (lambda x: f"{x:.2f}x")
        if self.noise == "rounds":
            return f"noise: {self.rounds} round(s) give no spread"
        if self.noise == "straddle":
            low, high = sorted((shown(self.low), shown(self.high)))
            return f"noise: the {self.source} span {low}-{high}"
        return f"noise: the medians say {shown(self.by_medians)}" if self.noise else ""

    def text(self, inverse=False):
        number = f"{1 / self.value:.2f}" if inverse else f"{self.value:.2f}x"
        return number + (f" ({self.why(inverse)})" if self.noise else "")

    __str__ = text


def speedup(v):
    return Ratio(v["stock"], v["fastgan"])


def eager_speedup(v):
    """stock eager / fastgan eager for a step group, as speedup() for an op."""
    return Ratio(v["stock-eager"], v["fastgan-eager"])


def compile_speedup(v):
    """torch.compile of the stock path / fastgan: the stock-compile row holds the rounds in which
    it alternated with fastgan."""
    paired = {k: v["stock-compile"][k] for k in PAIRED_KEYS + ("paired_min", "paired_max") if k in v["stock-compile"]}
    return Ratio(v["stock-compile"], {**v["fastgan"], **paired}) if paired else None


def op_table(groups, ceil, gpu):
    with_compile = any(name.startswith("op ") and "stock-compile" in v for name, v in groups.items())
    header = (["op", "stock ms", "fastgan ms", "speed-up"] + ["vs stock torch.compile"] * with_compile
              + ["fastgan peak MiB"] * gpu)
    with_bandwidth = bool(ceil.get("bandwidth"))
    header += ["fastgan bandwidth"] * with_bandwidth
    lines = ["| " + " | ".join(header) + " |", "| --- |" + " ---: |" * (len(header) - 1)]
    for name, v in sorted(groups.items()):
        if not name.startswith("op ") or "stock" not in v or "fastgan" not in v:
            continue
        s, f = v["stock"], v["fastgan"]
        cells = [name[3:], f"{s['median'] * 1e3:.3f}", f"{f['median'] * 1e3:.3f}", str(speedup(v))]
        if with_compile:
            cells.append(str(compile_speedup(v) or "") if "stock-compile" in v else "")
        if gpu:
            cells.append(f"{f['info'].get('peak_mib', 0):.1f}")
        if with_bandwidth:
            cells.append(f"{f['info']['min_bytes'] / f['median'] / ceil['bandwidth']:.0%} of copy"
                         if "min_bytes" in f["info"] else "")
        lines.append("| " + " | ".join(cells) + " |")
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
        ratio = speedup(v)
        lines.append(f"| {case} | {s * 1e6:.1f} | {f * 1e6:.1f} | {ratio.text(inverse=True)} |")
        verdicts.append(check_at_most(f"host time, {case}", 1 / ratio.value, HOST_TARGET, ratio.why(inverse=True)))
        ops_s, ops_f = v["stock"]["info"].get("ops_per_step"), v["fastgan"]["info"].get("ops_per_step")
        if ops_s and ops_f:
            lines.append(f"| ops dispatched per step | {ops_s} | {ops_f} | {ops_f / ops_s:.2f} |")
            verdicts.append(check_at_most("ops dispatched per training step", ops_f / ops_s, OPS_TARGET))
    return lines, verdicts


UNCLEAN = "not measured cleanly ({}): neither met nor missed; measure again on a quieter machine or with more runs"


def check_at_most(label, value, target, noise=""):
    verdict = (UNCLEAN.format(noise) if noise else
               "met" if value <= target else f"MISSED by {(value - target) / target:.0%}")
    return f"- {label}: {value:.2f} of stock (target <= {target}) — {verdict}"


def check(label, ratio, target):
    """ratio: a Ratio, or a plain number measured without a stock twin."""
    value, noise = (ratio.value, ratio.why()) if isinstance(ratio, Ratio) else (ratio, "")
    verdict = (UNCLEAN.format(noise) if noise else
               "met" if value >= target else f"MISSED by {(target - value) / target:.0%}")
    return f"- {label}: {value:.2f}x (target {target}x) — {verdict}"


RESTART_TARGET_S, PEAK_TARGET_MIB = 5.0, 1024.0
CPU_BF16_STEP_TARGET = 1.1  # fastgan bf16 autocast step vs stock's, on a CPU with native bf16


def data_table(groups):
    """The data benchmark (benchmarks/test_data.py): time to the first batch and peak memory,
    on the first run over an image folder (decode into the cache) and on a restart (map it)."""
    row = groups.get("data first step", {}).get("fastgan")
    if not row:
        return []
    i = row["info"]
    return ["", "## Data: time to the first batch", "",
            f"{i['images']} generated 64x64 RGB PNGs; each run a fresh process; peak RSS above a process that only "
            "imports torch and fastgan.", "",
            "| run | seconds | peak RSS MiB |", "| --- | ---: | ---: |",
            f"| first (decode into the cache, {i['cache_mib']:.0f} MiB) | {i['first_s']:.2f} | "
            f"{i['first_peak_mib']:.0f} |",
            f"| restart (map the cache) | {i['restart_s']:.2f} | {i['restart_peak_mib']:.0f} |", "",
            f"Targets: restart under {RESTART_TARGET_S:.0f} s — "
            + ("met" if i["restart_s"] < RESTART_TARGET_S else "MISSED")
            + f"; peak RSS under {PEAK_TARGET_MIB:.0f} MiB on both runs — "
            + ("met" if max(i["first_peak_mib"], i["restart_peak_mib"]) < PEAK_TARGET_MIB else "MISSED") + "."]


def targets(groups, gpu, floors):
    out = []
    ops = {n: v for n, v in groups.items() if n.startswith("op ") and "stock" in v and "fastgan" in v}
    speed = {n: speedup(v) for n, v in ops.items()}
    steps = {n: v for n, v in groups.items() if n.startswith("step ") and baseline_of(v)}
    if not gpu:
        for n, v in steps.items():
            if "fastgan-eager" in v and "stock-eager" in v:
                target = CPU_BF16_STEP_TARGET if "bf16" in n else 1.0
                out.append(check(f"fastgan eager step vs stock eager ({n})", eager_speedup(v), target))
        bn = {n: s for n, s in speed.items() if n.startswith("op bn+") and "fwd+bwd" in n}
        if bn:
            worst = min(bn, key=lambda n: bn[n].value)
            out.append(check(f"fused BN+act fwd+bwd vs stock pair, worst layer ({worst[3:]})", bn[worst], 1.3))
            ordered = sorted(bn.values(), key=lambda r: r.value)
            out.append(check("fused BN+act fwd+bwd vs stock pair, median layer", ordered[(len(ordered) - 1) // 2], 1.3))
        return out
    for n, v in steps.items():
        if "fastgan-eager" in v and "stock-eager" in v:
            out.append(check(f"fastgan eager vs stock eager ({n})", eager_speedup(v), 1.3))
        compiled = [r["median"] for k, r in v.items() if k.startswith("stock-compile")]
        if "fastgan-graph" in v and compiled:
            out.append(check(f"fastgan graph vs best torch.compile ({n})",
                             min(compiled) / v["fastgan-graph"]["median"], 1.15))
        if "bf16" in n and "fastgan-graph" in v and floors.get(n):
            ratio = v["fastgan-graph"]["median"] / floors[n]
            out.append(f"- bf16 channels_last fastgan graph: {ratio:.2f}x the roofline floor (target within 2.5x) — "
                       + ("met" if ratio <= 2.5 else f"MISSED by {ratio / 2.5 - 1:.0%}"))
    for label, pattern, target in [("BN+act fwd+bwd fp32 NCHW", r"op bn\+.* fwd\+bwd fp32 nchw", 1.5),
                                   ("BN+act fwd+bwd bf16 NHWC", r"op bn\+.* fwd\+bwd bf16 nhwc", 1.3),
                                   ("BCE fwd+bwd", r"op bce fwd\+bwd", 2.0)]:
        vals = [s for n, s in speed.items() if re.match(pattern, n)]
        if vals:
            out.append(check(f"{label}, worst shape", min(vals, key=lambda r: r.value), target))
    return out


def chart(groups, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no PNG (pip install matplotlib)")
        return False
    steps = {n: v for n, v in groups.items() if n.startswith("step ") and baseline_of(v)}
    ops = {n: v for n, v in groups.items() if n.startswith("op ") and "stock" in v and "fastgan" in v}
    panels = len(steps) + (1 if ops else 0)
    if panels == 0:
        return False
    rows = max([len(v) for v in steps.values()] + [len(ops) if ops else 0])
    fig, axes = plt.subplots(panels, 1, figsize=(10, 2.2 + 0.35 * rows * panels / max(panels, 1)), squeeze=False)
    i = 0
    for name, v in steps.items():
        items = sorted(v.items(), key=lambda kv: kv[1]["median"])
        ratios = [step_ratio(v, k) for k, _ in items]  # the table's ratios, noise hatched
        ax = axes[i][0]
        bars = ax.barh([k for k, _ in items], [r.value if r else 1.0 for r in ratios],
                       color=["tab:orange" if k.startswith("fastgan") else "tab:gray" for k, _ in items])
        for bar, r in zip(bars, ratios):
            if r and not r.clean:
                bar.set_hatch("//")
        ax.axvline(1.0, color="k", lw=0.8)
        ax.set_title(f"{name}: speed-up over stock eager (hatched: noise)")
        i += 1
    if ops:
        ax = axes[i][0]
        names = sorted(ops)
        ratios = [speedup(ops[n]) for n in names]
        bars = ax.barh([n[3:] for n in names], [r.value for r in ratios], color="tab:orange")
        for bar, r in zip(bars, ratios):
            if not r.clean:
                bar.set_hatch("//")
        ax.axvline(1.0, color="k", lw=0.8)
        ax.tick_params(axis="y", labelsize=6)
        ax.set_title("per op: fastgan speed-up over the stock nn.* sequence (hatched: noise)")
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
    # Recorded with each benchmark since 2026-12-04; older GPU runs are known by their ceilings.
    gpu = any(r["info"].get("gpu") for r in rows) or "device ceilings" in groups
    ceil = ceilings(groups)
    # The run's own date and torch, not this machine's: a report is often made elsewhere.
    date = str(data.get("datetime", ""))[:10] or datetime.date.today().isoformat()
    torch_version = rows[0]["info"].get("torch", "not recorded") if rows else "not recorded"
    python = data.get("machine_info", {}).get("python_version", "")
    os.makedirs(args.out, exist_ok=True)
    stem = unused_stem(args.out, re.sub(r"[^A-Za-z0-9.-]+", "-", device).strip("-")[:60] + f"-{date}")
    md = [f"# fastgan benchmarks: {device}", "",
          f"{date}; torch {torch_version}" + (f", Python {python}" if python else "")
          + "; medians after warm-up, variants side by side in one process"
          + (f"; each time the median of {runs_of(rows)} runs of the suite." if runs_of(rows) > 1 else "."), ""]
    if ceil:
        md.append("Measured ceilings: " + ", ".join(
            f"copy {v / 1e12:.2f} TB/s" if k == "bandwidth" else f"{k} {v / 1e12:.0f} TFLOP/s"
            for k, v in ceil.items()))
        md.append("")
    md += ["## Training step", ""]
    floors = {}
    for name, variants in sorted(groups.items()):
        if name.startswith("step "):
            lines, floor = step_table(name, variants, ceil, gpu)
            floors[name] = floor
            md += lines + [""]
    host_lines, host_verdicts = host_table(groups)
    if host_lines:
        md += ["## Host overhead", "", "Tiny tensors (batch 2, 4 channels, 2x2; DCGAN-32 at width 8 for the step), one "
               "thread, oneDNN off, so that what remains is the host's time per call: Python, dispatcher, autograd. "
               "Lower is better. The times are each variant's own medians; fastgan / stock is the median ratio of "
               "rounds in which the two ran alternately, which the machine's drift over seconds hardly biases.",
               ""] + host_lines + [""]
    md += ["## Per op", "", "Speed-up is stock / fastgan from rounds in which the two ran alternately (the median "
           "of their ratios); the two time columns are each variant's own medians, which this machine's drift "
           "can move apart, so they need not agree with it. A speed-up that the rounds' quartiles cannot tell from "
           "1.00x, or that the medians contradict by more than their own spread, is marked noise, and the Targets "
           "count neither.", ""] + op_table(groups, ceil, gpu)
    md += data_table(groups)
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


if __name__ == "__main__":
    main()
