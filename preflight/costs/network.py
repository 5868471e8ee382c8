"""Network: NAT gateways (from the VPC's NAT strategy, or declared alone), public IPv4 addresses
(Elastic IPs, NAT gateways', the load balancer's nodes), interface VPC endpoints, the Application
Load Balancer (hours, and LCUs only while a task serves) and WAF (web ACL, rules, requests).
Security groups, subnets, routes, listeners, target groups, public certificates and alias
records cost nothing of their own.

Prices (`preflight/prices.py`): `nat_gateway_hour`, `nat_gateway_gb`, `public_ipv4_hour`
(aws.amazon.com/vpc/pricing), `vpc_endpoint_hour` (aws.amazon.com/privatelink/pricing),
`alb_hour`, `alb_lcu_hour` (aws.amazon.com/elasticloadbalancing/pricing), `waf_web_acl_month`,
`waf_rule_month`, `waf_million_requests` (aws.amazon.com/waf/pricing). Assumptions:
`nat_gb_per_month`, `alb_lcus`, `waf_million_requests_per_month`.
"""

from __future__ import annotations

from collections.abc import Mapping

from preflight import prices
from preflight.costs.core import Ledger, as_list, as_number, get_path, resources_of
from preflight.offline import Plan

VPC = "awsx:ec2:Vpc"
NAT_GATEWAY = "aws:ec2/natGateway:NatGateway"
EIP = "aws:ec2/eip:Eip"
VPC_ENDPOINT = "aws:ec2/vpcEndpoint:VpcEndpoint"
LOAD_BALANCERS = ("aws:lb/loadBalancer:LoadBalancer", "aws:alb/loadBalancer:LoadBalancer")
WEB_ACL = "aws:wafv2/webAcl:WebAcl"

PRICED = frozenset({VPC, NAT_GATEWAY, EIP, VPC_ENDPOINT, *LOAD_BALANCERS, WEB_ACL})
FREE = frozenset(
    {
        "aws:ec2/securityGroup:SecurityGroup",
        "aws:ec2/securityGroupRule:SecurityGroupRule",
        "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule",
        "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule",
        "aws:ec2/subnet:Subnet",
        "aws:ec2/routeTable:RouteTable",
        "aws:ec2/route:Route",
        "aws:ec2/routeTableAssociation:RouteTableAssociation",
        "aws:ec2/internetGateway:InternetGateway",
        "aws:ec2/vpc:Vpc",
        "aws:lb/targetGroup:TargetGroup",
        "aws:lb/listener:Listener",
        "aws:lb/listenerRule:ListenerRule",
        "aws:lb/listenerCertificate:ListenerCertificate",
        "aws:wafv2/webAclAssociation:WebAclAssociation",
        # Public ACM certificates are free; Route 53 bills the hosted zone (not declared here:
        # it exists before the stack) and queries, and alias queries to an ELB are free.
        "aws:acm/certificate:Certificate",
        "aws:acm/certificateValidation:CertificateValidation",
        "aws:route53/record:Record",
    }
)


def nat_and_addresses(plan: Plan, ledger: Ledger) -> None:
    """NAT gateways and their addresses, Elastic IPs and interface endpoints."""
    for vpc in resources_of(plan, VPC):
        strategy = str(get_path(vpc.inputs, "natGateways.strategy") or "None")
        azs = int(
            as_number(vpc.inputs.get("numberOfAvailabilityZones"))
            or len(as_list(vpc.inputs.get("availabilityZoneNames")))
            or 2
        )
        count = {"Single": 1, "OnePerAz": azs}.get(strategy, 0)
        if not count:
            continue
        note = f"natGateways.strategy {strategy} over {azs} AZs: {count} NAT gateway(s)"
        ledger.add(vpc, "NAT gateway hours", count * prices.HOURS_PER_MONTH, "nat_gateway_hour")
        ledger.add(
            vpc,
            "NAT gateway data processed",
            ledger.assume("nat_gb_per_month"),
            "nat_gateway_gb",
            note=note,
        )
        ledger.add(
            vpc,
            "public IPv4 (NAT gateway Elastic IPs)",
            count * prices.HOURS_PER_MONTH,
            "public_ipv4_hour",
        )
    for nat in resources_of(plan, NAT_GATEWAY):
        ledger.add(nat, "NAT gateway hours", prices.HOURS_PER_MONTH, "nat_gateway_hour")
    for eip in resources_of(plan, EIP):
        ledger.add(eip, "public IPv4", prices.HOURS_PER_MONTH, "public_ipv4_hour")
    for endpoint in resources_of(plan, VPC_ENDPOINT):
        if endpoint.inputs.get("vpcEndpointType") == "Interface":
            zones = len(as_list(endpoint.inputs.get("subnetIds"))) or 1
            hours = zones * prices.HOURS_PER_MONTH
            ledger.add(endpoint, "interface endpoint AZ-hours", hours, "vpc_endpoint_hour")


def load_balancers(plan: Plan, ledger: Ledger, serving_fraction: Mapping[str, float]) -> None:
    """Application Load Balancers: hours, LCUs for the share of the month a service runs a task
    (`serving_fraction`: service name -> share), one public IPv4 per node when internet-facing."""
    for lb in resources_of(plan, *LOAD_BALANCERS):
        if lb.inputs.get("loadBalancerType", "application") != "application":
            ledger.unknown(lb, f"{lb.inputs['loadBalancerType']} load balancer", "no price")
            continue
        ledger.add(lb, "ALB hours", prices.HOURS_PER_MONTH, "alb_hour")
        lcus = ledger.assume("alb_lcus")
        # LCUs are billed for traffic processed: a service scaled to zero (dev at night and
        # at weekends) serves none. With no service in the plan, the whole month counts.
        serving = max(serving_fraction.values(), default=1.0)
        ledger.add(
            lb,
            "ALB LCUs",
            lcus * prices.HOURS_PER_MONTH * serving,
            "alb_lcu_hour",
            note=f"{serving:.0%} of the month with a task serving",
        )
        if lb.inputs.get("internal") is not True:
            nodes = len(
                as_list(lb.inputs.get("subnets")) or as_list(lb.inputs.get("subnetMappings"))
            )
            ledger.add(
                lb,
                "public IPv4 (one per ALB node)",
                max(nodes, 1) * prices.HOURS_PER_MONTH,
                "public_ipv4_hour",
                note=f"internet-facing in {nodes} subnet(s)",
            )


def waf(plan: Plan, ledger: Ledger) -> None:
    """Each WAF web ACL, its rules (a managed rule group counts as one) and its requests."""
    for acl in resources_of(plan, WEB_ACL):
        ledger.add(acl, "WAF web ACL", 1, "waf_web_acl_month")
        rules = len(as_list(acl.inputs.get("rules")))
        if rules:
            ledger.add(acl, "WAF rules", rules, "waf_rule_month")
        requests = ledger.assume("waf_million_requests_per_month")
        ledger.add(acl, "WAF requests", requests, "waf_million_requests")
