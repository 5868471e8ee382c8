"""Which device XGBoost runs on: a GPU when one is visible and this XGBoost build can use it.

Decided at run time, not build time: the gpu image runs on hosts with and without a GPU (an EC2
GPU instance, a laptop, the container tests), and the cpu image has no CUDA build at all.
"""

from __future__ import annotations

import logging
import shutil
import subprocess

import xgboost as xgb

log = logging.getLogger(__name__)

CUDA = "cuda"
CPU = "cpu"


def gpu_visible() -> bool:
    """True when `nvidia-smi -L` lists a GPU (the NVIDIA container runtime mounts it into a task
    that reserves one)."""
    if shutil.which("nvidia-smi") is None:
        return False
    try:
        listed = subprocess.run(
            ["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return "GPU" in listed.stdout


def cuda_build() -> bool:
    """True for the CUDA-enabled XGBoost (the gpu image), False for xgboost-cpu."""
    return bool(xgb.build_info().get("USE_CUDA"))


def serving_device() -> str:
    """The api's prediction device; says once, in one log line, why it is the CPU."""
    if not gpu_visible():
        log.info("no GPU visible; predicting on CPU")
        return CPU
    if not cuda_build():
        log.warning("a GPU is visible but this XGBoost build has no CUDA; predicting on CPU")
        return CPU
    return CUDA
