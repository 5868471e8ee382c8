"""mlops: load the stack settings, build the components, export plain keys. Nothing else."""

import pulumi

from components import settings as stack_settings
from components.network import Network, NetworkArgs

settings = stack_settings.load()

network = Network("network", NetworkArgs(settings=settings.network))

pulumi.export("vpc_id", network.vpc_id)
pulumi.export("task_subnet_ids", network.task_subnet_ids)
