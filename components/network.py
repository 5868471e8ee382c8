"""Network: the VPC every other component runs in.

Creates an `awsx.ec2.Vpc` with public subnets in every AZ and, when egress goes through NAT,
private subnets with a NAT gateway (one shared, or one per AZ). Exposes where tasks run:
`task_subnet_ids` are the public subnets under `public-ip` egress (tasks get a public IP, no NAT
to pay for) and the private subnets otherwise.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_awsx as awsx

from components.settings.platform import Egress, NetworkSettings

# awsx NAT strategies (awsx `ec2/vpc.ts`): `Single` and `OnePerAz` need both public and private
# subnets; `None` is fine with public subnets alone.
NAT_STRATEGY = {
    Egress.PUBLIC_IP: awsx.ec2.NatGatewayStrategy.NONE,
    Egress.SINGLE_NAT: awsx.ec2.NatGatewayStrategy.SINGLE,
    Egress.NAT_PER_AZ: awsx.ec2.NatGatewayStrategy.ONE_PER_AZ,
}


HTTPS_PORT = 443

# Security-group rules are standalone aws.vpc.SecurityGroup{Ingress,Egress}Rule resources
# (pulumi-aws recommends them over inline rules, never both on one group); the provider drops
# AWS's default allow-all egress of a new group, so a group allows exactly the rules declared.


def allow_https_out(
    name: str, group: aws.ec2.SecurityGroup, description: str, opts: pulumi.ResourceOptions
) -> aws.vpc.SecurityGroupEgressRule:
    """Let `group` out to any address on TCP 443 only: the AWS APIs (ECR, S3, CloudWatch, ECS),
    through a NAT gateway or the task's public IP."""
    return aws.vpc.SecurityGroupEgressRule(
        name,
        security_group_id=group.id,
        cidr_ipv4="0.0.0.0/0",
        ip_protocol="tcp",
        from_port=HTTPS_PORT,
        to_port=HTTPS_PORT,
        description=description,
        opts=opts,
    )


@dataclass(frozen=True)
class TcpRuleNames:
    """Logical names and descriptions of the two rules `allow_tcp` declares."""

    egress: str
    egress_description: str
    ingress: str
    ingress_description: str


def allow_tcp(
    port: int,
    source: aws.ec2.SecurityGroup,
    target: aws.ec2.SecurityGroup,
    names: TcpRuleNames,
    opts: pulumi.ResourceOptions,
) -> None:
    """Let members of `source` reach members of `target` on one TCP port, and nothing else: an
    egress rule on `source` and an ingress rule on `target`, each naming the other group."""
    aws.vpc.SecurityGroupEgressRule(
        names.egress,
        security_group_id=source.id,
        referenced_security_group_id=target.id,
        ip_protocol="tcp",
        from_port=port,
        to_port=port,
        description=names.egress_description,
        opts=opts,
    )
    aws.vpc.SecurityGroupIngressRule(
        names.ingress,
        security_group_id=target.id,
        referenced_security_group_id=source.id,
        ip_protocol="tcp",
        from_port=port,
        to_port=port,
        description=names.ingress_description,
        opts=opts,
    )


@dataclass
class NetworkArgs:
    settings: NetworkSettings
    """CIDR, AZ count and egress mode from `mlops:network`."""


class Network(pulumi.ComponentResource):
    vpc_id: pulumi.Output[str]
    public_subnet_ids: pulumi.Output[list[str]]
    private_subnet_ids: pulumi.Output[list[str]]
    task_subnet_ids: pulumi.Output[list[str]]
    assign_public_ip: bool
    """Tasks need a public IP to reach ECR and CloudWatch when there is no NAT."""

    def __init__(self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlops:index:Network", name, None, opts)
        settings = args.settings
        prefix = ipaddress.ip_network(settings.cidr).prefixlen
        uses_nat = settings.egress is not Egress.PUBLIC_IP
        subnet_specs = [
            # Public subnets hold the ALB, the NAT gateways and, without NAT, the tasks.
            awsx.ec2.SubnetSpecArgs(type=awsx.ec2.SubnetType.PUBLIC, cidr_mask=prefix + 6),
        ]
        if uses_nat:
            subnet_specs.append(
                awsx.ec2.SubnetSpecArgs(type=awsx.ec2.SubnetType.PRIVATE, cidr_mask=prefix + 4)
            )
        vpc = awsx.ec2.Vpc(
            f"{name}-vpc",
            cidr_block=settings.cidr,
            # `numberOfAvailabilityZones` and `availabilityZoneNames` are mutually exclusive.
            number_of_availability_zones=settings.azs,
            # The default `Legacy` strategy is deprecated and warns; `Auto` packs subnets in order.
            subnet_strategy=awsx.ec2.SubnetAllocationStrategy.AUTO,
            subnet_specs=subnet_specs,
            nat_gateways=awsx.ec2.NatGatewayConfigurationArgs(
                strategy=NAT_STRATEGY[settings.egress]
            ),
            enable_dns_hostnames=True,  # EFS mount targets are reached by DNS name
            enable_dns_support=True,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.vpc_id = vpc.vpc_id
        self.public_subnet_ids = vpc.public_subnet_ids
        self.private_subnet_ids = vpc.private_subnet_ids
        self.task_subnet_ids = vpc.private_subnet_ids if uses_nat else vpc.public_subnet_ids
        self.assign_public_ip = not uses_nat
        self.register_outputs(
            {
                "vpc_id": self.vpc_id,
                "public_subnet_ids": self.public_subnet_ids,
                "private_subnet_ids": self.private_subnet_ids,
                "task_subnet_ids": self.task_subnet_ids,
            }
        )
