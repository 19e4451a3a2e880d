"""The run folder (--out): what `fastgan train` writes there, and how it treats a folder that
already holds a run. Nothing else in the folder is touched."""
import json
import os
from typing import List, Optional

# The files a run writes into its folder (and samples/step_*.png).
RUN_FILES = ("checkpoint.pt", "metrics.jsonl", "config.json", "real.png", "loss.png", "fid.png")
METRICS = "metrics.jsonl"


def prepare(out: str, resume: bool, overwrite: bool) -> Optional[str]:
    """Makes the run folder, or says why not (returned, so that every rank can raise it). A
    folder holding another run is only written into with --resume, or cleared first with
    --overwrite: two runs' metrics and samples must never mix."""
    if os.path.exists(out) and not os.path.isdir(out):
        return f"--out {out!r} is a file; the run folder must be a folder (it is created if missing)"
    held = [f for f in ("checkpoint.pt", METRICS, "config.json") if os.path.exists(os.path.join(out, f))]
    if held and not resume:
        if not overwrite:
            return (f"--out {out!r} already holds a run ({', '.join(held)}); pass --resume to continue it, "
                    "--overwrite to delete it and start over, or another --out")
        for name in RUN_FILES:
            path = os.path.join(out, name)
            if os.path.isfile(path):
                os.unlink(path)
        samples = os.path.join(out, "samples")
        if os.path.isdir(samples):
            for name in os.listdir(samples):
                if name.startswith("step_") and name.endswith(".png"):
                    os.unlink(os.path.join(samples, name))
    try:
        os.makedirs(os.path.join(out, "samples"), exist_ok=True)
    except OSError as exc:
        return f"cannot create the run folder {out!r}: {exc.strerror or exc}"
    return None


def write_config(out: str, options: dict) -> None:
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(options, f, indent=2)


def append_metrics(out: str, row: dict) -> None:
    with open(os.path.join(out, METRICS), "a") as f:
        f.write(json.dumps(row) + "\n")


def read_metrics(out: str) -> List[dict]:
    path = os.path.join(out, METRICS)
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def keep_metrics_up_to(out: str, step: int) -> List[dict]:
    """A resumed run drops the rows written after its checkpoint; returns the rows kept."""
    rows = read_metrics(out)
    kept = [r for r in rows if r["step"] <= step]
    if len(kept) < len(rows):
        with open(os.path.join(out, METRICS), "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in kept)
    return kept
