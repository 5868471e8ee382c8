"""stage-serving: the served run's model into /opt/ml/model before the workload's server starts.

AWS: https://docs.aws.amazon.com/sagemaker/latest/dg/your-algorithms-inference-code.html
"""

from __future__ import annotations

import os

from mlops_contract import MODELS, RECORDS

from .files import chown_tree, clear, copy_tree, read_current
from .inputs import Refused, ml_root, store_dir, workload_uid


# ------------------------------------------------------------------------------ stage-serving
def stage_serving() -> str:
    store = store_dir()
    uid = workload_uid()
    models = store / MODELS
    current = read_current(models) if models.is_dir() else None
    if current is None:
        raise Refused("no promoted model yet: run the pipeline first (models/CURRENT is absent)")
    target = ml_root() / "model"
    clear(target)
    files = copy_tree(
        models / current,
        target,
        f"models/{current}",
        allowed=store.resolve(),
        skip=lambda rel: rel.as_posix() in RECORDS,
    )
    if not files:
        raise Refused(f"models/{current}/ (models/CURRENT) holds no model files")
    os.chmod(target, 0o755)
    chown_tree(target, uid, uid)
    return f"staged model of run {current}: {len(files)} file(s) into {target} for uid {uid}"
