"""AWS EC2 as a GPU market (``subconscious/market/ec2.py``): where its machines run, and who
may rent and end them.

- A VPC of public subnets only (no NAT gateway: nothing to pay while nothing runs), one per
  zone, and a security group that opens automatic1111's port and nothing else. The render
  Lambdas call the machines over the internet, each with its run's own credential.
- One managed policy per kind of access, attached to the roles whose code paths reach it
  (``EC2_ACCESS``): reading the market (instance types, spot price history, instances, spot
  requests, the Price List and the vCPU quotas: actions without resource-level permissions),
  renting (RunInstances only with the ``subc:label`` tag on the instance and its volume, in
  this security group; CreateTags only as part of that RunInstances) and ending machines
  (TerminateInstances only on instances that carry a ``subc:label`` tag).

The inline-policy grants of ``permissions.ACCESS`` stay condition-free; the tag conditions
live here.
"""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import Aws, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from constructs import Construct

from infra import definitions as d
from infra.cdk.nag import acknowledge

LABEL_TAG = "subc:label"  # market/ec2.py tags each instance and volume with its run's label
RENDER_PORT = 7860

READ = "read"
RENT = "rent"
END = "end"
# Which roles need which access: offers are listed by the price refresh (and by a quote or a
# dispatch tick when the cache is stale); provision rents (and ends a machine whose start it
# gave up); the run's steps read status; teardown and the reaper end machines.
EC2_ACCESS: Mapping[str, tuple[str, ...]] = {
    f"{d.PREFIX}-api": (READ,),
    f"{d.PREFIX}-dispatch": (READ,),
    f"{d.PREFIX}-prices": (READ,),
    f"{d.PREFIX}-provision": (READ, RENT, END),
    f"{d.PREFIX}-wait-ready": (READ,),
    f"{d.PREFIX}-render": (READ,),
    f"{d.PREFIX}-teardown": (READ, END),
    f"{d.PREFIX}-reaper": (READ, END),
}
READ_ACTIONS = (
    "ec2:DescribeInstances",
    "ec2:DescribeInstanceTypes",
    "ec2:DescribeSpotInstanceRequests",
    "ec2:DescribeSpotPriceHistory",
    "pricing:GetProducts",
    "servicequotas:GetServiceQuota",
)


class Ec2Market(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, roles: Mapping[str, iam.IRole]):
        super().__init__(scope, construct_id)
        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            max_azs=3,
            nat_gateways=0,
            subnet_configuration=[
                ec2.SubnetConfiguration(name="machines", subnet_type=ec2.SubnetType.PUBLIC)
            ],
        )
        self.vpc.add_flow_log("FlowLog", traffic_type=ec2.FlowLogTrafficType.REJECT)
        self.security_group = ec2.SecurityGroup(
            self,
            "RenderPort",
            vpc=self.vpc,
            description="automatic1111 API port only, each run locked by its own credential",
            allow_all_outbound=True,  # the image pull and the checkpoint download
        )
        self.security_group.add_ingress_rule(
            ec2.Peer.any_ipv4(), ec2.Port.tcp(RENDER_PORT), "render Lambdas (no fixed address)"
        )
        acknowledge(
            self.security_group,
            "AwsSolutions-EC23",
            "The render Lambdas run outside any VPC and have no fixed address; the port is "
            "automatic1111's API only, locked by a credential derived per run.",
        )
        self.policies = {
            READ: self._policy(
                "Read", [iam.PolicyStatement(actions=list(READ_ACTIONS), resources=["*"])]
            ),
            RENT: self._policy("Rent", self._rent_statements()),
            END: self._policy("End", [self._end_statement()]),
        }
        for function_name, kinds in EC2_ACCESS.items():
            for kind in kinds:
                self.policies[kind].attach_to_role(roles[function_name])
        acknowledge(
            self.policies[READ],
            "AwsSolutions-IAM5[Resource::*]",
            "Describe* on EC2, pricing:GetProducts and servicequotas:GetServiceQuota support no "
            "resource-level permissions; the policy holds read actions only.",
        )
        account = "arn:<AWS::Partition>:ec2:<AWS::Region>:<AWS::AccountId>:"
        per_run = ("instance/*", "volume/*", "subnet/*", "network-interface/*")
        for resource in (*per_run, "spot-instances-request/*"):
            acknowledge(
                self.policies[RENT],
                f"AwsSolutions-IAM5[Resource::{account}{resource}]",
                "Instances, volumes, interfaces and spot requests are created per run, so their "
                f"ARNs end in '*': instances and volumes only with the {LABEL_TAG} tag; the "
                "others are parts RunInstances needs, in our one security group.",
            )
        acknowledge(
            self.policies[RENT],
            "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:ec2:<AWS::Region>::image/*]",
            "The AMI is resolved at launch (AWS's Deep Learning Base AMI, a public SSM "
            "parameter), so any image may be the one; launching still needs the tag.",
        )
        acknowledge(
            self.policies[RENT],
            "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:ssm:<AWS::Region>::parameter/aws/"
            "service/deeplearning/*]",
            "AWS publishes the Deep Learning AMI ids as public parameters under this path; the "
            "latest one is resolved at each launch.",
        )
        acknowledge(
            self.policies[END],
            f"AwsSolutions-IAM5[Resource::{account}instance/*]",
            f"Instances are created per run: only those carrying the {LABEL_TAG} tag.",
        )

    @property
    def settings(self) -> dict[str, str]:
        """The adapter's settings: the group, and a subnet per zone (a spot offer is one zone's)."""
        subnets = {s.availability_zone: s.subnet_id for s in self.vpc.public_subnets}
        return {
            "SUBC_EC2_SECURITY_GROUP_ID": self.security_group.security_group_id,
            "SUBC_EC2_REGION": Aws.REGION,
            "SUBC_EC2_SUBNETS": Stack.of(self).to_json_string(subnets),
        }

    def _policy(self, name: str, statements: list[iam.PolicyStatement]) -> iam.ManagedPolicy:
        return iam.ManagedPolicy(self, name, statements=statements)

    def _rent_statements(self) -> list[iam.PolicyStatement]:
        def arn(resource: str) -> str:
            return f"arn:{Aws.PARTITION}:ec2:{Aws.REGION}:{Aws.ACCOUNT_ID}:{resource}"

        tagged = {"StringLike": {f"aws:RequestTag/{LABEL_TAG}": "subc-*"}}
        return [
            iam.PolicyStatement(
                sid="RunOnlyLabelledInstancesAndVolumes",
                actions=["ec2:RunInstances"],
                resources=[arn("instance/*"), arn("volume/*")],
                conditions=tagged,
            ),
            iam.PolicyStatement(
                sid="RunInOurSecurityGroup",
                actions=["ec2:RunInstances"],
                resources=[
                    arn(f"security-group/{self.security_group.security_group_id}"),
                    arn("subnet/*"),
                    arn("network-interface/*"),
                    arn("spot-instances-request/*"),
                    f"arn:{Aws.PARTITION}:ec2:{Aws.REGION}::image/*",
                ],
            ),
            iam.PolicyStatement(
                # an image id of the form resolve:ssm:<parameter> is read by RunInstances as
                # its caller: AWS's public Deep Learning AMI parameters only
                sid="ResolveTheDeepLearningAmi",
                actions=["ssm:GetParameters"],
                resources=[
                    f"arn:{Aws.PARTITION}:ssm:{Aws.REGION}::parameter/aws/service/deeplearning/*"
                ],
            ),
            iam.PolicyStatement(
                sid="TagOnlyWhileRunning",
                actions=["ec2:CreateTags"],
                resources=[arn("instance/*"), arn("volume/*")],
                conditions={"StringEquals": {"ec2:CreateAction": "RunInstances"}},
            ),
        ]

    def _end_statement(self) -> iam.PolicyStatement:
        return iam.PolicyStatement(
            sid="EndOnlyLabelledInstances",
            actions=["ec2:TerminateInstances"],
            resources=[f"arn:{Aws.PARTITION}:ec2:{Aws.REGION}:{Aws.ACCOUNT_ID}:instance/*"],
            conditions={"StringLike": {f"ec2:ResourceTag/{LABEL_TAG}": "subc-*"}},
        )
