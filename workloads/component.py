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
from workloads.pod import MODEL_COMPONENT, PART_OF, START_ORDER_CONFIG_MAP, checkov_skips, model_labels, pod_spec
from workloads.settings import ModelSettings, WorkloadSettings

__all__ = [
    "InferenceModel",
    "InferenceModelArgs",
    "ModelWorkloads",
    "ModelWorkloadsArgs",
    "BENCHMARK_GROUP",
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
# deployments and deployments/status, get/patch deployments/scale, list pods, port-forward).
# pods/portforward also needs `get`: the kubernetes client opens the port-forward as a
# WebSocket, an HTTP GET, which the API server authorizes as `get` and, since Kubernetes 1.35,
# also as `create` (kubernetes/kubernetes#134577, AuthorizePodWebsocketUpgradeCreatePermission).
# `patch` on deployments: before it scales anything the benchmark records the replicas it found
# on each Deployment (annotation gpu-sharing/benchmark-original-replicas, removed after its
# restore), so the next run restores them after a killed one. A patch of a Deployment could
# change its pod template (in a namespace that Pod Security lets run privileged pods), so the
# admission policy BENCHMARK_GUARD refuses this group any change of a Deployment's spec.
BENCHMARK_GROUP = "gpu-sharing-benchmark"
BENCHMARK_ROLE_RULES: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("apps", ("deployments", "deployments/status"), ("get",)),
    ("apps", ("deployments",), ("patch",)),
    ("apps", ("deployments/scale",), ("get", "patch")),
    ("", ("pods",), ("list",)),
    ("", ("pods/portforward",), ("create", "get")),
)
BENCHMARK_GUARD = "model-benchmark-metadata-only"  # a ValidatingAdmissionPolicy (cluster-wide name)
BENCHMARK_GUARD_CEL = "object.spec == oldObject.spec"  # the scale subresource is not matched: replicas still change


@dataclass(frozen=True, kw_only=True)
class InferenceModelArgs:
    model: ModelSettings
    model_plan: ModelPlan  # the model's part of the memory plan: the CUDA memory fraction TGI gets
    namespace: pulumi.Input[str]
    before: Sequence[str]  # catalog keys that start before this model, in order
    total_startup_minutes: int  # this model's and its predecessors' startup budgets
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
                    metadata=ObjectMetaArgs(labels=labels),
                    spec=pod_spec(
                        m,
                        args.model_plan,
                        before=args.before,
                        node_selector=args.node_selector,
                        tolerate_gpu_taint=args.tolerate_gpu_taint,
                        gpu_resource=args.gpu_resource,
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


class ModelWorkloads(pulumi.ComponentResource):
    """The namespace, its shared objects, and one ``InferenceModel`` per catalog entry."""

    namespace: pulumi.Output[str]
    models: dict[str, InferenceModel]

    def __init__(self, name: str, args: ModelWorkloadsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("gpu-sharing:workloads:ModelWorkloads", name, None, opts)
        s = args.settings
        child = pulumi.ResourceOptions(parent=self)
        # The memory plan, at every preview: what each TGI process will get, in start order.
        pulumi.log.info(s.memory_plan.describe(), resource=self)
        for warning in s.memory_plan.warnings:
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
        # EKS access entries) may do: the benchmark's calls, in this namespace only.
        role = k8s.rbac.v1.Role(
            f"{name}-benchmark-role",
            metadata=ObjectMetaArgs(name="model-benchmark", namespace=s.namespace, labels={"app.kubernetes.io/part-of": PART_OF}),
            rules=[
                PolicyRuleArgs(api_groups=[group], resources=list(resources), verbs=list(verbs))
                for group, resources, verbs in BENCHMARK_ROLE_RULES
            ],
            opts=in_ns,
        )
        k8s.rbac.v1.RoleBinding(
            f"{name}-benchmark-binding",
            metadata=ObjectMetaArgs(name="model-benchmark", namespace=s.namespace, labels={"app.kubernetes.io/part-of": PART_OF}),
            role_ref=RoleRefArgs(api_group="rbac.authorization.k8s.io", kind="Role", name="model-benchmark"),
            subjects=[SubjectArgs(api_group="rbac.authorization.k8s.io", kind="Group", name=BENCHMARK_GROUP)],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[ns, role]),
        )
        # Benchmark users may patch a Deployment only to annotate it (see BENCHMARK_ROLE_RULES):
        # an update of theirs that changes the spec (the pod template) is refused. Matches the
        # deployments resource only, not deployments/scale.
        guard = k8s.admissionregistration.v1.ValidatingAdmissionPolicy(
            f"{name}-benchmark-guard",
            metadata=ObjectMetaArgs(name=BENCHMARK_GUARD, labels={"app.kubernetes.io/part-of": PART_OF}),
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
            opts=pulumi.ResourceOptions(parent=self),
        )  # fmt: skip
        k8s.admissionregistration.v1.ValidatingAdmissionPolicyBinding(
            f"{name}-benchmark-guard-binding",
            metadata=ObjectMetaArgs(name=BENCHMARK_GUARD, labels={"app.kubernetes.io/part-of": PART_OF}),
            spec=ValidatingAdmissionPolicyBindingSpecArgs(
                policy_name=BENCHMARK_GUARD, validation_actions=["Deny"],
                match_resources=MatchResourcesArgs(namespace_selector=LabelSelectorArgs(
                    match_labels={"kubernetes.io/metadata.name": s.namespace})),
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[guard]),
        )  # fmt: skip

        pod_inputs.append(start_order)
        # Pods mount the start-order list and read the token: create those first.
        for_models = pulumi.ResourceOptions(parent=self, depends_on=[ns, *pod_inputs])
        ordered = list(s.models.values())
        self.models = {}
        for i, m in enumerate(ordered):
            self.models[m.key] = InferenceModel(
                f"{name}-{m.key}",
                InferenceModelArgs(
                    model=m,
                    model_plan=s.memory_plan.model(m.key),
                    namespace=s.namespace,
                    before=[p.key for p in ordered[:i]],
                    total_startup_minutes=sum(p.startup_minutes for p in ordered[: i + 1]),
                    node_selector=args.node_selector,
                    tolerate_gpu_taint=args.tolerate_gpu_taint,
                    gpu_resource=args.gpu_resource,
                    hf_token_secret=secret_name,
                ),
                for_models,
            )
        self.register_outputs({"namespace": self.namespace})
