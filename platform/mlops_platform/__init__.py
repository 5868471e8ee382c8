"""The platform's own staging containers: they put a workload's data and model where the
SageMaker "bring your own container" contract says they are, take the model back, decide whether
it is promoted, and record how its rollout or its failed task ended.

Pure standard library, so the image stays small: `python -m mlops_platform <command>`, every
input from the environment (docs/workload-contract.md, "Staging: the platform's containers in
your task"). One module per command; `commands.py` dispatches.
"""
