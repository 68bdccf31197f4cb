"""The EKS cluster (pulumi-eks), its node IAM role, the two managed node groups with their
launch templates and the Cluster Autoscaler's node-template tags on their Auto Scaling groups,
the CoreDNS add-on and the access entries.

Following pulumi-eks's examples (examples/tests/managed-ng-os-py): API authentication
mode with an ``EC2_LINUX`` access entry for the node role, no default node group, and
managed node groups that take the cluster itself.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_eks as eks
import pulumi_kubernetes as k8s

from config.cluster_settings import AccessSettings, HardeningSettings, NodeGroupSettings
from config.facts import CPU_AMI_TYPE, EKS_AMIS, EKS_CLUSTER_ADMIN_POLICY, GPU_AMI_TYPE, partition_of, service_host
from config.instances import ACCELERATOR_LABEL
from infra.autoscaler import NODE_TEMPLATE, node_template_tags

__all__ = ["ClusterArgs", "Cluster", "CONTROL_PLANE_LOG_TYPES", "GPU_TAINT_EFFECT", "GPU_TAINT_KEY", "GPU_TAINT_VALUE",
           "NODE_POLICY_ARNS"]

# Control-plane logs sent to CloudWatch Logs under hardening.controlPlaneLogging: who called
# the API and what they did (EKS user guide, "Send control plane logs to CloudWatch Logs").
# EKS writes them to /aws/eks/<cluster>/cluster; declared here first, with a retention,
# so they do not accumulate forever (EKS's own group never expires).
CONTROL_PLANE_LOG_TYPES = ("api", "audit", "authenticator")
CONTROL_PLANE_LOG_RETENTION_DAYS = 30
_CLUSTER_POLICY_ARN = "arn:aws:iam::aws:policy/AmazonEKSClusterPolicy"

# The taint key the GPU Operator's DaemonSets tolerate by default (chart values
# daemonsets.tolerations); GPU workloads add a toleration for it. EKS spells the effect
# NO_SCHEDULE; the node carries it as Kubernetes' NoSchedule (EKS API reference, Taint).
GPU_TAINT_KEY = "nvidia.com/gpu"
GPU_TAINT_VALUE = "true"
GPU_TAINT_EFFECT = "NoSchedule"

# The managed policies an EKS worker node role needs
# (https://docs.aws.amazon.com/eks/latest/userguide/create-node-role.html).
NODE_POLICY_ARNS = (
    "arn:aws:iam::aws:policy/AmazonEKSWorkerNodePolicy",
    "arn:aws:iam::aws:policy/AmazonEKS_CNI_Policy",
    "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly",
)
# EBS encryption through EC2 for principals of the account, as the AWS managed aws/ebs key's
# own policy words it ("Allow access through EBS for all principals in the account that are
# authorized to use EBS"): the EC2 Auto Scaling service-linked role that launches managed
# nodes gets no customer managed key access otherwise (EC2 Auto Scaling user guide, "Required
# AWS KMS key policy for use with encrypted volumes"), and naming that role in the policy would
# fail in an account that has never had an Auto Scaling group (the role does not exist yet).
_EBS_KEY_ACTIONS = ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:CreateGrant", "kms:DescribeKey"]


@dataclass(frozen=True, kw_only=True)
class ClusterArgs:
    cluster_name: str
    region: str
    kubernetes_version: str
    public_access_cidrs: Sequence[str]
    vpc_id: pulumi.Input[str]
    public_subnet_ids: Sequence[pulumi.Input[str]]
    private_subnet_ids: Sequence[pulumi.Input[str]]
    gpu_subnet_ids: Sequence[pulumi.Input[str]]  # the private subnets in zones offering the GPU type
    cpu_nodes: NodeGroupSettings
    gpu_nodes: NodeGroupSettings
    gpu_accelerator: str  # the GPU's name for the k8s.amazonaws.com/accelerator node label
    gpu_node_resources: Mapping[str, str]  # extended resources a GPU node offers: {"nvidia.com/gpu": "10"}
    hardening: HardeningSettings
    access: AccessSettings
    benchmark_group: str  # the Kubernetes group benchmark users' access entries map to


class Cluster(pulumi.ComponentResource):
    """An EKS cluster with a CPU and a GPU managed node group.

    ``provider`` is a Kubernetes provider for the cluster (built from its kubeconfig):
    pass ``opts=ResourceOptions(provider=cluster.provider)`` to Kubernetes resources.
    ``node_groups`` are the managed node groups, for ``depends_on``; ``oidc_provider_arn`` and
    ``oidc_issuer`` the cluster's IAM OIDC provider, for IAM roles of service accounts.
    """

    name: pulumi.Output[str]
    kubeconfig: pulumi.Output[str]
    oidc_provider_arn: pulumi.Output[str]
    oidc_issuer: pulumi.Output[str]
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
        # The stack's KMS key: Secrets envelope encryption and the nodes' root volumes, each
        # where hardening says so. (It was "-secrets-key" when it served Secrets only.)
        key = None
        if hardening.secrets_encryption or hardening.node_volume_encryption:
            uses = [u for u, on in (("Kubernetes Secrets", hardening.secrets_encryption),
                                     ("node root volumes", hardening.node_volume_encryption)) if on]  # fmt: skip
            key = aws.kms.Key(
                f"{name}-kms-key",
                description=f"{args.cluster_name}: {' and '.join(uses)}",
                enable_key_rotation=True,
                deletion_window_in_days=7,
                policy=_key_policy(args.region, hardening.node_volume_encryption, child),
                opts=pulumi.ResourceOptions(parent=self, aliases=[pulumi.Alias(name=f"{name}-secrets-key")]),
            )
        if key is not None and hardening.secrets_encryption:
            cluster_deps.append(
                aws.iam.RolePolicy(
                    f"{name}-service-kms",
                    role=service_role.id,
                    policy=key.arn.apply(
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
        partition = partition_of(args.region)
        access_entries = {
            "nodes": eks.AccessEntryArgs(principal_arn=node_role.arn, type=eks.AccessEntryType.EC2_LINUX),
            **{
                f"admin-{i}": eks.AccessEntryArgs(
                    principal_arn=arn,
                    access_policies={
                        "cluster-admin": eks.AccessPolicyAssociationArgs(
                            policy_arn=EKS_CLUSTER_ADMIN_POLICY.format(partition=partition),
                            access_scope=aws.eks.AccessPolicyAssociationAccessScopeArgs(type="cluster"),
                        )
                    },
                )
                for i, arn in enumerate(args.access.cluster_admins)
            },
            # Mapped to a Kubernetes group only: the namespaced Role the workloads bind to that
            # group says what they may do (workloads/component.py, BENCHMARK_ROLE_RULES).
            **{
                f"benchmark-{i}": eks.AccessEntryArgs(principal_arn=arn, kubernetes_groups=[args.benchmark_group])
                for i, arn in enumerate(args.access.benchmark_users)
            },
        }
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
            access_entries=access_entries,
            create_oidc_provider=True,
            skip_default_node_group=True,
            # Once set, EKS cannot turn secrets encryption off again for this cluster.
            encryption_config_key_arn=key.arn if key is not None and hardening.secrets_encryption else None,
            enabled_cluster_log_types=list(CONTROL_PLANE_LOG_TYPES) if hardening.control_plane_logging else None,
            # pulumi-eks manages the vpc-cni addon; this starts its network policy agent, without
            # which the namespace's NetworkPolicy is accepted but not enforced
            # (EKS user guide, "Limit pod traffic with Kubernetes network policies").
            vpc_cni_options=eks.VpcCniOptionsArgs(enable_network_policy=True) if hardening.network_policy else None,
            # CoreDNS as a managed add-on is declared below, after the node groups: pulumi-eks
            # would create it here, before any node exists, and its pods could not schedule
            # (the add-on then waits out 20 minutes as DEGRADED: pulumi/pulumi-eks#1819, #1371).
            coredns_addon_options=eks.CoreDnsAddonOptionsArgs(enabled=False),
            opts=pulumi.ResourceOptions(parent=self, depends_on=cluster_deps),
        )

        def node_group(
            suffix: str,
            spec: NodeGroupSettings,
            ami_type: str,
            subnet_ids: Sequence[pulumi.Input[str]],
            labels: Mapping[str, str],
            resources: Mapping[str, str],
        ) -> eks.ManagedNodeGroup:
            taint = [(GPU_TAINT_KEY, GPU_TAINT_VALUE, "NO_SCHEDULE")] if spec.taint else []  # the EKS API's effect
            taints = [aws.eks.NodeGroupTaintArgs(key=k, value=v, effect=e) for k, v, e in taint] or None
            encrypt = key is not None and hardening.node_volume_encryption
            # Our own launch template: pulumi-eks's (made for enableIMDSv2 or diskSize) sets only
            # the root volume's size, so the volume is neither gp3 nor encrypted (the AL2023
            # AMIs' snapshot is unencrypted), and pulumi-eks refuses enableIMDSv2 together with
            # a launch template of ours (nodejs/eks/nodes/nodegroup.ts, createManagedNodeGroup and
            # createMNGCustomLaunchTemplate). So the template carries the metadata options pulumi-eks
            # would set and the root volume; no image or user data, so EKS still picks the AMI of
            # ami_type and writes the node bootstrap (EKS user guide, "Customize managed nodes
            # with launch templates").
            template = aws.ec2.LaunchTemplate(
                f"{name}-{suffix}-launch-template",
                description=f"{args.cluster_name} {suffix} nodes",
                block_device_mappings=[
                    aws.ec2.LaunchTemplateBlockDeviceMappingArgs(
                        device_name=EKS_AMIS[ami_type].root_device,
                        ebs=aws.ec2.LaunchTemplateBlockDeviceMappingEbsArgs(
                            volume_size=spec.disk_size_gib,
                            volume_type="gp3",
                            encrypted="true" if encrypt else None,
                            kms_key_id=key.arn if encrypt and key is not None else None,
                            delete_on_termination="true",
                        ),
                    )
                ],
                # httpTokens "required" (IMDSv2) or "optional"; hop limit 2 so pods that need
                # IMDS still reach it.
                metadata_options=aws.ec2.LaunchTemplateMetadataOptionsArgs(
                    http_endpoint="enabled",
                    http_tokens="required" if hardening.imdsv2 else "optional",
                    http_put_response_hop_limit=2,
                ),
                opts=child,
            )
            group = eks.ManagedNodeGroup(
                f"{name}-{suffix}",
                cluster=cluster,
                node_role=node_role,
                instance_types=[spec.instance_type],
                ami_type=ami_type,
                scaling_config=aws.eks.NodeGroupScalingConfigArgs(
                    desired_size=spec.desired_size, min_size=spec.min_size, max_size=spec.max_size
                ),
                subnet_ids=list(subnet_ids),
                labels=dict(labels),
                taints=taints,
                launch_template=aws.eks.NodeGroupLaunchTemplateArgs(
                    id=template.id, version=template.latest_version.apply(str)
                ),
                # The Cluster Autoscaler owns the size between minSize and maxSize: desiredSize
                # applies at creation, and a later `pulumi up` does not reset what it scaled to.
                ignore_scaling_changes=True,
                opts=pulumi.ResourceOptions(parent=self, depends_on=attachments),
            )
            asg = _auto_scaling_group(group)
            for tag, value in node_template_tags(labels, taint, resources).items():
                aws.autoscaling.Tag(
                    f"{name}-{suffix}-asg-{tag.removeprefix(NODE_TEMPLATE + '/').replace('/', '-')}",
                    autoscaling_group_name=asg,
                    tag=aws.autoscaling.TagTagArgs(key=tag, value=value, propagate_at_launch=False),
                    opts=child,
                )
            return group

        # GPU nodes carry the label the autoscaler knows a GPU node by: until the device plugin
        # advertises the GPU, such a node counts as unready rather than as one more node the
        # pending GPU pods do not fit (config/instances.py, ACCELERATOR_LABEL).
        gpu_labels = {**args.gpu_nodes.labels, ACCELERATOR_LABEL: args.gpu_accelerator}
        self.node_groups = (
            node_group("cpu", args.cpu_nodes, CPU_AMI_TYPE, args.private_subnet_ids, args.cpu_nodes.labels, {}),
            node_group("gpu", args.gpu_nodes, GPU_AMI_TYPE, args.gpu_subnet_ids, gpu_labels, args.gpu_node_resources),
        )
        # CoreDNS managed by EKS like kube-proxy and the VPC CNI (which pulumi-eks declares), once
        # nodes can run it; OVERWRITE takes over the self-managed CoreDNS EKS bootstraps at
        # cluster creation. Without a version EKS installs its default for the cluster version.
        self.coredns = aws.eks.Addon(
            f"{name}-coredns",
            cluster_name=args.cluster_name,
            addon_name="coredns",
            resolve_conflicts_on_create="OVERWRITE",
            resolve_conflicts_on_update="OVERWRITE",
            opts=pulumi.ResourceOptions(parent=self, depends_on=[cluster, *self.node_groups]),
        )
        self.name = pulumi.Output.from_input(args.cluster_name)
        self.kubeconfig = pulumi.Output.secret(cluster.kubeconfig_json)
        self.oidc_provider_arn = cluster.oidc_provider_arn
        self.oidc_issuer = cluster.oidc_issuer
        self.provider = k8s.Provider(f"{name}-k8s", kubeconfig=self.kubeconfig, opts=child)
        self.register_outputs({"name": self.name, "kubeconfig": self.kubeconfig})


def _auto_scaling_group(group: eks.ManagedNodeGroup) -> pulumi.Output[str]:
    """The name of the Auto Scaling group EKS made for a managed node group (aws.eks.NodeGroup
    ``resources[0].autoscaling_groups[0].name``; one per node group)."""

    def first(resources: Sequence[aws.eks.outputs.NodeGroupResource]) -> str:
        groups = resources[0].autoscaling_groups or []
        return groups[0].name or ""

    return group.node_group.apply(lambda ng: ng.resources).apply(first)


def _key_policy(region: str, ebs: bool, opts: pulumi.ResourceOptions) -> pulumi.Output[str]:
    """The stack key's policy: the account administers it through IAM (the KMS default
    policy's statement, which the control plane's role policy relies on), and, for encrypted
    root volumes, EC2 may use it for principals of this account."""
    caller = aws.get_caller_identity_output(opts=pulumi.InvokeOutputOptions(parent=opts.parent))

    def policy(account: str) -> str:
        partition = partition_of(region)
        statements: list[dict[str, object]] = [
            {
                "Sid": "EnableIAMPolicies",
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:{partition}:iam::{account}:root"},
                "Action": "kms:*",
                "Resource": "*",
            }
        ]
        if ebs:
            statements.append(
                {
                    "Sid": "AllowEBSThroughEC2ForThisAccount",
                    "Effect": "Allow",
                    "Principal": {"AWS": "*"},
                    "Action": _EBS_KEY_ACTIONS,
                    "Resource": "*",
                    "Condition": {
                        "StringEquals": {"kms:CallerAccount": account, "kms:ViaService": service_host("ec2", region)}
                    },
                }
            )
        return json.dumps({"Version": "2012-10-17", "Statement": statements})

    return caller.account_id.apply(policy)


def _assume_role(service: str) -> dict[str, object]:
    """A trust policy letting an AWS service assume the role."""
    return {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}],
    }
