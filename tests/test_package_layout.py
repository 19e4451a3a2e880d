"""The library (fastgan, fastgan.nn, .functional, .fuse, .models, .graph) never imports the
training application (fastgan.app): a user who only drops the layers into a script loads no
trainer, data loader or image code."""
import subprocess
import sys


def test_the_library_does_not_import_the_application():
    code = ("import sys, fastgan, fastgan.nn, fastgan.functional, fastgan.fuse, fastgan.models, fastgan.graph, "
            "fastgan.info; print(sorted(m for m in sys.modules if m.startswith('fastgan.app')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_python_dash_m_runs_the_application():
    out = subprocess.run([sys.executable, "-m", "fastgan", "--help"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "train" in out.stdout and "sample" in out.stdout
