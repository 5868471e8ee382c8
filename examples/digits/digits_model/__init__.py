"""A second reference workload: an XGBoost classifier of scikit-learn's bundled 8x8 digits.

It knows only SageMaker's "bring your own container" contract, nothing of the platform:
  https://docs.aws.amazon.com/sagemaker/latest/dg/your-algorithms-training-algo.html
  https://docs.aws.amazon.com/sagemaker/latest/dg/your-algorithms-inference-code.html
The root of that layout is /opt/ml, or MLOPS_ML_ROOT when set (tests).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

FEATURES = 64  # 8x8 pixels
CLASSES = 10
PIXEL_MAX = 16.0  # load_digits' pixel values are counts 0..16
MODEL_FILE = "model.json"  # XGBoost's own JSON model format (Booster.save_model), no pickle
METRICS_FILE = "metrics.json"


def ml_root() -> Path:
    return Path(os.environ.get("MLOPS_ML_ROOT") or "/opt/ml")


def gpu_visible() -> bool:
    """True when `nvidia-smi -L` lists a GPU (the NVIDIA runtime mounts it into a GPU task)."""
    if shutil.which("nvidia-smi") is None:
        return False
    try:
        listed = subprocess.run(
            ["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return "GPU" in listed.stdout
