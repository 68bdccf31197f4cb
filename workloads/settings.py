"""The workloads' part of the stack settings: namespace, model catalog, access.

Read by ``config.settings.load_settings`` from the same root config section, so the
whole stack config is validated in one pass before any resource is declared. Every
model of the catalog (enabled or not) is placed on a GPU and planned there here
(``workloads.placement``), so a memory plan TGI would crash on is a ``ConfigError`` at
``pulumi preview``, with the numbers.

Catalog entry keys (``gpu-sharing:models.<key>.*``) and defaults: see ``_model``; the
README's "Models and GPU memory" section lists them for users.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Final

from config.facts import DEFAULT_TGI_VERSION, TGI_IMAGES, TGI_REPOSITORY, image_pinned, tgi_image_of
from config.validation import MISSING, ConfigError, Section
from workloads.catalog import DTYPE_BYTES, DTYPE_CHOICES, GATED_MODELS, KNOWN_MODELS, QUANTIZE_CHOICES, ModelFacts
from workloads.placement import Candidate, GpuNode, Placement, place
from workloads.planner import ModelRequest, PlanError

__all__ = [
    "ModelSettings",
    "WorkloadSettings",
    "load_workloads",
    "DEFAULT_IMAGE",
    "REFERENCE_MODELS",
    "cpu_millis",
    "memory_bytes",
    "checkpoint_bytes",
]

# The stock TGI image, at a version whose facts config/facts.py records.
DEFAULT_IMAGE: Final = f"{TGI_REPOSITORY}:{DEFAULT_TGI_VERSION}"

# Kubernetes resource quantities (apimachinery resource.Quantity, the forms we accept).
_CPU_RE = re.compile(r"[0-9]+(\.[0-9]+)?|[0-9]+m")
_MEMORY_RE = re.compile(r"[0-9]+(Ki|Mi|Gi|Ti|k|M|G|T)?")
_MEMORY_UNITS: Final = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
# A Hub model id: "owner/name" (huggingface_hub validate_repo_id: letters, digits, '-', '_', '.').
_MODEL_ID_RE = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
_IMAGE_RE = re.compile(r"[a-z0-9.-]+(:[0-9]+)?(/[a-z0-9._-]+)+(:[\w.-]+)?(@sha256:[0-9a-f]{64})?")
_AUTO: Final = "auto"

# The catalog when the stack config has none: the reference pair, planned by 'auto'.
REFERENCE_MODELS: Final[Mapping[str, Mapping[str, object]]] = MappingProxyType(
    {
        "phi35-mini": {"modelId": "microsoft/Phi-3.5-mini-instruct", "startOrder": 1},
        "deepseek-r1-8b": {"modelId": "deepseek-ai/DeepSeek-R1-Distill-Llama-8B", "startOrder": 2},
    }
)


@dataclass(frozen=True, kw_only=True)
class ModelSettings:
    """One catalog entry: a TGI Deployment and its Service, named after ``key``."""

    key: str
    enabled: bool
    model_id: str
    revision: str | None
    image: str
    image_disk_gib: float  # what the image takes on the node's disk (config/facts.py)
    # The uid TGI runs as: None runs the image as built (the stock image: root, the only uid
    # it works as; huggingface/text-generation-inference#3082). A derived non-root image sets it.
    run_as_user: int | None
    facts: ModelFacts
    start_order: int  # 1-based position in the start order (the memory plan's order)
    gpu_group: int | None  # models.<key>.gpuGroup: the GPU it is pinned to, or None (the placement chooses)
    max_input_tokens: int
    max_total_tokens: int
    max_batch_prefill_tokens: int
    max_batch_total_tokens: int
    max_concurrent_requests: int
    max_waiting_tokens: int
    # As configured: a number, or None for 'auto'. What TGI is started with is the memory plan's
    # (placement.model(key).cuda_memory_fraction): this number, or the one the planner chose.
    cuda_memory_fraction: float | None
    quantize: str | None
    dtype: str | None  # --dtype; None lets TGI use the checkpoint's
    cpu: str
    cpu_limit: str
    memory: str  # request and limit
    shm_size: str
    startup_minutes: int  # how long download + load + warmup may take before the pod restarts

    @property
    def replicas(self) -> int:
        return 1 if self.enabled else 0


@dataclass(frozen=True, kw_only=True)
class WorkloadSettings:
    namespace: str
    models: Mapping[str, ModelSettings]  # in start order
    # Every catalog model, enabled or not, on a GPU, each GPU's models planned in start order.
    placement: Placement
    max_gpus: int  # the GPUs the GPU node group can hold: gpuNodes.maxSize x GPUs per node
    hf_token: str | None = field(repr=False)  # a Pulumi secret config value; never print it
    model_access_cidrs: tuple[str, ...]

    @property
    def enabled_models(self) -> list[ModelSettings]:
        return [m for m in self.models.values() if m.enabled]


def load_workloads(root: Section, *, node: GpuNode, max_gpus: int) -> WorkloadSettings:
    """Read the workload keys of the project's root config section.

    ``node`` is what one GPU node offers (its card, the pods that share it, its allocatable CPU
    and memory); ``max_gpus`` how many GPUs the GPU node group can hold (GPUs per node x the
    node group's max size).
    """
    namespace = root.namespace("namespace", "llm-testing")
    token = root.raw("hfToken", None)
    if token is not None and (not isinstance(token, str) or not token.strip()):
        # Never echo a secret: name the key and what is wrong only.
        raise ConfigError(root.key("hfToken"), "[secret]", "a non-empty string (pulumi config set --secret hfToken ...)")
    cidrs = root.cidr_list("modelAccessCidrs", [])

    catalog = root.section("models", REFERENCE_MODELS)
    if not catalog.keys():
        raise ConfigError(catalog.path, {}, "at least one model entry")
    entries = [_model(catalog, key, max_gpus) for key in catalog.keys()]
    catalog.done()

    # Start order: models with an explicit startOrder first, then the rest by key; no ties.
    seen_orders: dict[int, str] = {}
    for order, m in entries:
        if order is not None:
            if order in seen_orders:
                raise ConfigError(
                    f"{catalog.key(m.key)}.startOrder",
                    order,
                    f"a start order no other model has (taken by {seen_orders[order]!r})",
                )
            seen_orders[order] = m.key
    entries.sort(key=lambda e: (e[0] is None, e[0] or 0, e[1].key))
    ordered = [replace(m, start_order=i) for i, (_, m) in enumerate(entries, start=1)]

    seen_ids: dict[str, str] = {}
    for m in ordered:
        if m.model_id in seen_ids:
            raise ConfigError(
                f"{catalog.key(m.key)}.modelId",
                m.model_id,
                f"a model not already in the catalog (key {seen_ids[m.model_id]!r} serves it)",
            )
        seen_ids[m.model_id] = m.key

    enabled = [m.key for m in ordered if m.enabled]
    gpu_slots = node.slots * max_gpus
    if len(enabled) > gpu_slots:
        raise ConfigError(
            catalog.path,
            f"{len(enabled)} enabled models ({', '.join(enabled)})",
            f"at most {gpu_slots}: the GPU node group holds {gpu_slots} pods asking for one nvidia.com/gpu "
            "(gpuSharing.replicas x GPUs per node x gpuNodes.maxSize)",
        )

    # Every catalog model is placed and planned, enabled or not: toggling one then changes only
    # its replicas, and any subset started in this order gets at least its planned KV cache.
    try:
        placement = place(node, [_candidate(m) for m in ordered])
    except PlanError as e:
        raise ConfigError(f"{catalog.key(e.key)}.{e.setting}", e.value, str(e)) from e

    if token is None:
        gated = [m for m in ordered if m.enabled and m.model_id in GATED_MODELS]
        if gated:
            raise ConfigError(
                root.key("hfToken"),
                MISSING,
                "a Hugging Face token with access to the gated model(s) "
                + ", ".join(f"{m.model_id} (models.{m.key})" for m in gated)
                + ": pulumi config set --secret hfToken hf_... (without one the pod fails at download)",
            )

    return WorkloadSettings(
        namespace=namespace,
        models=MappingProxyType({m.key: m for m in ordered}),
        placement=placement,
        max_gpus=max_gpus,
        hf_token=token,
        model_access_cidrs=cidrs,
    )


def _candidate(m: ModelSettings) -> Candidate:
    """A model as the placement sees it."""
    request = ModelRequest(
        key=m.key,
        facts=m.facts,
        quantize=m.quantize,
        dtype=m.dtype,
        max_input_tokens=m.max_input_tokens,
        max_total_tokens=m.max_total_tokens,
        max_batch_prefill_tokens=m.max_batch_prefill_tokens,
        max_batch_total_tokens=m.max_batch_total_tokens,
        cuda_memory_fraction=m.cuda_memory_fraction,
    )
    return Candidate(
        request=request,
        pinned=m.gpu_group,
        cpu=m.cpu,
        cpu_millis=cpu_millis(m.cpu),
        memory=m.memory,
        memory_bytes=memory_bytes(m.memory),
    )


def _model(catalog: Section, key: str, max_gpus: int) -> tuple[int | None, ModelSettings]:
    """One catalog entry, validated on its own: (explicit startOrder or None, settings).

    ``start_order`` is filled in once the whole catalog is read.
    """
    if len(key) > 50 or not re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", key):
        # The key names the Deployment, Service and their labels (DNS labels, <= 63 with suffixes).
        raise ConfigError(
            catalog.key(key), key, "a model key of at most 50 lowercase letters, digits and '-', starting with a letter"
        )
    s = catalog.section(key)
    enabled = s.bool("enabled", True)
    model_id = s.str("modelId", pattern=_MODEL_ID_RE, what="a Hugging Face model id such as microsoft/Phi-3.5-mini-instruct")
    revision = s.str("revision", what="a Hub revision (branch, tag or commit)") if s.has("revision") else None
    image, image_disk_gib, run_as_user = _image(s)
    order = s.int("startOrder", min=1) if s.has("startOrder") else None
    gpu_group = s.int("gpuGroup", min=1) if s.has("gpuGroup") else None
    if gpu_group is not None and gpu_group > max_gpus:
        raise ConfigError(
            s.key("gpuGroup"),
            gpu_group,
            f"an integer from 1 to {max_gpus}: the GPUs the GPU node group can hold (gpuNodes.maxSize x GPUs per node)",
        )

    max_input = s.int("maxInputTokens", 256, min=1)
    max_total = s.int("maxTotalTokens", 512, min=2)
    if max_total <= max_input:
        raise ConfigError(s.key("maxTotalTokens"), max_total, f"more than maxInputTokens ({max_input})")
    prefill = s.int("maxBatchPrefillTokens", 4096, min=1)
    if prefill < max_input:
        # TGI's launcher refuses it: max_batch_prefill_tokens must be >= max_input_tokens.
        raise ConfigError(s.key("maxBatchPrefillTokens"), prefill, f"at least maxInputTokens ({max_input})")
    batch_total = s.int("maxBatchTotalTokens", 8192, min=1)
    if batch_total < max(max_total, prefill):
        # launcher/src/main.rs checks both against --max-batch-total-tokens.
        raise ConfigError(
            s.key("maxBatchTotalTokens"),
            batch_total,
            f"at least maxTotalTokens ({max_total}) and maxBatchPrefillTokens ({prefill})",
        )

    fraction = None if s.raw("cudaMemoryFraction", _AUTO) == _AUTO else _fraction(s)

    quantize = s.str("quantize", choices=QUANTIZE_CHOICES) if s.has("quantize") else None
    dtype = s.str("dtype", choices=DTYPE_CHOICES) if s.has("dtype") else None
    if quantize is not None and dtype is not None:
        # launcher/src/main.rs: "--dtype ... cannot be used with `--quantize`".
        raise ConfigError(s.key("dtype"), dtype, f"unset when quantize is set (TGI refuses --dtype with --quantize {quantize})")

    known = KNOWN_MODELS.get(model_id)
    if s.has("architecture"):
        facts = _facts(s.section("architecture"))
    elif known is not None:
        facts = known
    else:
        raise ConfigError(
            s.key("architecture"),
            MISSING,
            f"the architecture facts of {model_id!r}, which is not a known model "
            "(parameters, layers, kvHeads, headDim, hiddenSize, intermediateSize, vocabSize, tiedEmbeddings, dtype "
            "from its config.json); known models: " + ", ".join(sorted(KNOWN_MODELS)),
        )

    cpu = s.str("cpu", "2", pattern=_CPU_RE, what="a Kubernetes CPU quantity such as 2 or 1500m")
    if cpu_millis(cpu) < 1:
        raise ConfigError(s.key("cpu"), cpu, "a CPU quantity above zero, such as 2 or 1500m")
    cpu_limit = s.str("cpuLimit", "4", pattern=_CPU_RE, what="a Kubernetes CPU quantity such as 4 or 3500m")
    if cpu_millis(cpu_limit) < cpu_millis(cpu):
        raise ConfigError(s.key("cpuLimit"), cpu_limit, f"at least cpu ({cpu})")
    memory = s.str("memory", "24Gi", pattern=_MEMORY_RE, what="a Kubernetes memory quantity such as 24Gi")
    if memory_bytes(memory) < 2**30:
        raise ConfigError(s.key("memory"), memory, "a memory quantity of at least 1Gi, such as 24Gi")
    shm_size = s.str("shmSize", "1Gi", pattern=_MEMORY_RE, what="a Kubernetes memory quantity such as 1Gi")
    if not 0 < memory_bytes(shm_size) < memory_bytes(memory):
        # /dev/shm is a memory-backed emptyDir: what TGI writes there counts against the
        # container's memory limit (Kubernetes docs, Volumes: emptyDir "medium: Memory").
        raise ConfigError(s.key("shmSize"), shm_size, f"a memory quantity above zero and below memory ({memory})")
    settings = ModelSettings(
        key=key,
        enabled=enabled,
        model_id=model_id,
        revision=revision,
        image=image,
        image_disk_gib=image_disk_gib,
        run_as_user=run_as_user,
        facts=facts,
        start_order=0,
        gpu_group=gpu_group,
        max_input_tokens=max_input,
        max_total_tokens=max_total,
        max_batch_prefill_tokens=prefill,
        max_batch_total_tokens=batch_total,
        max_concurrent_requests=s.int("maxConcurrentRequests", 16, min=1),
        max_waiting_tokens=s.int("maxWaitingTokens", 5, min=0),
        cuda_memory_fraction=fraction,
        quantize=quantize,
        dtype=dtype,
        cpu=cpu,
        cpu_limit=cpu_limit,
        memory=memory,
        shm_size=shm_size,
        startup_minutes=s.int("startupMinutes", 30, min=2, max=180),
    )
    s.done()
    return order, settings


def _fraction(s: Section) -> float:
    value = s.raw("cudaMemoryFraction")
    allowed = "'auto' or a number greater than 0 and at most 1"
    try:
        return s.float("cudaMemoryFraction", min=0.0, min_exclusive=True, max=1.0)
    except ConfigError:
        raise ConfigError(s.key("cudaMemoryFraction"), value, allowed) from None


def _facts(a: Section) -> ModelFacts:
    facts = ModelFacts(
        parameters=a.int("parameters", min=1),
        layers=a.int("layers", min=1),
        kv_heads=a.int("kvHeads", min=1),
        head_dim=a.int("headDim", min=1),
        hidden_size=a.int("hiddenSize", min=1),
        intermediate_size=a.int("intermediateSize", min=1),
        vocab_size=a.int("vocabSize", min=1),
        tied_embeddings=a.bool("tiedEmbeddings", False),
        dtype=a.str("dtype", "bfloat16", choices=DTYPE_CHOICES),
    )
    a.done()
    return facts


def _image(s: Section) -> tuple[str, float, int | None]:
    """(image, its disk footprint in GiB, the uid to run it as or None for the image's own)."""
    image = s.str("image", DEFAULT_IMAGE, pattern=_IMAGE_RE, what="a container image reference such as " + DEFAULT_IMAGE)
    if not image_pinned(image):
        # The same test the policy pack's pinned-versions rule applies, here at preview.
        raise ConfigError(
            s.key("image"), image, "an image pinned by a version tag other than 'latest' or by a digest, such as " + DEFAULT_IMAGE
        )
    stock, facts = tgi_image_of(image)
    if stock and facts is None:
        raise ConfigError(
            s.key("image"),
            image,
            f"a tag of {TGI_REPOSITORY} whose facts config/facts.py records ("
            + ", ".join(TGI_IMAGES)
            + "): check a new version's Dockerfile (user, Python location, port) and add it there, or use a derived image",
        )
    run_as_user = s.int("runAsUser", min=1) if s.has("runAsUser") else None
    if facts is not None and run_as_user is not None and run_as_user != facts.runs_as_uid:
        raise ConfigError(
            s.key("runAsUser"),
            run_as_user,
            f"unset for the stock image {image} (it runs only as uid {facts.runs_as_uid}: its Python lives under "
            f"/root, huggingface/text-generation-inference#3082); set it with a derived image built to run as that uid",
        )
    # A derived image is assumed to take what the stock image it derives from takes.
    disk_gib = (facts or TGI_IMAGES[DEFAULT_TGI_VERSION]).disk_gib
    return image, disk_gib, run_as_user


def cpu_millis(q: str) -> int:
    """A Kubernetes CPU quantity (``2``, ``1.5``, ``1500m``) in millicores."""
    return int(q[:-1]) if q.endswith("m") else round(float(q) * 1000)


def memory_bytes(q: str) -> int:
    """A Kubernetes memory quantity (``24Gi``, ``512M``, ``1073741824``) in bytes."""
    digits = q.rstrip("KMGTik")
    return int(digits) * _MEMORY_UNITS[q[len(digits) :]]


def checkpoint_bytes(m: ModelSettings) -> float:
    """What downloading the model's weights puts on disk: its parameters in the checkpoint's dtype
    (pre-quantized checkpoints are smaller: an upper bound for them)."""
    return float(m.facts.parameters * DTYPE_BYTES[m.facts.dtype])
