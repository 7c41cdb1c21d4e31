"""Imports of third-party modules that print noise at import time, made quiet in our processes.

ESPnet imports ``g2p_en``, which calls ``nltk.download`` (network; offline, a dozen error lines
on stderr) when NLTK's tagger and cmudict are not installed; no recipe here uses g2p. ESPnet's
attention module prints "Failed to import Flash Attention" without flash_attn, which a CPU or
plain-PyTorch install never has. ``install()`` (run by ``import espnet_pinch``) hooks the import
of exactly these modules; nothing else is touched and nothing is imported early.
"""
from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import io
import sys

FLASH = "Failed to import Flash Attention"


@contextlib.contextmanager
def _no_nltk_download():
    import nltk

    download = nltk.download
    nltk.download = lambda *args, **kwargs: False  # g2p_en then loads lazily and fails only if used
    try:
        yield
    finally:
        nltk.download = download


@contextlib.contextmanager
def _no_flash_line():
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        yield
    sys.stdout.writelines(line for line in out.getvalue().splitlines(True) if not line.startswith(FLASH))


QUIET = {"g2p_en.g2p": _no_nltk_download,
         "espnet.nets.pytorch_backend.transformer.attention": _no_flash_line}


class _QuietLoader(importlib.abc.Loader):
    def __init__(self, loader: importlib.abc.Loader, quiet) -> None:
        self.loader, self.quiet = loader, quiet

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        with self.quiet():
            self.loader.exec_module(module)


class _QuietFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name not in QUIET:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path, target)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader, QUIET[name])
        return spec


def install() -> None:
    if not any(isinstance(f, _QuietFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietFinder())
