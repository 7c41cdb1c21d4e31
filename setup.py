"""espnet_pinch: one-pass compression of speech foundation models inside ESPnet."""
from setuptools import find_packages, setup

setup(
    name="espnet_pinch",
    version="0.1.0",
    description="Prune-and-finetune S3PRL speech foundation models for ASR inside ESPnet",
    packages=find_packages(include=["espnet_pinch", "espnet_pinch.*"]),
    python_requires=">=3.10",
    # Exact versions live in tools/requirements.lock (installed by tools/install.sh).
    install_requires=["espnet", "torch", "s3prl", "sentencepiece", "kaldiio", "jiwer", "pyyaml"],
)
