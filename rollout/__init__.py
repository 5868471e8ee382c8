"""The code of the rollout's two AWS Lambda functions (docs/rollout.md).

- `deploy.py` (handler `deploy.handler`): rolls the inference service to a new task definition
  revision that serves one run, reports the ECS service deployment's status, and stops it with
  a rollback; the state machine drives it.
- `sample_check.py` (handler `sample_check.handler`): the service's ECS deployment lifecycle
  hook at `POST_TEST_TRAFFIC_SHIFT`; sends the workload's sample requests to the candidate
  through the load balancer's test listener rule.

Each module is one function's whole archive: it imports nothing from this repository (not even
this package), only the Lambda runtime's standard library and, for `deploy.py`, its boto3.
"""
