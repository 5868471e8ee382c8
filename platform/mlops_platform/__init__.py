"""The platform's own staging containers: they put a workload's data and model where the
SageMaker "bring your own container" contract says they are, and take the model back.

Pure standard library, so the image stays small: `python -m mlops_platform <command>`, every
input from the environment (docs/workload-contract.md, "Platform containers").
"""
