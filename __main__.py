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
from components.settings.platform import ImageSettings
from components.settings.workload import ROOT, Contract
from components.shared_store import SharedStore, SharedStoreArgs
from components.training_task import Staging, TrainingTask, TrainingTaskArgs

settings = stack_settings.load()
workload = settings.workload
build = workload.image.build
# The contract `platform` mounts the shared store in the workload's own containers.
store_mounted = workload.contract is Contract.PLATFORM

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
        **(
            {
                "context": ROOT / build.context,
                "dockerfile": build.dockerfile,
                "build_args": build.args,
                "gpu_build_args": build.gpu_args,
            }
            if build is not None
            else {"location": workload.image.location}
        ),
    ),
)
# The platform's own image (platform/): with the `sagemaker` contract it stages /opt/ml around the
# workload and collects its model; without a gate step of the workload's it is the gate. Built
# like the workload's image, into its own repository.
staged = workload.contract is Contract.SAGEMAKER
platform_images = None
if staged or "gate" not in workload.steps:
    platform_images = ImageRepo(
        "platform-image",
        ImageRepoArgs(
            stack=settings.stack,
            image=ImageSettings(keep_images=settings.image.keep_images),
            flavours=("cpu",),
            retain_on_destroy=settings.protection.retain_on_destroy,
            context=ROOT / "platform",
            suffix="-platform",
        ),
    )
# The execution roles pull from exactly these: the stack's repository, or the repository
# `workload.image.location` names when it is in ECR (another registry needs no IAM).
pull_from = (
    [images.repository_arn]
    if build is not None
    else [arn for arn in [workload.image.ecr_repository_arn] if arn]
) + ([platform_images.repository_arn] if platform_images is not None else [])
platform_image = platform_images.image_ref("cpu") if platform_images is not None else None
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
inference = None
if workload.serving is not None:
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
            serving=workload.serving,
            sidecars=settings.sidecars,
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
            repository_arns=pull_from,
            log_retention_days=settings.observability.log_retention_days,
            container_insights=settings.observability.container_insights,
            cloudwatch_dashboard=settings.observability.cloudwatch_dashboard,
            rollback_on_alarm=settings.protection.rollback_on_alarm,
            serving=workload.serving,
            sidecars=settings.sidecars,
            security=workload.security,
            store_mounted=store_mounted,
            platform_image=platform_image if staged else None,
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
        train=workload.training,
        steps=workload.steps,
        security=workload.security,
        repository_arns=pull_from,
        store_mounted=store_mounted,
        staging=(
            Staging(
                platform_image=platform_image,
                staged=staged,
                objective=None if "gate" in workload.steps else workload.objective,
                # A served model is staged at task start: a promotion rolls the service.
                rolled_service=(
                    (cluster.cluster_arn, inference.rolled_service_name)
                    if inference is not None and staged
                    else None
                ),
                service_arn=inference.service_arn if inference is not None else "",
            )
            if platform_image is not None
            else None
        ),
    ),
)
monitoring = None
if workload.job is not None:
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
            job=workload.job,
            security=workload.security,
            repository_arns=pull_from,
            store_mounted=store_mounted,
        ),
    )
# Once, after every store client exists: the file system policy names their task roles.
store.authorize_clients(
    [
        *([inference.task_role_arn] if inference is not None else []),
        training.task_role_arn,
        *([monitoring.task_role_arn] if monitoring is not None else []),
    ]
)
# The image is pushed only once the push trigger exists: a new stack's first push starts its
# first training run.
images.release(after=training.image_triggers)
if platform_images is not None:
    platform_images.release()

pulumi.export("vpc_id", network.vpc_id)
pulumi.export("task_subnet_ids", network.task_subnet_ids)
pulumi.export("file_system_id", store.file_system_id)
pulumi.export("repository_url", images.repository_url)
pulumi.export("image_ref", images.image_ref("cpu"))
pulumi.export("cluster_name", cluster.cluster_name)
if inference is not None:
    pulumi.export("url", inference.url)
    pulumi.export("service_name", inference.service_name)
    pulumi.export("inference_log_groups", inference.log_group_names)
pulumi.export("state_machine_arn", training.state_machine_arn)
for step, arn in training.task_definition_arns.items():
    pulumi.export(f"{step}_task_definition_arn", arn)
if monitoring is not None:
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
