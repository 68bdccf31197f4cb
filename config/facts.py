"""Facts about things this project does not build, each with its source and the version checked.

What the program declares depends on artifacts it does not control: the TGI image, the Helm
charts it installs, the EKS-optimised AMIs, the Kubernetes versions EKS offers, AWS's partitions
and the EC2 instance types. Every such fact the code relies on lives here, once, next to where it
was read (the Helm charts in ``config.charts``, the instance types and their GPUs in
``config.instances``); the settings validate against these tables and the components read their
constants from here.
``tests/config/test_facts.py`` fails when a version the stack pins (image tag, chart version,
Kubernetes version) has no entry, so a version bump forces a look at its facts.

``CHECKED`` is the date the sources below were read. Where a fact could not be verified from
a source, its entry says so (``verified=False``) instead of pretending.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, TypeVar

__all__ = [
    "CHECKED",
    "TgiImage",
    "TGI_REPOSITORY",
    "TGI_IMAGES",
    "DEFAULT_TGI_VERSION",
    "tgi_image_of",
    "image_pinned",
    "EksKubernetesVersion",
    "EKS_KUBERNETES_VERSIONS",
    "DEFAULT_KUBERNETES_VERSION",
    "EksAmi",
    "EKS_AMIS",
    "EKS_AMI_SOURCE",
    "CPU_AMI_TYPE",
    "GPU_AMI_TYPE",
    "aws_regions",
    "partition_of",
    "service_host",
    "VPC_PRIVATE_RANGES",
    "is_private_vpc_cidr",
    "RESERVED_NAMESPACES",
    "EKS_TAINT_EFFECTS",
    "EKS_CLUSTER_ADMIN_POLICY",
]

CHECKED: Final = "2026-12-01"


_K = TypeVar("_K")
_V = TypeVar("_V")


def _mapping(items: dict[_K, _V]) -> Mapping[_K, _V]:
    return MappingProxyType(items)


# --- the TGI image ----------------------------------------------------------------------

TGI_REPOSITORY: Final = "ghcr.io/huggingface/text-generation-inference"


@dataclass(frozen=True, kw_only=True)
class TgiImage:
    """One tag of the stock TGI image, as its Dockerfile builds it."""

    version: str
    # The only uid the image works as. Since 3.1 Python is installed with `uv python install`
    # as root, under /root/.local/share/uv/python, and LD_LIBRARY_PATH points there; /root is
    # not readable by other users, so any other uid fails with "libpython3.11.so.1.0: cannot
    # open shared object file" (huggingface/text-generation-inference#3082, open; fix PR #3197
    # unmerged). Every python3 in the image is a link into /root too (measured 2026-12-01).
    runs_as_uid: int
    python_home: str
    hf_home: str  # ENV HF_HOME: the Hub cache, where a volume belongs
    default_port: int  # ENV PORT, the launcher's default; the Deployments pass --port
    # What the image's entrypoint writes outside HF_HOME: tgi-entrypoint.sh runs `ldconfig`
    # (writes /etc/ld.so.cache) and tolerates its failure ("unable to refresh ld cache, not a
    # big deal in most cases"); the launcher and its shards write caches under $HOME (triton,
    # flashinfer, outlines) and sockets under /tmp. So a read-only root filesystem works with
    # writable /tmp and HOME=/tmp. (Read from the sources, not run here: no GPU image run.)
    root_writes: tuple[str, ...]
    # Binaries the init containers may use: bash, grep and chown (the Ubuntu 22.04 base of
    # nvidia/cuda), curl (apt-get install in the Dockerfile's base stage).
    tools: tuple[str, ...]
    # For flash-attention models the router sizes the batch from the KV cache warmup found and
    # ignores a larger --max-batch-total-tokens ("is deprecated for Flash Attention models"),
    # refusing to start when one request does not fit (V3Error::NotEnoughMemory):
    # backends/v3/src/lib.rs check_max_batch_total_tokens.
    flash_ignores_max_batch_total_tokens: bool
    # Disk the image takes on a node (containerd keeps the compressed layers and the unpacked
    # snapshot). NOT verified here (no registry access): an allowance for the disk check.
    disk_gib: float
    disk_gib_verified: bool
    sources: tuple[str, ...]


def _tgi_3_3(version: str) -> TgiImage:
    """A 3.3.x tag: the Dockerfile lines below are the same in v3.3.6, v3.3.7 and main."""
    repo = f"huggingface/text-generation-inference@v{version}"
    return TgiImage(
        version=version,
        runs_as_uid=0,
        python_home="/root/.local/share/uv/python/cpython-3.11.11-linux-x86_64-gnu",
        hf_home="/data",
        default_port=80,
        root_writes=("/etc/ld.so.cache (tolerated)", "$HOME", "/tmp"),
        tools=("bash", "curl", "grep", "chown"),
        flash_ignores_max_batch_total_tokens=True,
        disk_gib=20.0,
        disk_gib_verified=False,
        sources=(
            f"{repo}:Dockerfile: base stage `ENV HF_HOME=/data ... PORT=80`, `apt-get install ... curl`, "
            "`RUN uv python install ${PYTHON_VERSION}`; final stage `ENV LD_LIBRARY_PATH=...:/root/.local/share/"
            'uv/python/cpython-3.11.11-linux-x86_64-gnu/lib/`, no USER instruction, `ENTRYPOINT ["/tgi-entrypoint.sh"]` '
            "(its CMD line is commented out)",
            f"{repo}:tgi-entrypoint.sh (ldconfig, then `exec text-generation-launcher $@`)",
            f"{repo}:backends/v3/src/lib.rs (check_max_batch_total_tokens)",
            "https://github.com/huggingface/text-generation-inference/issues/3082 (open on CHECKED)",
        ),
    )


TGI_IMAGES: Final[Mapping[str, TgiImage]] = _mapping({v: _tgi_3_3(v) for v in ("3.3.6", "3.3.7")})
DEFAULT_TGI_VERSION: Final = "3.3.6"


def image_pinned(image: str) -> bool:
    """Whether an image reference names one build: a digest, or a tag other than ``latest``
    (a registry moves ``latest``, and an untagged reference means ``latest``). The settings
    refuse other images at preview, and the policy pack's pinned-versions rule refuses them in
    what the program declares."""
    if "@sha256:" in image:
        return True
    last = image.rsplit("/", 1)[-1]
    return ":" in last and last.split(":", 1)[1] not in ("", "latest")


def tgi_image_of(image: str) -> tuple[bool, TgiImage | None]:
    """(whether ``image`` is the stock TGI repository, the facts of its tag if we have them)."""
    name, _, _digest = image.partition("@")
    repository, _, tag = name.rpartition(":") if ":" in name.rsplit("/", 1)[-1] else (name, "", "")
    if repository != TGI_REPOSITORY:
        return False, None
    return True, TGI_IMAGES.get(tag)


# --- Kubernetes versions on EKS ---------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class EksKubernetesVersion:
    version: str
    end_of_standard_support: str  # then extended support: $0.60/h instead of $0.10/h
    end_of_extended_support: str  # no new clusters after it
    source: str


_EKS_CALENDAR = (
    "awsdocs/amazon-eks-user-guide@01385604:latest/ug/versioning/kubernetes-versions.adoc "
    '("Amazon EKS Kubernetes release calendar")'
)
_EKS_CALENDAR_135 = (
    "https://docs.aws.amazon.com/eks/latest/userguide/kubernetes-versions.html, 1.35 row "
    "(the stored copy of the AWS page predates 1.35; these dates are from endoflife.date/amazon-eks "
    "and aws-samples sample-apex-skills cluster-lifecycle, verified 2026-04-24, both quoting AWS)"
)

# The versions EKS lets you create a cluster with on CHECKED: 1.31 and older passed their end of
# extended support (1.31: 2026-11-26). 1.36 is not listed: no source read here says EKS offers it.
EKS_KUBERNETES_VERSIONS: Final[Mapping[str, EksKubernetesVersion]] = _mapping(
    {
        version: EksKubernetesVersion(
            version=version, end_of_standard_support=standard, end_of_extended_support=extended, source=source
        )
        for version, standard, extended, source in (
            ("1.32", "2026-03-23", "2027-03-23", _EKS_CALENDAR),
            ("1.33", "2026-07-29", "2027-07-29", _EKS_CALENDAR),
            ("1.34", "2026-12-02", "2027-12-02", _EKS_CALENDAR),
            ("1.35", "2027-03-27", "2028-03-27", _EKS_CALENDAR_135),
        )
    }
)
DEFAULT_KUBERNETES_VERSION: Final = "1.35"  # in standard support until 2027-03-27


# --- EKS-optimised AMIs -----------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class EksAmi:
    ami_type: str  # the node group's amiType (EKS API Nodegroup.amiType)
    architecture: str
    nvidia_driver: bool
    nvidia_container_toolkit: bool
    root_device: str  # where the launch template's block device mapping must point
    sources: tuple[str, ...]


# The EKS AMI repository at the commit read (the kubelet facts in config.instances cite it too).
EKS_AMI_SOURCE: Final = "awslabs/amazon-eks-ami@81fec2e8"
_ROOT_DEVICE_SOURCE = (
    "pulumi/pulumi-eks@7bf0c1b1:nodejs/eks/nodes/nodegroup.ts createMNGCustomLaunchTemplate "
    '("/dev/xvda is the default device name for the root volume on an Amazon Linux 2 & AL2023 instance")'
)
EKS_AMIS: Final[Mapping[str, EksAmi]] = _mapping(
    {
        "AL2023_x86_64_STANDARD": EksAmi(
            ami_type="AL2023_x86_64_STANDARD",
            architecture="x86_64",
            nvidia_driver=False,
            nvidia_container_toolkit=False,
            root_device="/dev/xvda",
            sources=(_ROOT_DEVICE_SOURCE,),
        ),
        "AL2023_x86_64_NVIDIA": EksAmi(
            ami_type="AL2023_x86_64_NVIDIA",
            architecture="x86_64",
            # templates/al2023/provisioners/install-nvidia-driver.sh installs the open kernel
            # modules and `dnf -y install nvidia-container-toolkit`; nodeadm then makes `nvidia`
            # containerd's default runtime (nodeadm/internal/containerd/runtime_config_nvidia.go;
            # e2e expected config: default_runtime_name = 'nvidia'), which the GPU Operator
            # requires with a preinstalled toolkit (gpu-operator/getting-started.rst).
            nvidia_driver=True,
            nvidia_container_toolkit=True,
            root_device="/dev/xvda",
            sources=(
                f"{EKS_AMI_SOURCE}:templates/al2023/provisioners/install-nvidia-driver.sh",
                f"{EKS_AMI_SOURCE}:nodeadm/internal/containerd/runtime_config_nvidia.go",
                _ROOT_DEVICE_SOURCE,
            ),
        ),
    }
)
CPU_AMI_TYPE: Final = "AL2023_x86_64_STANDARD"
GPU_AMI_TYPE: Final = "AL2023_x86_64_NVIDIA"


# --- AWS ---------------------------------------------------------------------------------


def aws_regions() -> tuple[str, ...]:
    """The regions the AWS provider knows: pulumi-aws's ``Region`` enum (its schema's list)."""
    from pulumi_aws import Region

    return tuple(r.value for r in Region)


def partition_of(region: str) -> str:
    """The ARN partition of a region (IAM and EKS policy ARNs differ by partition)."""
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


def service_host(service: str, region: str) -> str:
    """A service's regional endpoint host, as KMS's kms:ViaService condition names it
    (``ec2.us-west-2.amazonaws.com``; China regions end in ``amazonaws.com.cn``, which was not
    verified here: the stack was only exercised against the aws partition)."""
    return f"{service}.{region}.amazonaws.com" + (".cn" if partition_of(region) == "aws-cn" else "")


# The private IPv4 ranges of RFC 1918, which the VPC user guide recommends for a VPC's CIDR
# ("VPC CIDR blocks", https://docs.aws.amazon.com/vpc/latest/userguide/vpc-cidr-blocks.html).
VPC_PRIVATE_RANGES: Final = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")


def is_private_vpc_cidr(cidr: str) -> bool:
    net = ipaddress.ip_network(cidr)
    return any(net.subnet_of(ipaddress.ip_network(r)) for r in VPC_PRIVATE_RANGES)  # type: ignore[arg-type]


# The managed access policy that makes an access entry a cluster admin
# (EKS user guide, "Review access policy permissions": AmazonEKSClusterAdminPolicy).
EKS_CLUSTER_ADMIN_POLICY: Final = "arn:{partition}:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"


# --- Kubernetes ---------------------------------------------------------------------------

# Namespaces every cluster has; "kube-" is reserved for Kubernetes system namespaces
# (kubernetes.io/docs/concepts/overview/working-with-objects/namespaces). Declaring one of them
# as a new Namespace would fight the cluster over it (and relabel its Pod Security level).
RESERVED_NAMESPACES: Final = ("default", "kube-system", "kube-public", "kube-node-lease")

# A node group taint's effect as the EKS API spells it (Taint.effect) -> as Kubernetes does.
EKS_TAINT_EFFECTS: Final[Mapping[str, str]] = MappingProxyType(
    {"NO_SCHEDULE": "NoSchedule", "NO_EXECUTE": "NoExecute", "PREFER_NO_SCHEDULE": "PreferNoSchedule"}
)
