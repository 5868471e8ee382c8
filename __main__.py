"""mlops: load the stack settings, build the components, export plain keys. Nothing else."""

import pulumi

from components import settings as stack_settings
from components.image_repo import ImageRepo, ImageRepoArgs
from components.network import Network, NetworkArgs
from components.shared_store import SharedStore, SharedStoreArgs

settings = stack_settings.load()

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

pulumi.export("vpc_id", network.vpc_id)
pulumi.export("task_subnet_ids", network.task_subnet_ids)
pulumi.export("file_system_id", store.file_system_id)
pulumi.export("repository_url", images.repository_url)
pulumi.export("image_ref", images.image_ref("cpu"))
