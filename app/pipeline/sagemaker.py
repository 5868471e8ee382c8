"""The forecaster under SageMaker's "bring your own container" layout, so the same image runs as a
SageMaker training job and endpoint as well as in the stack's own tasks:
  https://docs.aws.amazon.com/sagemaker/latest/dg/your-algorithms-training-algo.html
  https://docs.aws.amazon.com/sagemaker/latest/dg/your-algorithms-inference-code.html

MLOPS_LAYOUT picks it: `store` (the shared store at STORE_DIR, as always), `sagemaker`, or `auto`
(the default): `sagemaker` only when STORE_DIR is not set and the /opt/ml path the command
reads exists (`train`: /opt/ml/input/data; `serve`: a model file in /opt/ml/model), so a stack's
own tasks, which always set STORE_DIR, never switch. MLOPS_ML_ROOT moves /opt/ml (tests).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import orjson

from app.forecasting.model import METRICS_FILE, MODEL_FILES
from app.store import Store
from mlops_contract import ML_MOUNT, Env, MlLayout, is_run_id

LAYOUTS = ("auto", "store", "sagemaker")


def ml_layout() -> MlLayout:
    """SageMaker's `/opt/ml` (or MLOPS_ML_ROOT), laid out as the contract says."""
    return MlLayout(Path(os.environ.get(Env.ML_ROOT) or ML_MOUNT))


def use_sagemaker(marker: Path) -> bool:
    """Whether this command runs in SageMaker's layout; `marker` is what `auto` looks for."""
    switch = os.environ.get("MLOPS_LAYOUT", "") or "auto"
    if switch not in LAYOUTS:
        print(f"error: MLOPS_LAYOUT={switch!r}: use {', '.join(LAYOUTS)}", file=sys.stderr)
        raise SystemExit(2)
    if switch != "auto":
        return switch == "sagemaker"
    store_set = any(key.upper() == Env.STORE_DIR for key in os.environ)
    return not store_set and marker.exists()


def has_model(model_dir: Path) -> bool:
    return any((model_dir / name).is_file() for name in MODEL_FILES.values())


def serving_store(model_dir: Path) -> Path:
    """A scratch store whose models/CURRENT names a run holding the files of /opt/ml/model, for
    the server's usual load, check and probe. Exits 1 naming the problem when there is no model."""
    if not has_model(model_dir):
        print(
            f"error: no model in {model_dir} (expected one of {', '.join(MODEL_FILES.values())})",
            file=sys.stderr,
        )
        raise SystemExit(1)
    run_id = "sagemaker"
    try:
        metrics = orjson.loads((model_dir / METRICS_FILE).read_bytes())
        if isinstance(metrics, dict) and is_run_id(str(metrics.get("run_id"))):
            run_id = metrics["run_id"]
    except (OSError, orjson.JSONDecodeError):
        pass  # the server's own check names a missing or damaged metrics.json
    root = Path(tempfile.mkdtemp(prefix="mlops-serve-"))
    store = Store(root)
    run_dir = store.run_dir(run_id)
    run_dir.mkdir(parents=True)
    for path in model_dir.iterdir():
        if path.is_file():
            shutil.copyfile(path, run_dir / path.name)
    store.set_current(run_id)
    return root
