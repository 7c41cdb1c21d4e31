"""Our processes import ESPnet without NLTK download errors or the Flash Attention line."""
import os
import subprocess
import sys

from ..conftest import ROOT


def test_espnet_imports_print_nothing():
    code = ("import espnet_pinch, g2p_en, espnet.nets.pytorch_backend.transformer.attention; "
            "print('imported')")
    env = {k: v for k, v in os.environ.items() if k != "NLTK_DATA"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                       env={**env, "PYTHONPATH": str(ROOT)}, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "imported\n"
    assert "nltk" not in r.stderr.lower() and "Flash Attention" not in r.stderr, r.stderr
