"""One model's pod, as its Deployment declares it: the TGI container and its arguments, the init
containers (the cache's owner, the wait for earlier models), volumes, probes and security
context; and what the Deployment carries besides: its labels and its checkov skips.

Pure functions of the settings and the memory plan that return Kubernetes argument objects;
``workloads.component`` declares the resources.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pulumi_kubernetes.core.v1 import (
    AffinityArgs,
    CapabilitiesArgs,
    ConfigMapVolumeSourceArgs,
    ContainerArgs,
    ContainerPortArgs,
    EmptyDirVolumeSourceArgs,
    EnvVarArgs,
    EnvVarSourceArgs,
    HostPathVolumeSourceArgs,
    HTTPGetActionArgs,
    PodAffinityArgs,
    PodAffinityTermArgs,
    PodAntiAffinityArgs,
    PodSecurityContextArgs,
    PodSpecArgs,
    ProbeArgs,
    ResourceRequirementsArgs,
    SeccompProfileArgs,
    SecretKeySelectorArgs,
    SecurityContextArgs,
    TolerationArgs,
    VolumeArgs,
    VolumeMountArgs,
)
from pulumi_kubernetes.meta.v1 import LabelSelectorArgs, LabelSelectorRequirementArgs

from workloads.contract import PORT
from workloads.planner import ModelPlan
from workloads.settings import ModelSettings

__all__ = [
    "CACHE_ROOT",
    "START_ORDER_CONFIG_MAP",
    "MODEL_COMPONENT",
    "PART_OF",
    "GPU_GROUP_LABEL",
    "WAIT_SCRIPT",
    "WAIT_COMMAND",
    "model_labels",
    "gpu_group_labels",
    "gpu_affinity",
    "tgi_args",
    "checkov_skips",
    "pod_spec",
]

# The model cache: a directory per model on the GPU node's disk (see README, "Models and
# GPU memory": why a hostPath and not a PVC).
CACHE_ROOT = "/var/lib/gpu-sharing/hf-cache"
START_ORDER_CONFIG_MAP = "model-start-order"
# The labels every model's objects carry (the NetworkPolicy and the policy pack select on them).
MODEL_COMPONENT = "model-server"
PART_OF = "gpu-sharing"
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


def model_labels(model: ModelSettings) -> dict[str, str]:
    """The recommended ``app.kubernetes.io/*`` labels of one model's objects."""
    return {
        "app.kubernetes.io/name": "text-generation-inference",
        "app.kubernetes.io/instance": model.key,
        "app.kubernetes.io/version": _image_tag(model.image),
        "app.kubernetes.io/component": MODEL_COMPONENT,
        "app.kubernetes.io/part-of": PART_OF,
        "app.kubernetes.io/managed-by": "pulumi",
    }


# The GPU group a model's pods belong to (workloads.placement): the models planned on one GPU.
GPU_GROUP_LABEL = "gpu-sharing/gpu-group"
_NODE = "kubernetes.io/hostname"  # one GPU per node: a GPU group's topology domain is the node


def gpu_group_labels(group: int | None) -> dict[str, str]:
    """The pod label of a GPU group; none on a single GPU node, where every model shares the GPU."""
    return {} if group is None else {GPU_GROUP_LABEL: str(group)}


def gpu_affinity(group: int) -> AffinityArgs:
    """Pods of one GPU group on one node, and no pod of another group there.

    Both rules are *required*: the memory plan holds only so. Models planned together were given
    cumulative fractions for one card (and the benchmark's shared phase measures them sharing it);
    models planned apart do not fit one card together, so two groups on one node would run out of
    GPU memory. A preferred rule would let the scheduler break either under pressure, silently.
    The first pod of a group schedules because it matches its own affinity term (kube-scheduler,
    interpodaffinity filtering.go: "This pod may be the first pod in a series that have affinity
    to themselves"), and the Cluster Autoscaler simulates the same filters when it adds a node
    for a group. The anti-affinity selects pods that carry the label with another value: pods
    without it (anything else in the namespace) do not repel models.
    """
    return AffinityArgs(
        pod_affinity=PodAffinityArgs(
            required_during_scheduling_ignored_during_execution=[
                PodAffinityTermArgs(
                    label_selector=LabelSelectorArgs(match_labels=gpu_group_labels(group)), topology_key=_NODE
                )
            ]
        ),
        pod_anti_affinity=PodAntiAffinityArgs(
            required_during_scheduling_ignored_during_execution=[
                PodAffinityTermArgs(
                    label_selector=LabelSelectorArgs(
                        match_expressions=[
                            LabelSelectorRequirementArgs(key=GPU_GROUP_LABEL, operator="Exists"),
                            LabelSelectorRequirementArgs(key=GPU_GROUP_LABEL, operator="NotIn", values=[str(group)]),
                        ]
                    ),
                    topology_key=_NODE,
                )
            ]
        ),
    )


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


def pod_spec(
    model: ModelSettings,
    model_plan: ModelPlan,
    *,
    before: Sequence[str],
    node_selector: Mapping[str, str],
    tolerate_gpu_taint: bool,
    gpu_resource: str,
    gpu_group: int | None,
    hf_token_secret: str | None,
) -> PodSpecArgs:
    """The pod of ``model``: ``before`` are the keys of its GPU that start before it, in order;
    ``node_selector`` and ``tolerate_gpu_taint`` place it on the GPU node group, where it asks
    for one ``gpu_resource``, and ``gpu_group`` (None on a single GPU node) beside the models of
    its GPU and away from the others; ``hf_token_secret`` names the Secret holding the Hub
    token, if any."""
    m = model
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
    if hf_token_secret:
        env.append(
            EnvVarArgs(
                name="HF_TOKEN",
                value_from=EnvVarSourceArgs(secret_key_ref=SecretKeySelectorArgs(name=hf_token_secret, key="token")),
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
    if before:
        init.append(
            ContainerArgs(
                name="wait-for-earlier-models",
                image=m.image,
                command=[*WAIT_COMMAND, "/etc/start-order/enabled", f"http://{{key}}:{PORT}/health", "10", *before],
                security_context=tight,
                resources=small,
                volume_mounts=[VolumeMountArgs(name="start-order", mount_path="/etc/start-order", read_only=True)],
            )
        )
    return PodSpecArgs(
        node_selector=dict(node_selector),
        affinity=gpu_affinity(gpu_group) if gpu_group is not None else None,
        tolerations=(
            [TolerationArgs(key="nvidia.com/gpu", operator="Exists", effect="NoSchedule")]
            if tolerate_gpu_taint
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
                args=tgi_args(m, model_plan),
                env=env,
                ports=[ContainerPortArgs(name="http", container_port=PORT, protocol="TCP")],
                resources=ResourceRequirementsArgs(
                    requests={"cpu": m.cpu, "memory": m.memory, gpu_resource: "1"},
                    limits={"cpu": m.cpu_limit, "memory": m.memory, gpu_resource: "1"},
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
