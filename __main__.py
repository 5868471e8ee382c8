"""mlops: load the stack settings, build the components, export plain keys. Nothing else."""

import pulumi

from components import settings as stack_settings
from components.ci_trust import CiTrust, CiTrustArgs
from components.cluster import Cluster, ClusterArgs
from components.image_repo import ImageRepo, ImageRepoArgs
from components.inference_service import InferenceService, InferenceServiceArgs
from components.monitoring import Monitoring, MonitoringArgs
from components.network import Network, NetworkArgs
from components.permissions_boundary import PermissionsBoundary, PermissionsBoundaryArgs
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
images = ImageRepo("image", ImageRepoArgs(settings=settings))
store = SharedStore(
    "store",
    SharedStoreArgs(
        settings=settings.store,
        vpc_id=network.vpc_id,
        subnet_ids=network.task_subnet_ids,
        subnet_count=settings.network.azs,
    ),
)
cluster = Cluster(
    "cluster",
    ClusterArgs(
        settings=settings,
        network=network,
        gpu_instance_security_group_ids=[store.client_security_group_id],
    ),
)
inference = InferenceService(
    "inference",
    InferenceServiceArgs(
        settings=settings,
        network=network,
        cluster=cluster,
        store=store,
        image_ref=images.image_ref("gpu" if settings.gpu_serving else "cpu"),
        repository_arn=images.repository_arn,
    ),
)
training = TrainingTask(
    "training",
    TrainingTaskArgs(
        settings=settings,
        network=network,
        cluster=cluster,
        store=store,
        image_repo=images,
        alarm_topic_arn=inference.alarm_topic_arn,
        alarm_topic_key_arn=inference.alarm_topic_key_arn,
    ),
)
monitoring = Monitoring(
    "monitoring",
    MonitoringArgs(
        settings=settings, network=network, cluster=cluster, store=store, image_repo=images
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
            settings=settings,
            repository_arn=images.repository_arn,
            permissions_boundary_arn=boundary.arn,
        ),
    )
    pulumi.export("ci_preview_role_arn", ci.preview_role_arn)
    pulumi.export("ci_deploy_role_arn", ci.deploy_role_arn)
