"""mlops: load the stack settings, build the components, export plain keys. Nothing else."""

import pulumi

from components import settings as stack_settings
from components.network import Network, NetworkArgs
from components.shared_store import SharedStore, SharedStoreArgs

settings = stack_settings.load()

network = Network("network", NetworkArgs(settings=settings.network))
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
