"""AWS facts the program checks config against and prices by: Fargate's capacity providers and task
sizes, CloudWatch Logs retention values, EFS transition days, GPU instance facts.

Plain data with their sources; no Pulumi, no config parser, so the cost model (preflight/costs/)
imports them alone."""

from __future__ import annotations

# CloudWatch Logs retention values are the policy pack's list: the pack stands alone in policy/.
from policy.checks import LOG_RETENTION_DAYS as LOG_RETENTION_DAYS

# The capacity providers every ECS cluster can use for Fargate tasks, by their reserved names (ECS
# Developer Guide, "Amazon ECS clusters for Fargate": FARGATE and FARGATE_SPOT "are reserved and
# cannot be created"); EC2 capacity providers are the cluster's own and carry generated names.
FARGATE = "FARGATE"
FARGATE_SPOT = "FARGATE_SPOT"
FARGATE_PROVIDERS = (FARGATE, FARGATE_SPOT)


# Fargate task sizes: CPU units -> the memory values (MiB) AWS accepts with them.
# Source: "Task CPU and memory" table, Amazon ECS Developer Guide (task_definition_parameters).
FARGATE_MEMORY: dict[int, tuple[int, ...]] = {
    256: (512, 1024, 2048),
    512: tuple(range(1024, 4096 + 1, 1024)),
    1024: tuple(range(2048, 8192 + 1, 1024)),
    2048: tuple(range(4096, 16384 + 1, 1024)),
    4096: tuple(range(8192, 30720 + 1, 1024)),
    8192: tuple(range(16384, 61440 + 1, 4096)),
    16384: tuple(range(32768, 122880 + 1, 8192)),
}


# EFS lifecycle `TransitionToIA` values (AFTER_N_DAYS), in days.
EFS_IA_DAYS = (1, 7, 14, 30, 60, 90, 180, 270, 365)


# NVIDIA GPU instance types the ECS GPU-optimized AMI supports, x86_64 only (the image is
# linux/amd64): size -> (vCPUs, memory MiB, GPUs). Source: EC2 accelerated computing instance
# specifications. Graviton (g5g) and AMD (g4ad) GPU families are deliberately absent.
GPU_INSTANCES: dict[str, tuple[int, int, int]] = {
    "g4dn.xlarge": (4, 16384, 1),
    "g4dn.2xlarge": (8, 32768, 1),
    "g4dn.4xlarge": (16, 65536, 1),
    "g4dn.8xlarge": (32, 131072, 1),
    "g4dn.12xlarge": (48, 196608, 4),
    "g4dn.16xlarge": (64, 262144, 1),
    "g5.xlarge": (4, 16384, 1),
    "g5.2xlarge": (8, 32768, 1),
    "g5.4xlarge": (16, 65536, 1),
    "g5.8xlarge": (32, 131072, 1),
    "g5.12xlarge": (48, 196608, 4),
    "g5.16xlarge": (64, 262144, 1),
    "g5.24xlarge": (96, 393216, 4),
    "g5.48xlarge": (192, 786432, 8),
    "g6.xlarge": (4, 16384, 1),
    "g6.2xlarge": (8, 32768, 1),
    "g6.4xlarge": (16, 65536, 1),
    "g6.8xlarge": (32, 131072, 1),
    "g6.12xlarge": (48, 196608, 4),
    "g6.16xlarge": (64, 262144, 1),
    "g6.24xlarge": (96, 393216, 4),
    "g6.48xlarge": (192, 786432, 8),
    "p3.2xlarge": (8, 62464, 1),
    "p3.8xlarge": (32, 249856, 4),
    "p3.16xlarge": (64, 499712, 8),
    "p4d.24xlarge": (96, 1179648, 8),
    "p5.48xlarge": (192, 2097152, 8),
}


# The ECS container agent reserves some instance memory; a task asking for all of it never places.
ECS_AGENT_RESERVED_MIB = 1024


# Network interfaces an instance type takes on its default network card (EC2
# DescribeInstanceTypes `NetworkInfo.NetworkCards[0].MaximumNetworkInterfaces`; EC2 User Guide,
# "Maximum IP addresses per network interface"; the same values as aws/amazon-vpc-cni-k8s
# pkg/vpc/vpc_ip_resource_limit.go). Each awsvpc task on EC2 takes one ENI of its own and the
# instance keeps its primary one, so an instance runs at most this minus one awsvpc tasks
# (ECS Developer Guide, "Amazon ECS task networking options for the EC2 launch type"). ENI
# trunking would raise it but is an account-wide ECS setting (`awsvpcTrunking`) this program does
# not own.
INSTANCE_ENIS: dict[str, int] = {
    "g4dn.xlarge": 3,
    "g4dn.2xlarge": 3,
    "g4dn.4xlarge": 3,
    "g4dn.8xlarge": 4,
    "g4dn.12xlarge": 8,
    "g4dn.16xlarge": 4,
    "g5.xlarge": 4,
    "g5.2xlarge": 4,
    "g5.4xlarge": 8,
    "g5.8xlarge": 8,
    "g5.12xlarge": 15,
    "g5.16xlarge": 8,
    "g5.24xlarge": 15,
    "g5.48xlarge": 7,
    "g6.xlarge": 4,
    "g6.2xlarge": 4,
    "g6.4xlarge": 8,
    "g6.8xlarge": 8,
    "g6.12xlarge": 8,
    "g6.16xlarge": 15,
    "g6.24xlarge": 15,
    "g6.48xlarge": 15,
    "p3.2xlarge": 4,
    "p3.8xlarge": 8,
    "p3.16xlarge": 8,
    "p4d.24xlarge": 15,
    "p5.48xlarge": 2,
}


def tasks_per_instance(instance: str, gpus: int, cpu: int, memory: int) -> tuple[int, str]:
    """How many awsvpc serving tasks of this size one instance holds, and what limits it.

    The least of: its GPUs over the task's, its network interfaces but the primary one (see
    `INSTANCE_ENIS`), its CPU units and its memory less the agent's reserve.
    """
    vcpus, mem, count = GPU_INSTANCES[instance]
    limits = {
        f"{count} GPU(s)": count // gpus,
        f"{INSTANCE_ENIS[instance]} network interfaces (awsvpc: one per task plus the "
        "instance's own)": INSTANCE_ENIS[instance] - 1,
        f"{vcpus * 1024} CPU units": vcpus * 1024 // cpu,
        f"{mem - ECS_AGENT_RESERVED_MIB} MiB for tasks": (mem - ECS_AGENT_RESERVED_MIB) // memory,
    }
    reason = min(limits, key=lambda k: limits[k])
    return limits[reason], reason
