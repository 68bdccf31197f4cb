"""The models on the cluster: one ``InferenceModel`` (TGI Deployment + Service) per catalog
entry, inside a ``ModelWorkloads`` component that also owns the namespace, the optional
Hugging Face token Secret, the start-order list, the NetworkPolicy, and what benchmark users
may do (a Role, and an admission policy that keeps their Deployment patches to annotations).

Pass the cluster's Kubernetes provider through ``opts`` (``providers=[provider]``);
children inherit it. Kubernetes object names are the catalog keys (deterministic, so
the benchmark finds them); Pulumi names are ``f"{name}-..."``. Each model's pod spec,
labels and checkov skips come from ``workloads.pod``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s
from pulumi_kubernetes.admissionregistration.v1 import (
    MatchConditionArgs,
    MatchResourcesArgs,
    NamedRuleWithOperationsArgs,
    ValidatingAdmissionPolicyBindingSpecArgs,
    ValidatingAdmissionPolicySpecArgs,
    ValidationArgs,
)
from pulumi_kubernetes.apps.v1 import DeploymentSpecArgs, DeploymentStrategyArgs
from pulumi_kubernetes.core.v1 import PodTemplateSpecArgs, ServicePortArgs, ServiceSpecArgs
from pulumi_kubernetes.meta.v1 import LabelSelectorArgs, ObjectMetaArgs
from pulumi_kubernetes.networking.v1 import (
    IPBlockArgs,
    NetworkPolicyIngressRuleArgs,
    NetworkPolicyPeerArgs,
    NetworkPolicyPortArgs,
    NetworkPolicySpecArgs,
)
from pulumi_kubernetes.rbac.v1 import PolicyRuleArgs, RoleRefArgs, SubjectArgs

from workloads.contract import PORT
from workloads.planner import ModelPlan
from workloads.pod import (
    MODEL_COMPONENT,
    PART_OF,
    START_ORDER_CONFIG_MAP,
    checkov_skips,
    gpu_group_labels,
    model_labels,
    pod_spec,
)
from workloads.settings import ModelSettings, WorkloadSettings

__all__ = [
    "InferenceModel",
    "InferenceModelArgs",
    "ModelWorkloads",
    "ModelWorkloadsArgs",
    "BENCHMARK_GROUP",
    "BENCHMARK_NODE_RULES",
    "BENCHMARK_OPERATOR_ROLE_RULES",
    "BENCHMARK_ROLE",
    "BENCHMARK_GUARD",
    "BENCHMARK_GUARD_CEL",
    "BENCHMARK_ROLE_RULES",
]

# Pod Security admission (kubernetes.io/docs/concepts/security/pod-security-admission):
# the hostPath model cache is outside "baseline", so the namespace says "privileged" out
# loud rather than inheriting whatever the cluster's default becomes; the audit log (on by
# default, README "Guardrails") records what "baseline" would refuse. Privileged
# containers and host namespaces are refused by the policy pack instead.
POD_SECURITY_LABELS = {
    "pod-security.kubernetes.io/enforce": "privileged",
    "pod-security.kubernetes.io/audit": "baseline",
}
HF_TOKEN_SECRET = "hf-token"
# The Kubernetes group benchmark users' EKS access entries map to, and what it may do in the
# models' namespace: the calls `python -m benchmark` makes (README, "Benchmark": get
# deployments and deployments/status, get/patch deployments/scale, list pods, port-forward;
# `doctor` also reads the pods' logs and events).
# pods/portforward also needs `get`: the kubernetes client opens the port-forward as a
# WebSocket, an HTTP GET, which the API server authorizes as `get` and, since Kubernetes 1.35,
# also as `create` (kubernetes/kubernetes#134577, AuthorizePodWebsocketUpgradeCreatePermission).
# `patch` on deployments: before it scales anything the benchmark records the replicas it found
# on each Deployment (annotation gpu-sharing/benchmark-original-replicas, removed after its
# restore), so the next run restores them after a killed one. A patch of a Deployment could
# change its pod template (in a namespace that Pod Security lets run privileged pods), so the
# admission policy BENCHMARK_GUARD refuses this group any change of a Deployment's spec.
BENCHMARK_GROUP = "gpu-sharing-benchmark"
BENCHMARK_ROLE = "model-benchmark"
BENCHMARK_ROLE_RULES: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("apps", ("deployments", "deployments/status"), ("get",)),
    ("apps", ("deployments",), ("patch",)),
    ("apps", ("deployments/scale",), ("get", "patch")),
    ("", ("pods",), ("list",)),
    ("", ("pods/portforward",), ("create", "get")),
    ("", ("pods/log",), ("get",)),
    ("", ("events",), ("list",)),
)
# `doctor` (README, "Benchmark"), read-only: the GPU Operator's pods in its namespace, and the
# nodes, which are cluster-scoped (a ClusterRole, bound to the group, with `list` on nodes only).
# Who the caller is (a SelfSubjectReview) needs no grant: Kubernetes' system:basic-user
# ClusterRole lets every authenticated user create one (kubernetes/kubernetes#116274).
BENCHMARK_OPERATOR_ROLE_RULES: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (("", ("pods",), ("list",)),)
BENCHMARK_NODE_RULES: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (("", ("nodes",), ("list",)),)
BENCHMARK_GUARD = "model-benchmark-metadata-only"  # a ValidatingAdmissionPolicy (cluster-wide name)
BENCHMARK_GUARD_CEL = "object.spec == oldObject.spec"  # the scale subresource is not matched: replicas still change


@dataclass(frozen=True, kw_only=True)
class InferenceModelArgs:
    model: ModelSettings
    model_plan: ModelPlan  # the model's part of the memory plan: the CUDA memory fraction TGI gets
    namespace: pulumi.Input[str]
    before: Sequence[str]  # keys of its GPU's models that start before this model, in order
    total_startup_minutes: int  # this model's and its predecessors' startup budgets
    # Its GPU group, for the pod affinity that keeps a GPU's models together and the groups
    # apart; None when the GPU node group holds one node (one GPU: nothing to keep apart).
    gpu_group: int | None
    node_selector: Mapping[str, str]
    tolerate_gpu_taint: bool
    gpu_resource: str  # the extended resource one GPU share is advertised as
    hf_token_secret: str | None  # Secret name holding ``token``, or None


class InferenceModel(pulumi.ComponentResource):
    """One TGI model server: a Deployment (0 or 1 replica) and its ClusterIP Service."""

    deployment_name: pulumi.Output[str]
    service_name: pulumi.Output[str]

    def __init__(self, name: str, args: InferenceModelArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("gpu-sharing:workloads:InferenceModel", name, None, opts)
        m = args.model
        labels = model_labels(m)
        selector = {k: labels[k] for k in ("app.kubernetes.io/name", "app.kubernetes.io/instance")}
        child = pulumi.ResourceOptions(parent=self)

        deployment = k8s.apps.v1.Deployment(
            f"{name}-deployment",
            metadata=ObjectMetaArgs(
                name=m.key,
                namespace=args.namespace,
                labels=labels,
                annotations={
                    # Pulumi waits for the rollout: the model and those before it may need
                    # to download and warm up first.
                    "pulumi.com/timeoutSeconds": str(args.total_startup_minutes * 60),
                    "gpu-sharing/model-id": m.model_id,
                    "gpu-sharing/start-order": str(m.start_order),
                    **checkov_skips(m, token=args.hf_token_secret is not None),
                },
            ),
            spec=DeploymentSpecArgs(
                replicas=m.replicas,
                # A surge pod would be a second TGI process on the shared GPU, breaking the memory plan.
                strategy=DeploymentStrategyArgs(type="Recreate"),
                revision_history_limit=3,
                selector=LabelSelectorArgs(match_labels=selector),
                template=PodTemplateSpecArgs(
                    metadata=ObjectMetaArgs(labels={**labels, **gpu_group_labels(args.gpu_group)}),
                    spec=pod_spec(
                        m,
                        args.model_plan,
                        before=args.before,
                        node_selector=args.node_selector,
                        tolerate_gpu_taint=args.tolerate_gpu_taint,
                        gpu_resource=args.gpu_resource,
                        gpu_group=args.gpu_group,
                        hf_token_secret=args.hf_token_secret,
                    ),
                ),
            ),
            opts=child,
        )
        service = k8s.core.v1.Service(
            f"{name}-service",
            metadata=ObjectMetaArgs(
                name=m.key,
                namespace=args.namespace,
                labels=labels,
                # A disabled model has no pods: don't wait for endpoints that will not come.
                annotations={"pulumi.com/skipAwait": "true"},
            ),
            spec=ServiceSpecArgs(
                type="ClusterIP",
                selector=selector,
                ports=[ServicePortArgs(name="http", port=PORT, target_port="http", protocol="TCP")],
            ),
            opts=child,
        )
        self.deployment_name = deployment.metadata.apply(lambda md: md.name or m.key)
        self.service_name = service.metadata.apply(lambda md: md.name or m.key)
        self.register_outputs({"deployment_name": self.deployment_name, "service_name": self.service_name})


@dataclass(frozen=True, kw_only=True)
class ModelWorkloadsArgs:
    settings: WorkloadSettings
    node_selector: Mapping[str, str]  # the GPU node group's labels
    tolerate_gpu_taint: bool  # the GPU node group is tainted nvidia.com/gpu=true:NoSchedule
    gpu_resource: str  # nvidia.com/gpu, or nvidia.com/gpu.shared under renameByDefault
    operator_namespace: str  # the GPU Operator's namespace: benchmark users may list its pods (doctor)


class ModelWorkloads(pulumi.ComponentResource):
    """The namespace, its shared objects, and one ``InferenceModel`` per catalog entry."""

    namespace: pulumi.Output[str]
    models: dict[str, InferenceModel]

    def __init__(self, name: str, args: ModelWorkloadsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("gpu-sharing:workloads:ModelWorkloads", name, None, opts)
        s = args.settings
        child = pulumi.ResourceOptions(parent=self)
        # The memory plan, at every preview: each GPU's models and what each TGI process will
        # get, in start order.
        pulumi.log.info(s.placement.describe(), resource=self)
        for warning in s.placement.warnings:
            pulumi.log.warn(warning, resource=self)

        ns = k8s.core.v1.Namespace(
            f"{name}-namespace",
            metadata=ObjectMetaArgs(name=s.namespace, labels={"app.kubernetes.io/part-of": PART_OF, **POD_SECURITY_LABELS}),
            opts=child,
        )
        in_ns = pulumi.ResourceOptions(parent=self, depends_on=[ns])
        self.namespace = ns.metadata.apply(lambda md: md.name or s.namespace)

        secret_name: str | None = None
        pod_inputs: list[pulumi.Resource] = []
        if s.hf_token is not None:
            secret = k8s.core.v1.Secret(
                f"{name}-hf-token",
                metadata=ObjectMetaArgs(name=HF_TOKEN_SECRET, namespace=s.namespace),
                type="Opaque",
                string_data={"token": pulumi.Output.secret(s.hf_token)},
                opts=in_ns,
            )
            secret_name = HF_TOKEN_SECRET
            pod_inputs.append(secret)

        # Which models are enabled, in start order: the wait init containers read it, so a
        # toggle changes this list and that model's replicas, not the other Deployments.
        start_order = k8s.core.v1.ConfigMap(
            f"{name}-start-order",
            metadata=ObjectMetaArgs(name=START_ORDER_CONFIG_MAP, namespace=s.namespace),
            data={"enabled": "".join(f"{m.key}\n" for m in s.enabled_models)},
            opts=in_ns,
        )

        peers = [NetworkPolicyPeerArgs(pod_selector=LabelSelectorArgs())] + [
            NetworkPolicyPeerArgs(ip_block=IPBlockArgs(cidr=c)) for c in s.model_access_cidrs
        ]
        k8s.networking.v1.NetworkPolicy(
            f"{name}-ingress",
            metadata=ObjectMetaArgs(name="model-servers-ingress", namespace=s.namespace),
            spec=NetworkPolicySpecArgs(
                pod_selector=LabelSelectorArgs(
                    match_labels={"app.kubernetes.io/component": MODEL_COMPONENT, "app.kubernetes.io/part-of": PART_OF}
                ),
                policy_types=["Ingress"],
                ingress=[NetworkPolicyIngressRuleArgs(from_=peers, ports=[NetworkPolicyPortArgs(port=PORT, protocol="TCP")])],
            ),
            opts=in_ns,
        )

        # What benchmark users (gpu-sharing:benchmarkUsers, mapped to BENCHMARK_GROUP by their
        # EKS access entries) may do: the benchmark's calls in this namespace, and doctor's reads
        # of the GPU Operator's pods and of the nodes.
        _benchmark_access(name, s.namespace, args.operator_namespace, pulumi.ResourceOptions(parent=self, depends_on=[ns]))
        _benchmark_guard(name, s.namespace, pulumi.ResourceOptions(parent=self))

        pod_inputs.append(start_order)
        # Pods mount the start-order list and read the token: create those first.
        for_models = pulumi.ResourceOptions(parent=self, depends_on=[ns, *pod_inputs])
        self.models = {}
        for m in s.models.values():
            # The start order is per GPU: a model waits for the earlier models of its own GPU.
            group = s.placement.group(m.key)
            mates = s.placement.keys(group)
            before = mates[: mates.index(m.key)]
            self.models[m.key] = InferenceModel(
                f"{name}-{m.key}",
                InferenceModelArgs(
                    model=m,
                    model_plan=s.placement.model(m.key),
                    namespace=s.namespace,
                    before=before,
                    total_startup_minutes=sum(s.models[k].startup_minutes for k in [*before, m.key]),
                    gpu_group=group if s.max_gpus > 1 else None,
                    node_selector=args.node_selector,
                    tolerate_gpu_taint=args.tolerate_gpu_taint,
                    gpu_resource=args.gpu_resource,
                    hf_token_secret=secret_name,
                ),
                for_models,
            )
        self.register_outputs({"namespace": self.namespace})


def _rules(table: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...]) -> list[PolicyRuleArgs]:
    return [PolicyRuleArgs(api_groups=[group], resources=list(resources), verbs=list(verbs)) for group, resources, verbs in table]


def _benchmark_access(name: str, namespace: str, operator_namespace: str, opts: pulumi.ResourceOptions) -> None:
    """Role ``model-benchmark`` in the models' and in the GPU Operator's namespace, and a ClusterRole
    for the nodes, each bound to ``BENCHMARK_GROUP``."""
    labels = {"app.kubernetes.io/part-of": PART_OF}
    group = [SubjectArgs(api_group="rbac.authorization.k8s.io", kind="Group", name=BENCHMARK_GROUP)]
    for suffix, ns, table in (("benchmark", namespace, BENCHMARK_ROLE_RULES),
                              ("benchmark-operator", operator_namespace, BENCHMARK_OPERATOR_ROLE_RULES)):  # fmt: skip
        role = k8s.rbac.v1.Role(
            f"{name}-{suffix}-role",
            metadata=ObjectMetaArgs(name=BENCHMARK_ROLE, namespace=ns, labels=labels),
            rules=_rules(table),
            opts=opts,
        )
        k8s.rbac.v1.RoleBinding(
            f"{name}-{suffix}-binding",
            metadata=ObjectMetaArgs(name=BENCHMARK_ROLE, namespace=ns, labels=labels),
            role_ref=RoleRefArgs(api_group="rbac.authorization.k8s.io", kind="Role", name=BENCHMARK_ROLE),
            subjects=group,
            opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[role])),
        )
    # Cluster-scoped, so named after the models' namespace: two stacks in one cluster do not collide.
    nodes = f"{BENCHMARK_ROLE}-nodes-{namespace}"
    cluster_role = k8s.rbac.v1.ClusterRole(
        f"{name}-benchmark-nodes-role",
        metadata=ObjectMetaArgs(name=nodes, labels=labels),
        rules=_rules(BENCHMARK_NODE_RULES),
        opts=opts,
    )
    k8s.rbac.v1.ClusterRoleBinding(
        f"{name}-benchmark-nodes-binding",
        metadata=ObjectMetaArgs(name=nodes, labels=labels),
        role_ref=RoleRefArgs(api_group="rbac.authorization.k8s.io", kind="ClusterRole", name=nodes),
        subjects=group,
        opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[cluster_role])),
    )


def _benchmark_guard(name: str, namespace: str, opts: pulumi.ResourceOptions) -> None:
    """A ValidatingAdmissionPolicy: ``BENCHMARK_GROUP`` may patch a Deployment in ``namespace``
    only to annotate it (the benchmark's record of the original replicas), not change its spec.
    Cluster-scoped, so named after the models' namespace: two stacks in one cluster do not collide."""
    policy = f"{BENCHMARK_GUARD}-{namespace}"
    # Benchmark users may patch a Deployment only to annotate it (see BENCHMARK_ROLE_RULES):
    # an update of theirs that changes the spec (the pod template) is refused. Matches the
    # deployments resource only, not deployments/scale.
    guard = k8s.admissionregistration.v1.ValidatingAdmissionPolicy(
        f"{name}-benchmark-guard",
        metadata=ObjectMetaArgs(name=policy, labels={"app.kubernetes.io/part-of": PART_OF}),
        spec=ValidatingAdmissionPolicySpecArgs(
            failure_policy="Fail",
            match_constraints=MatchResourcesArgs(resource_rules=[NamedRuleWithOperationsArgs(
                api_groups=["apps"], api_versions=["v1"], operations=["UPDATE"], resources=["deployments"])]),
            match_conditions=[MatchConditionArgs(
                name="benchmark-users", expression=f"request.userInfo.groups.exists(g, g == '{BENCHMARK_GROUP}')")],
            validations=[ValidationArgs(
                expression=BENCHMARK_GUARD_CEL, reason="Forbidden",
                message=f"group {BENCHMARK_GROUP} may annotate a Deployment (the benchmark's record of its "
                        "replicas), not change its spec")],
        ),
        opts=opts,
    )  # fmt: skip
    k8s.admissionregistration.v1.ValidatingAdmissionPolicyBinding(
        f"{name}-benchmark-guard-binding",
        metadata=ObjectMetaArgs(name=policy, labels={"app.kubernetes.io/part-of": PART_OF}),
        spec=ValidatingAdmissionPolicyBindingSpecArgs(
            policy_name=policy, validation_actions=["Deny"],
            match_resources=MatchResourcesArgs(namespace_selector=LabelSelectorArgs(
                match_labels={"kubernetes.io/metadata.name": namespace})),
        ),
        opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[guard])),
    )  # fmt: skip
