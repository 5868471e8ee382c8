"""mlops: load the stack settings, wire the components, export plain keys. Nothing else."""

import pulumi

from components.settings import stack as stack_settings
from components.wiring import wire

stack = wire(stack_settings.load())

pulumi.export("vpc_id", stack.network.vpc_id)
pulumi.export("task_subnet_ids", stack.network.task_subnet_ids)
pulumi.export("file_system_id", stack.store.file_system_id)
if stack.images is not None:
    pulumi.export("repository_url", stack.images.repository_url)
pulumi.export("image_ref", stack.image_ref("cpu"))
pulumi.export("cluster_name", stack.cluster.cluster_name)
if stack.inference is not None:
    pulumi.export("url", stack.inference.url)
    pulumi.export("service_name", stack.inference.service_name)
    pulumi.export("inference_log_groups", stack.inference.log_group_names)
pulumi.export("state_machine_arn", stack.training.state_machine_arn)
if stack.artifacts is not None:
    pulumi.export("artifacts_bucket", stack.artifacts.bucket_name)
    pulumi.export("artifacts_uri", stack.artifacts.uri)
for step, arn in stack.training.task_definition_arns.items():
    pulumi.export(f"{step}_task_definition_arn", arn)
if stack.monitoring is not None:
    pulumi.export("ingest_task_definition_arn", stack.monitoring.task_definition_arn)
if stack.model_monitor is not None:
    pulumi.export("model_monitor_task_definition_arn", stack.model_monitor.task_definition_arn)
if stack.ci is not None:
    pulumi.export("ci_preview_role_arn", stack.ci.preview_role_arn)
    pulumi.export("ci_deploy_role_arn", stack.ci.deploy_role_arn)
