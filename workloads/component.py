"""The models on the cluster: one ``InferenceModel`` (TGI Deployment + Service) per catalog
entry, inside a ``ModelWorkloads`` component that also owns the namespace, the optional
Hugging Face token Secret, the start-order list and the NetworkPolicy.

Pass the cluster's Kubernetes provider through ``opts`` (``providers=[provider]``);
children inherit it. Kubernetes object names are the catalog keys (deterministic, so
the benchmark finds them); Pulumi names are ``f"{name}-..."``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s
from pulumi_kubernetes.apps.v1 import DeploymentSpecArgs, DeploymentStrategyArgs
from pulumi_kubernetes.core.v1 import (
    CapabilitiesArgs,
    ConfigMapVolumeSourceArgs,
    ContainerArgs,
    ContainerPortArgs,
    EmptyDirVolumeSourceArgs,
    EnvVarArgs,
    EnvVarSourceArgs,
    HostPathVolumeSourceArgs,
    HTTPGetActionArgs,
    PodSecurityContextArgs,
    PodSpecArgs,
    PodTemplateSpecArgs,
    ProbeArgs,
    ResourceRequirementsArgs,
    SeccompProfileArgs,
    SecretKeySelectorArgs,
    SecurityContextArgs,
    ServicePortArgs,
    ServiceSpecArgs,
    TolerationArgs,
    VolumeArgs,
    VolumeMountArgs,
)
from pulumi_kubernetes.meta.v1 import LabelSelectorArgs, ObjectMetaArgs
from pulumi_kubernetes.rbac.v1 import PolicyRuleArgs, RoleRefArgs, SubjectArgs
from pulumi_kubernetes.networking.v1 import (
    IPBlockArgs,
    NetworkPolicyIngressRuleArgs,
    NetworkPolicyPeerArgs,
    NetworkPolicyPortArgs,
    NetworkPolicySpecArgs,
)

from workloads.contract import PORT
from workloads.planner import ModelPlan
from workloads.settings import ModelSettings, WorkloadSettings

__all__ = [
    "InferenceModel",
    "InferenceModelArgs",
    "ModelWorkloads",
    "ModelWorkloadsArgs",
    "CACHE_ROOT",
    "model_labels",
    "tgi_args",
    "checkov_skips",
    "WAIT_SCRIPT",
    "WAIT_COMMAND",
    "BENCHMARK_GROUP",
    "BENCHMARK_ROLE_RULES",
]

# The model cache: a directory per model on the GPU node's disk (see README, "Models and
# GPU memory": why a hostPath and not a PVC).
CACHE_ROOT = "/var/lib/gpu-sharing/hf-cache"
# Pod Security admission (kubernetes.io/docs/concepts/security/pod-security-admission):
# the hostPath model cache is outside "baseline", so the namespace says "privileged" out
# loud rather than inheriting whatever the cluster's default becomes; the audit log (on by
# default, README "Guardrails") records what "baseline" would refuse. Privileged
# containers and host namespaces are refused by the policy pack instead.
POD_SECURITY_LABELS = {
    "pod-security.kubernetes.io/enforce": "privileged",
    "pod-security.kubernetes.io/audit": "baseline",
}
START_ORDER_CONFIG_MAP = "model-start-order"
HF_TOKEN_SECRET = "hf-token"
_COMPONENT = "model-server"
_PART_OF = "gpu-sharing"
# Waits, in start order, for each earlier model that is enabled (listed in the mounted
# start-order ConfigMap, re-read each round) to answer /health through its Service.
# argv: enabled-list file, URL template with {key}, retry seconds, then the keys.
# bash and curl, not Python: the TGI image's python3 is a link into /root, which works for
# root only (huggingface/text-generation-inference#3082), while its bash (Ubuntu base) and
# curl (apt-get in the Dockerfile's base stage) work for any uid (config/facts.py TgiImage.tools).
WAIT_SCRIPT = r"""
listing=$1 url=$2 pause=$3
shift 3
for key in "$@"; do
  while grep -qx -- "$key" "$listing"; do
    if curl -fsS -m 5 -o /dev/null "${url//\{key\}/$key}"; then
      echo "$key is healthy"
      break
    fi
    echo "waiting for $key, which starts before this model, to be healthy"
    sleep "$pause"
  done
done
"""
WAIT_COMMAND = ["bash", "-c", WAIT_SCRIPT, "wait-for-earlier-models"]  # then the argv above
# The Kubernetes group benchmark users' EKS access entries map to, and what it may do in the
# models' namespace: the calls `python -m benchmark` makes (README, "Benchmark": get
# deployments and deployments/status, get/patch deployments/scale, list pods, port-forward).
# pods/portforward also needs `get`: the kubernetes client opens the port-forward as a
# WebSocket, an HTTP GET, which the API server authorizes as `get` and, since Kubernetes 1.35,
# also as `create` (kubernetes/kubernetes#134577, AuthorizePodWebsocketUpgradeCreatePermission).
BENCHMARK_GROUP = "gpu-sharing-benchmark"
BENCHMARK_ROLE_RULES: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("apps", ("deployments", "deployments/status"), ("get",)),
    ("apps", ("deployments/scale",), ("get", "patch")),
    ("", ("pods",), ("list",)),
    ("", ("pods/portforward",), ("create", "get")),
)


def model_labels(model: ModelSettings) -> dict[str, str]:
    """The recommended ``app.kubernetes.io/*`` labels of one model's objects."""
    return {
        "app.kubernetes.io/name": "text-generation-inference",
        "app.kubernetes.io/instance": model.key,
        "app.kubernetes.io/version": _image_tag(model.image),
        "app.kubernetes.io/component": _COMPONENT,
        "app.kubernetes.io/part-of": _PART_OF,
        "app.kubernetes.io/managed-by": "pulumi",
    }


def _image_tag(image: str) -> str:
    """The tag of an image reference ("unversioned" without one), as a label value."""
    name = image.split("@", 1)[0].rsplit("/", 1)[-1]
    tag = name.split(":", 1)[1] if ":" in name else "unversioned"
    return tag[:63].rstrip("-_.") or "unversioned"


def tgi_args(model: ModelSettings, model_plan: ModelPlan) -> list[str]:
    """``text-generation-launcher`` arguments (launcher/src/main.rs ``Args``); the CUDA memory
    fraction is the memory plan's (``model_plan``: this model's part of it).

    ``--hostname 0.0.0.0`` is explicit because the launcher also reads ``HOSTNAME`` from
    the environment (clap ``env``), which Kubernetes sets to the pod name: it would then
    listen on the pod IP only, and ``kubectl port-forward`` (localhost) would not reach it.
    """
    args = [
        "--model-id", model.model_id,
        "--hostname", "0.0.0.0",
        "--port", str(PORT),
        "--max-input-tokens", str(model.max_input_tokens),
        "--max-total-tokens", str(model.max_total_tokens),
        "--max-batch-prefill-tokens", str(model.max_batch_prefill_tokens),
        "--max-batch-total-tokens", str(model.max_batch_total_tokens),
        "--max-concurrent-requests", str(model.max_concurrent_requests),
        "--max-waiting-tokens", str(model.max_waiting_tokens),
        "--cuda-memory-fraction", f"{model_plan.cuda_memory_fraction:.4g}",
        "--json-output",  # structured logs
    ]  # fmt: skip
    if model.revision:
        args += ["--revision", model.revision]
    if model.quantize:
        args += ["--quantize", model.quantize]
    if model.dtype:
        args += ["--dtype", model.dtype]
    return args


def checkov_skips(model: ModelSettings, *, token: bool) -> dict[str, str]:
    """checkov's Kubernetes checks this Deployment fails by design, each with its reason,
    as ``checkov.io/skip<N>`` annotations (README, "Guardrails")."""
    skips = {
        "CKV_K8S_15": "the image is pinned by version; pull policy Always would make every model restart depend on the registry",
    }
    if model.run_as_user is None:
        # A user namespace (hostUsers: false) would make that root unprivileged on the node, but
        # GPU pods cannot use one: the NVIDIA container toolkit's createContainer hook then fails
        # (GPU Operator 26.3.1 release notes, Known Issues; nvidia-container-toolkit#648).
        root = (
            "the stock TGI image runs only as root: its Python lives under /root "
            "(huggingface/text-generation-inference#3082); set models.<key>.runAsUser with a derived non-root image"
        )
        skips["CKV_K8S_23"] = root
        skips["CKV_K8S_40"] = root
    else:
        skips["CKV_K8S_25"] = "init container cache-owner adds only CAP_CHOWN, to hand the hostPath model cache to the TGI user"
        if model.run_as_user < 10000:
            skips["CKV_K8S_40"] = (
                f"the derived image's user is uid {model.run_as_user} (models.<key>.runAsUser); "
                "a uid of 10000 or more keeps clear of the node's own users"
            )
    if "@sha256:" not in model.image:
        skips["CKV_K8S_43"] = "pinned by version tag (models.<key>.image); set an image@sha256 digest there to pin by digest"
    if token:
        skips["CKV_K8S_35"] = "TGI takes the Hub token as HF_TOKEN (its gated-model docs); the value is a secretKeyRef, never in the manifest"
    return {f"checkov.io/skip{i}": f"{check}={reason}" for i, (check, reason) in enumerate(skips.items(), 1)}


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
                    spec=_pod_spec(args),
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


def _pod_spec(args: InferenceModelArgs) -> PodSpecArgs:
    m = args.model
    # Every hardening the stock image tolerates, as root included: no privilege escalation,
    # every capability dropped (TGI needs none: its writes go to root-owned volumes, and
    # the entrypoint's ldconfig tolerates failing), a read-only root filesystem (it writes
    # only to /data, $HOME=/tmp and /dev/shm: config/facts.py TgiImage.root_writes).
    tight = SecurityContextArgs(
        allow_privilege_escalation=False,
        read_only_root_filesystem=True,
        capabilities=CapabilitiesArgs(drop=["ALL"]),
    )
    env = [
        # The launcher and its Python shard write caches under $HOME (triton, flashinfer).
        EnvVarArgs(name="HOME", value="/tmp"),
        EnvVarArgs(name="HF_HOME", value="/data"),
        EnvVarArgs(name="HUGGINGFACE_HUB_CACHE", value="/data"),
    ]
    if args.hf_token_secret:
        env.append(
            EnvVarArgs(
                name="HF_TOKEN",
                value_from=EnvVarSourceArgs(secret_key_ref=SecretKeySelectorArgs(name=args.hf_token_secret, key="token")),
            )
        )
    health = HTTPGetActionArgs(path="/health", port="http")
    small = ResourceRequirementsArgs(requests={"cpu": "50m", "memory": "64Mi"}, limits={"cpu": "500m", "memory": "128Mi"})
    init: list[ContainerArgs] = []
    uid = m.run_as_user
    if uid is not None:
        init.append(
            ContainerArgs(
                # hostPath directories are created root-owned; a non-root TGI gets its cache
                # handed over, and creates everything below it itself.
                name="cache-owner",
                image=m.image,
                command=["chown", f"{uid}:{uid}", "/data"],
                security_context=SecurityContextArgs(
                    run_as_user=0,
                    run_as_non_root=False,
                    allow_privilege_escalation=False,
                    read_only_root_filesystem=True,
                    capabilities=CapabilitiesArgs(drop=["ALL"], add=["CHOWN"]),
                ),
                resources=small,
                volume_mounts=[VolumeMountArgs(name="cache", mount_path="/data")],
            )
        )
    if args.before:
        init.append(
            ContainerArgs(
                name="wait-for-earlier-models",
                image=m.image,
                command=[*WAIT_COMMAND, "/etc/start-order/enabled", f"http://{{key}}:{PORT}/health", "10", *args.before],
                security_context=tight,
                resources=small,
                volume_mounts=[VolumeMountArgs(name="start-order", mount_path="/etc/start-order", read_only=True)],
            )
        )
    return PodSpecArgs(
        node_selector=dict(args.node_selector),
        tolerations=(
            [TolerationArgs(key="nvidia.com/gpu", operator="Exists", effect="NoSchedule")]
            if args.tolerate_gpu_taint
            else None
        ),
        automount_service_account_token=False,
        enable_service_links=False,  # TGI's launcher reads many env vars; keep Kubernetes' out
        # No uid for the stock image: it runs as it is built to, as root (config/facts.py
        # TgiImage.runs_as_uid); models.<key>.runAsUser runs a derived image as that uid.
        security_context=PodSecurityContextArgs(
            run_as_non_root=True if uid is not None else None,
            run_as_user=uid,
            run_as_group=uid,
            fs_group=uid,
            seccomp_profile=SeccompProfileArgs(type="RuntimeDefault"),
        ),
        init_containers=init,
        containers=[
            ContainerArgs(
                name="tgi",
                image=m.image,
                args=tgi_args(m, args.model_plan),
                env=env,
                ports=[ContainerPortArgs(name="http", container_port=PORT, protocol="TCP")],
                resources=ResourceRequirementsArgs(
                    requests={"cpu": m.cpu, "memory": m.memory, args.gpu_resource: "1"},
                    limits={"cpu": m.cpu_limit, "memory": m.memory, args.gpu_resource: "1"},
                ),
                security_context=tight,
                # Download + load + warmup: up to startupMinutes before the pod restarts.
                startup_probe=ProbeArgs(
                    http_get=health, period_seconds=10, timeout_seconds=5, failure_threshold=m.startup_minutes * 6
                ),
                readiness_probe=ProbeArgs(http_get=health, period_seconds=10, timeout_seconds=5, failure_threshold=3),
                # Lenient: a time-sliced GPU under load answers slowly; restart only a hung server.
                liveness_probe=ProbeArgs(http_get=health, period_seconds=30, timeout_seconds=10, failure_threshold=6),
                volume_mounts=[
                    VolumeMountArgs(name="cache", mount_path="/data"),
                    VolumeMountArgs(name="shm", mount_path="/dev/shm"),
                    VolumeMountArgs(name="tmp", mount_path="/tmp"),
                ],
            )
        ],
        volumes=[
            VolumeArgs(
                name="cache",
                host_path=HostPathVolumeSourceArgs(path=f"{CACHE_ROOT}/{m.key}", type="DirectoryOrCreate"),
            ),
            VolumeArgs(name="shm", empty_dir=EmptyDirVolumeSourceArgs(medium="Memory", size_limit=m.shm_size)),
            VolumeArgs(name="tmp", empty_dir=EmptyDirVolumeSourceArgs(size_limit="8Gi")),
            VolumeArgs(name="start-order", config_map=ConfigMapVolumeSourceArgs(name=START_ORDER_CONFIG_MAP)),
        ],
    )


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
            metadata=ObjectMetaArgs(name=s.namespace, labels={"app.kubernetes.io/part-of": _PART_OF, **POD_SECURITY_LABELS}),
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
                    match_labels={"app.kubernetes.io/component": _COMPONENT, "app.kubernetes.io/part-of": _PART_OF}
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
            metadata=ObjectMetaArgs(name="model-benchmark", namespace=s.namespace, labels={"app.kubernetes.io/part-of": _PART_OF}),
            rules=[
                PolicyRuleArgs(api_groups=[group], resources=list(resources), verbs=list(verbs))
                for group, resources, verbs in BENCHMARK_ROLE_RULES
            ],
            opts=in_ns,
        )
        k8s.rbac.v1.RoleBinding(
            f"{name}-benchmark-binding",
            metadata=ObjectMetaArgs(name="model-benchmark", namespace=s.namespace, labels={"app.kubernetes.io/part-of": _PART_OF}),
            role_ref=RoleRefArgs(api_group="rbac.authorization.k8s.io", kind="Role", name="model-benchmark"),
            subjects=[SubjectArgs(api_group="rbac.authorization.k8s.io", kind="Group", name=BENCHMARK_GROUP)],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[ns, role]),
        )

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
