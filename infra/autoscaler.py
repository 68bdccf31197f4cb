"""The Kubernetes Cluster Autoscaler (Helm chart, ``config.charts``) with an IAM role for its service
account (IRSA, through the cluster's OIDC provider), and the node-template tags that tell it what a
node of a group offers before one exists.

Why the Cluster Autoscaler and not Karpenter: Karpenter counts physical GPUs and does not know
time-sliced replicas (kubernetes-sigs/karpenter#729, aws/karpenter-provider-aws#3376); the
autoscaler reads what a new node of a group will offer from the group's node-template tags, so
``nvidia.com/gpu`` = sharing replicas x GPUs per node is what it plans pods against.

How it finds and sizes the groups (kubernetes/autoscaler@cluster-autoscaler-1.35.2,
``cluster-autoscaler/cloudprovider/aws/README.md``, "Auto-Discovery Setup", and ``aws_manager.go``
``buildNodeFromTemplate``):

- auto-discovery by the tags ``k8s.io/cluster-autoscaler/enabled`` and
  ``k8s.io/cluster-autoscaler/<cluster>`` on the Auto Scaling groups, which EKS puts on every
  managed node group's group itself (EKS user guide, "Simplify node lifecycle with managed node
  groups": nodes "are automatically tagged for auto-discovery by the Kubernetes Cluster
  Autoscaler"); the chart's ``autoDiscovery.tags`` default is that pair;
- with no node of a group up (scale from zero), a template node from the group's instance type
  (its single physical GPU), overridden by the group's ``k8s.io/cluster-autoscaler/node-template/
  resources/<name>``, ``.../label/<key>`` and ``.../taint/<key>`` (``value:effect``) tags, plus the
  labels, taints and resource tags EKS's DescribeNodegroup returns for a managed node group.

The ``node-template`` tags go on the Auto Scaling group: tags on an EKS managed node group are not
propagated to its Auto Scaling group (aws/containers-roadmap#608), and pulumi-eks's
ManagedNodeGroup has no input for them (pulumi/pulumi-eks#658), so ``infra.cluster`` declares one
``aws.autoscaling.Tag`` per tag on the group the node group reports.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from config.charts import CLUSTER_AUTOSCALER_CHART, AutoscalerRelease
from config.facts import EKS_TAINT_EFFECTS, partition_of
from config.instances import ACCELERATOR_LABEL

__all__ = [
    "ClusterAutoscalerArgs",
    "ClusterAutoscaler",
    "NAMESPACE",
    "SERVICE_ACCOUNT",
    "NODE_TEMPLATE",
    "node_template_tags",
    "role_trust_policy",
    "role_policy",
    "helm_values",
]

NAMESPACE = "kube-system"
SERVICE_ACCOUNT = "cluster-autoscaler"  # the chart's rbac.serviceAccount.name and fullnameOverride
NODE_TEMPLATE = "k8s.io/cluster-autoscaler/node-template"
# The tag values EKS puts on a managed node group's Auto Scaling group, which the EKS Best
# Practices Guide's least-privilege policy conditions on (aws/aws-eks-best-practices,
# content/cluster-autoscaling/index.md, "Employ least privileged access to the IAM role").
_ENABLED_TAG = "k8s.io/cluster-autoscaler/enabled"


def node_template_tags(
    labels: Mapping[str, str], taints: Sequence[tuple[str, str, str]], resources: Mapping[str, str]
) -> dict[str, str]:
    """The node-template tags of a node group: its ``labels``, its ``taints`` as (key, value, EKS
    effect) and the extended ``resources`` a node offers (``nvidia.com/gpu``: the sharing replicas
    x GPUs per node, not the physical GPUs the instance type has). The autoscaler reads them
    whenever no ready node of the group can serve as the template: at zero nodes, and while the
    only node is being replaced."""
    return {
        **{f"{NODE_TEMPLATE}/label/{k}": v for k, v in labels.items()},
        **{f"{NODE_TEMPLATE}/taint/{k}": f"{v}:{EKS_TAINT_EFFECTS[effect]}" for k, v, effect in taints},
        **{f"{NODE_TEMPLATE}/resources/{k}": v for k, v in resources.items()},
    }


def role_trust_policy(oidc_provider_arn: str, oidc_issuer: str) -> str:
    """IRSA: only the autoscaler's service account may assume the role, through the cluster's OIDC
    provider (EKS user guide, "Assign IAM roles to Kubernetes service accounts": ``<issuer>:sub``
    and ``<issuer>:aud`` conditions)."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Federated": oidc_provider_arn},
                    "Action": "sts:AssumeRoleWithWebIdentity",
                    "Condition": {
                        "StringEquals": {
                            f"{oidc_issuer}:sub": f"system:serviceaccount:{NAMESPACE}:{SERVICE_ACCOUNT}",
                            f"{oidc_issuer}:aud": "sts.amazonaws.com",
                        }
                    },
                }
            ],
        }
    )


def role_policy(cluster_name: str, region: str, account: str) -> str:
    """What the autoscaler may do: read groups, instance types and launch templates anywhere (these
    describe calls take no resource), read this cluster's managed node groups only, and change the
    size of, or terminate instances in, only the Auto Scaling groups tagged for this cluster
    (cluster-autoscaler/cloudprovider/aws/README.md, "Full Cluster Autoscaler Features Policy";
    the EKS Best Practices Guide's tag conditions)."""
    partition = partition_of(region)
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "Describe",
                    "Effect": "Allow",
                    "Action": [
                        "autoscaling:DescribeAutoScalingGroups",
                        "autoscaling:DescribeAutoScalingInstances",
                        "autoscaling:DescribeLaunchConfigurations",
                        "autoscaling:DescribeScalingActivities",
                        "autoscaling:DescribeTags",
                        "ec2:DescribeImages",
                        "ec2:DescribeInstanceTypes",
                        "ec2:DescribeLaunchTemplateVersions",
                        "ec2:GetInstanceTypesFromInstanceRequirements",
                    ],
                    "Resource": "*",
                },
                {
                    "Sid": "ThisClustersNodeGroups",
                    "Effect": "Allow",
                    "Action": "eks:DescribeNodegroup",
                    "Resource": f"arn:{partition}:eks:{region}:{account}:nodegroup/{cluster_name}/*/*",
                },
                {
                    "Sid": "ScaleThisClustersGroups",
                    "Effect": "Allow",
                    "Action": ["autoscaling:SetDesiredCapacity", "autoscaling:TerminateInstanceInAutoScalingGroup"],
                    "Resource": "*",
                    "Condition": {
                        "StringEquals": {
                            f"aws:ResourceTag/{_ENABLED_TAG}": "true",
                            f"aws:ResourceTag/k8s.io/cluster-autoscaler/{cluster_name}": "owned",
                        }
                    },
                },
            ],
        }
    )


def helm_values(cluster_name: str, region: str, release: AutoscalerRelease, role_arn: pulumi.Input[str]) -> dict[str, Any]:
    """The chart values we set (values.yaml of the chart in ``config.charts``)."""
    return {
        "cloudProvider": "aws",
        "awsRegion": region,
        "autoDiscovery": {"clusterName": cluster_name},  # tags: the default enabled + <cluster> pair
        "fullnameOverride": SERVICE_ACCOUNT,
        "image": {"tag": release.version},  # the autoscaler of the cluster's Kubernetes minor
        "rbac": {"serviceAccount": {"name": SERVICE_ACCOUNT, "annotations": {"eks.amazonaws.com/role-arn": role_arn}}},
        # Never remove a node that runs a model: TGI pods have a hostPath cache and an emptyDir /tmp,
        # which this flag (true by default, said here on purpose) makes unmovable
        # (utils/drain/drain.go HasBlockingLocalStorage). A GPU node goes once its models are
        # disabled (scale-down-unneeded-time, 10 minutes by default).
        "extraArgs": {"skip-nodes-with-local-storage": True},
        "resources": {"requests": {"cpu": "100m", "memory": "300Mi"}, "limits": {"cpu": "500m", "memory": "300Mi"}},
        "securityContext": {
            "runAsNonRoot": True, "runAsUser": 65534, "runAsGroup": 65534, "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containerSecurityContext": {
            "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]},
        },
        # Off the GPU nodes: a kube-system pod there would keep the autoscaler from removing the node.
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{"matchExpressions": [{"key": ACCELERATOR_LABEL, "operator": "DoesNotExist"}]}]
                }
            }
        },
    }  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class ClusterAutoscalerArgs:
    cluster_name: str
    region: str
    release: AutoscalerRelease
    oidc_provider_arn: pulumi.Input[str]
    oidc_issuer: pulumi.Input[str]  # the provider URL without https://
    node_groups: Sequence[pulumi.Resource]  # the release waits for them: its pod needs a node


class ClusterAutoscaler(pulumi.ComponentResource):
    """The autoscaler's IAM role and policy, and its Helm release in ``kube-system``.

    Pass the AWS and the cluster's Kubernetes providers in ``opts`` (``providers=[...]``). The
    release waits for the autoscaler's pod, so it comes after the node groups (``args.node_groups``:
    a component's ``depends_on`` is not its children's).
    """

    role_arn: pulumi.Output[str]

    def __init__(self, name: str, args: ClusterAutoscalerArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("gpu-sharing:infra:ClusterAutoscaler", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        role = aws.iam.Role(
            f"{name}-role",
            description=f"{args.cluster_name}: the Cluster Autoscaler's service account (IRSA)",
            assume_role_policy=pulumi.Output.all(arn=args.oidc_provider_arn, issuer=args.oidc_issuer).apply(
                lambda o: role_trust_policy(o["arn"], o["issuer"])
            ),
            opts=child,
        )
        caller = aws.get_caller_identity_output(opts=pulumi.InvokeOutputOptions(parent=self))
        policy = aws.iam.RolePolicy(
            f"{name}-policy",
            role=role.id,
            policy=caller.account_id.apply(lambda account: role_policy(args.cluster_name, args.region, account)),
            opts=child,
        )
        chart = CLUSTER_AUTOSCALER_CHART
        release = k8s.helm.v3.Release(
            f"{name}-release",
            name=SERVICE_ACCOUNT,
            chart="cluster-autoscaler",
            version=chart.version,
            repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=chart.repository),
            namespace=NAMESPACE,
            values=helm_values(args.cluster_name, args.region, args.release, role.arn),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[policy, *args.node_groups]),
        )
        self.role_arn = role.arn
        self.release_status = release.status
        self.register_outputs({"role_arn": self.role_arn})
