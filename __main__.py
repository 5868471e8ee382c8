"""mlops: load the stack settings, build the components, export plain keys. Nothing else."""

import pulumi

from components.alarm_topic import AlarmTopic, AlarmTopicArgs
from components.ci_trust import CiTrust, CiTrustArgs
from components.cluster import Cluster, ClusterArgs
from components.image_repo import ImageRepo, ImageRepoArgs
from components.inference_service import InferenceService, InferenceServiceArgs
from components.load_balancer import LoadBalancer, LoadBalancerArgs
from components.monitoring import Monitoring, MonitoringArgs
from components.network import Network, NetworkArgs
from components.permissions_boundary import PermissionsBoundary, PermissionsBoundaryArgs
from components.settings import stack as stack_settings
from components.shared_store import SharedStore, SharedStoreArgs
from components.training_task import TrainingTask, TrainingTaskArgs

settings = stack_settings.load()

# First: every role declared after this carries the stack's permissions boundary.
boundary = PermissionsBoundary(
    "boundary",
    PermissionsBoundaryArgs(
        project=pulumi.get_project(), stack=settings.stack, region=settings.region
    ),
)
boundary.attach_to_every_role()

network = Network("network", NetworkArgs(settings=settings.network))
images = ImageRepo(
    "image",
    ImageRepoArgs(
        stack=settings.stack,
        image=settings.image,
        flavours=settings.image_flavours,
        retain_on_destroy=settings.protection.retain_on_destroy,
    ),
)
store = SharedStore(
    "store",
    SharedStoreArgs(
        settings=settings.store,
        vpc_id=network.vpc_id,
        subnet_ids=network.task_subnet_ids,
        subnet_count=settings.network.azs,
        retain_on_destroy=settings.protection.retain_on_destroy,
    ),
)
cluster = Cluster(
    "cluster",
    ClusterArgs(
        network=network,
        gpu_instance_security_group_ids=[store.client_security_group_id],
        container_insights=settings.observability.container_insights,
        gpu_training=settings.training if settings.training_gpu else None,
        gpu_serving=settings.inference.gpu if settings.serving_gpu else None,
    ),
)
alarms = AlarmTopic(
    "inference-alarms",
    AlarmTopicArgs(
        customer_managed_key=settings.observability.alarm_topic_cmk,
        email=settings.observability.alarm_email,
    ),
)
edge = LoadBalancer(
    "inference",
    LoadBalancerArgs(
        inference=settings.inference,
        network=network,
        https=settings.https,
        region=settings.region,
        vpc_cidr=settings.network.cidr,
        log_retention_days=settings.observability.log_retention_days,
        retain_on_destroy=settings.protection.retain_on_destroy,
    ),
)
inference = InferenceService(
    "inference",
    InferenceServiceArgs(
        stack=settings.stack,
        region=settings.region,
        inference=settings.inference,
        gpu=settings.serving_gpu,
        network=network,
        cluster=cluster,
        store=store,
        load_balancer=edge,
        alarm_topic=alarms,
        image_ref=images.image_ref("gpu" if settings.serving_gpu else "cpu"),
        repository_arn=images.repository_arn,
        log_retention_days=settings.observability.log_retention_days,
        container_insights=settings.observability.container_insights,
        cloudwatch_dashboard=settings.observability.cloudwatch_dashboard,
        rollback_on_alarm=settings.protection.rollback_on_alarm,
    ),
)
training = TrainingTask(
    "training",
    TrainingTaskArgs(
        stack=settings.stack,
        region=settings.region,
        training=settings.training,
        gpu=settings.training_gpu,
        log_retention_days=settings.observability.log_retention_days,
        network=network,
        cluster=cluster,
        store=store,
        image_repo=images,
        alarm_topic=alarms,
    ),
)
monitoring = Monitoring(
    "monitoring",
    MonitoringArgs(
        stack=settings.stack,
        region=settings.region,
        monitoring=settings.monitoring,
        log_retention_days=settings.observability.log_retention_days,
        network=network,
        cluster=cluster,
        store=store,
        image_repo=images,
    ),
)
# Once, after every store client exists: the file system policy names their task roles.
store.authorize_clients([inference.task_role_arn, training.task_role_arn, monitoring.task_role_arn])
# The image is pushed only once the push trigger exists: a new stack's first push starts its
# first training run.
images.release(after=training.image_triggers)

pulumi.export("vpc_id", network.vpc_id)
pulumi.export("task_subnet_ids", network.task_subnet_ids)
pulumi.export("file_system_id", store.file_system_id)
pulumi.export("repository_url", images.repository_url)
pulumi.export("image_ref", images.image_ref("cpu"))
pulumi.export("cluster_name", cluster.cluster_name)
pulumi.export("url", inference.url)
pulumi.export("service_name", inference.service_name)
pulumi.export("inference_log_groups", inference.log_group_names)
pulumi.export("state_machine_arn", training.state_machine_arn)
pulumi.export("validate_task_definition_arn", training.task_definition_arns["validate"])
pulumi.export("train_task_definition_arn", training.task_definition_arns["train"])
pulumi.export("gate_task_definition_arn", training.task_definition_arns["gate"])
pulumi.export("ingest_task_definition_arn", monitoring.task_definition_arn)
if settings.ci.repository:
    ci = CiTrust(
        "ci",
        CiTrustArgs(
            ci=settings.ci,
            stack=settings.stack,
            region=settings.region,
            repository_arn=images.repository_arn,
            permissions_boundary_arn=boundary.arn,
        ),
    )
    pulumi.export("ci_preview_role_arn", ci.preview_role_arn)
    pulumi.export("ci_deploy_role_arn", ci.deploy_role_arn)
