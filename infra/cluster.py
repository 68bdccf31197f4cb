"""The EKS cluster (pulumi-eks), its node IAM role and the two managed node groups.

Following pulumi-eks's examples (examples/tests/managed-ng-os-py): API authentication
mode with an ``EC2_LINUX`` access entry for the node role, no default node group, and
managed node groups that take the cluster itself.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Sequence

import pulumi
import pulumi_aws as aws
import pulumi_eks as eks
import pulumi_kubernetes as k8s

from infra.settings import HardeningSettings, NodeGroupSettings

__all__ = ["ClusterArgs", "Cluster", "CONTROL_PLANE_LOG_TYPES", "GPU_TAINT_KEY", "NODE_POLICY_ARNS"]

# Control-plane logs sent to CloudWatch Logs under hardening.controlPlaneLogging: who called
# the API and what they did (EKS user guide, "Send control plane logs to CloudWatch Logs").
# EKS writes them to /aws/eks/<cluster>/cluster; declared here first, with a retention,
# so they do not accumulate forever (EKS's own group never expires).
CONTROL_PLANE_LOG_TYPES = ("api", "audit", "authenticator")
CONTROL_PLANE_LOG_RETENTION_DAYS = 30
_CLUSTER_POLICY_ARN = "arn:aws:iam::aws:policy/AmazonEKSClusterPolicy"

# The taint key the GPU Operator's DaemonSets tolerate by default (chart values
# daemonsets.tolerations); GPU workloads add a toleration for it.
GPU_TAINT_KEY = "nvidia.com/gpu"

# The managed policies an EKS worker node role needs
# (https://docs.aws.amazon.com/eks/latest/userguide/create-node-role.html).
NODE_POLICY_ARNS = (
    "arn:aws:iam::aws:policy/AmazonEKSWorkerNodePolicy",
    "arn:aws:iam::aws:policy/AmazonEKS_CNI_Policy",
    "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly",
)

# EKS-optimised Amazon Linux 2023 AMIs: STANDARD for CPU nodes, NVIDIA with the driver
# and the NVIDIA container toolkit preinstalled for GPU nodes
# (https://docs.aws.amazon.com/eks/latest/APIReference/API_Nodegroup.html#AmazonEKS-Type-Nodegroup-amiType).
_CPU_AMI_TYPE = "AL2023_x86_64_STANDARD"
_GPU_AMI_TYPE = "AL2023_x86_64_NVIDIA"


@dataclass(frozen=True, kw_only=True)
class ClusterArgs:
    cluster_name: str
    kubernetes_version: str
    public_access_cidrs: Sequence[str]
    vpc_id: pulumi.Input[str]
    public_subnet_ids: Sequence[pulumi.Input[str]]
    private_subnet_ids: Sequence[pulumi.Input[str]]
    gpu_subnet_ids: Sequence[pulumi.Input[str]]  # the private subnets in zones offering the GPU type
    cpu_nodes: NodeGroupSettings
    gpu_nodes: NodeGroupSettings
    hardening: HardeningSettings


class Cluster(pulumi.ComponentResource):
    """An EKS cluster with a CPU and a GPU managed node group.

    ``provider`` is a Kubernetes provider for the cluster (built from its kubeconfig):
    pass ``opts=ResourceOptions(provider=cluster.provider)`` to Kubernetes resources.
    ``node_groups`` are the managed node groups, for ``depends_on``.
    """

    name: pulumi.Output[str]
    kubeconfig: pulumi.Output[str]
    provider: k8s.Provider
    node_groups: tuple[eks.ManagedNodeGroup, ...]

    def __init__(self, name: str, args: ClusterArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("gpu-sharing:infra:Cluster", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        node_role = aws.iam.Role(
            f"{name}-node-role", assume_role_policy=json.dumps(_assume_role("ec2.amazonaws.com")), opts=child
        )
        attachments = [
            aws.iam.RolePolicyAttachment(f"{name}-node-policy-{i}", role=node_role.name, policy_arn=arn, opts=child)
            for i, arn in enumerate(NODE_POLICY_ARNS)
        ]

        hardening = args.hardening
        # The control plane's role, ours rather than pulumi-eks's so that it can be allowed to
        # use the secrets key (the pattern of EKS's encryption guides: kms:Encrypt, Decrypt,
        # ListGrants, DescribeKey on that key only).
        service_role = aws.iam.Role(
            f"{name}-service-role",
            assume_role_policy=json.dumps(_assume_role("eks.amazonaws.com")),
            opts=child,
        )
        cluster_deps: list[pulumi.Resource] = [
            aws.iam.RolePolicyAttachment(
                f"{name}-service-policy", role=service_role.name, policy_arn=_CLUSTER_POLICY_ARN, opts=child
            )
        ]
        secrets_key = None
        if hardening.secrets_encryption:
            secrets_key = aws.kms.Key(
                f"{name}-secrets-key",
                description=f"EKS secrets envelope encryption for {args.cluster_name}",
                enable_key_rotation=True,
                deletion_window_in_days=7,
                opts=child,
            )
            cluster_deps.append(
                aws.iam.RolePolicy(
                    f"{name}-service-kms",
                    role=service_role.id,
                    policy=secrets_key.arn.apply(
                        lambda arn: json.dumps(
                            {
                                "Version": "2012-10-17",
                                "Statement": [
                                    {
                                        "Effect": "Allow",
                                        "Action": ["kms:Encrypt", "kms:Decrypt", "kms:ListGrants", "kms:DescribeKey"],
                                        "Resource": arn,
                                    }
                                ],
                            }
                        )
                    ),
                    opts=child,
                )
            )
        if hardening.control_plane_logging:
            cluster_deps.append(
                aws.cloudwatch.LogGroup(
                    f"{name}-control-plane-logs",
                    name=f"/aws/eks/{args.cluster_name}/cluster",
                    retention_in_days=CONTROL_PLANE_LOG_RETENTION_DAYS,
                    opts=child,
                )
            )
        cluster = eks.Cluster(
            f"{name}-eks",
            name=args.cluster_name,
            version=args.kubernetes_version,
            service_role=service_role,
            vpc_id=args.vpc_id,
            public_subnet_ids=list(args.public_subnet_ids),
            private_subnet_ids=list(args.private_subnet_ids),
            node_associate_public_ip_address=False,
            endpoint_public_access=True,
            endpoint_private_access=True,
            public_access_cidrs=list(args.public_access_cidrs),
            authentication_mode=eks.AuthenticationMode.API,
            access_entries={
                "nodes": eks.AccessEntryArgs(principal_arn=node_role.arn, type=eks.AccessEntryType.EC2_LINUX),
            },
            create_oidc_provider=True,
            skip_default_node_group=True,
            # Once set, EKS cannot turn secrets encryption off again for this cluster.
            encryption_config_key_arn=secrets_key.arn if secrets_key else None,
            enabled_cluster_log_types=list(CONTROL_PLANE_LOG_TYPES) if hardening.control_plane_logging else None,
            # pulumi-eks manages the vpc-cni addon; this starts its network policy agent, without
            # which the namespace's NetworkPolicy is accepted but not enforced
            # (EKS user guide, "Limit pod traffic with Kubernetes network policies").
            vpc_cni_options=eks.VpcCniOptionsArgs(enable_network_policy=True) if hardening.network_policy else None,
            opts=pulumi.ResourceOptions(parent=self, depends_on=cluster_deps),
        )

        def node_group(
            suffix: str, spec: NodeGroupSettings, ami_type: str, subnet_ids: Sequence[pulumi.Input[str]]
        ) -> eks.ManagedNodeGroup:
            taints = (
                [aws.eks.NodeGroupTaintArgs(key=GPU_TAINT_KEY, value="true", effect="NO_SCHEDULE")]
                if spec.taint
                else None
            )
            return eks.ManagedNodeGroup(
                f"{name}-{suffix}",
                cluster=cluster,
                node_role=node_role,
                instance_types=[spec.instance_type],
                ami_type=ami_type,
                scaling_config=aws.eks.NodeGroupScalingConfigArgs(
                    desired_size=spec.desired_size, min_size=spec.min_size, max_size=spec.max_size
                ),
                disk_size=spec.disk_size_gib,
                subnet_ids=list(subnet_ids),
                labels=dict(spec.labels),
                taints=taints,
                # pulumi-eks then gives the node group a launch template with metadataOptions
                # httpTokens "required" (or "optional" when off) and hop limit 2, so pods that
                # need IMDS still reach it, and moves disk_size into the template's root volume
                # (nodejs/eks/nodes/nodegroup.ts, createMNGCustomLaunchTemplate).
                enable_imd_sv2=hardening.imdsv2,
                opts=pulumi.ResourceOptions(parent=self, depends_on=attachments),
            )

        self.node_groups = (
            node_group("cpu", args.cpu_nodes, _CPU_AMI_TYPE, args.private_subnet_ids),
            node_group("gpu", args.gpu_nodes, _GPU_AMI_TYPE, args.gpu_subnet_ids),
        )
        self.name = pulumi.Output.from_input(args.cluster_name)
        self.kubeconfig = pulumi.Output.secret(cluster.kubeconfig_json)
        self.provider = k8s.Provider(f"{name}-k8s", kubeconfig=self.kubeconfig, opts=child)
        self.register_outputs({"name": self.name, "kubeconfig": self.kubeconfig})


def _assume_role(service: str) -> dict[str, object]:
    """A trust policy letting an AWS service assume the role."""
    return {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}],
    }
