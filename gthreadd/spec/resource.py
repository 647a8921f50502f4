"""The Model resource (`greenthread.ai/v1alpha1`, `kind: Model`) as pydantic models.

Field names, defaults and allowed values follow the CRD reference (seeds 000) plus the fields that
the deployment guide (seeds 002) adds. Unknown fields are errors, as with
`kubectl apply --validate=strict`, so a typo never silently falls back to a default.
"""

import re
from datetime import datetime
from enum import Enum, StrEnum
from typing import Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from gthreadd.spec.duration import Duration

API_VERSION = "greenthread.ai/v1alpha1"
API_PREFIX = "/apis/" + API_VERSION
"""Where the daemon serves Model and GPU objects, as the API server serves the CRDs."""
KIND = "Model"
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def model_yaml(name: str, model_name: object, spec: str = "") -> str:
    """A Model file's text, as tests, benchmarks and examples write one: `spec` is more of the spec
    as YAML lines indented by two spaces."""
    return f"apiVersion: {API_VERSION}\nkind: {KIND}\nmetadata:\n  name: {name}\nspec:\n  modelName: {model_name}\n{spec}"


TENSOR_PARALLEL = (1, 2, 4, 8)
FRACTION_PATTERN = r"^(0*\.[0-9]*[1-9][0-9]*|0*1(\.0*)?)$"
"""gpuMemoryUtilization in (0, 1] as the CRD's schema says it: "0.90", ".5", "1", "1.0" ("1e-1",
which the daemon's float() also takes, is refused there)."""
SIZE_PATTERN = r"^(([0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|k|M|G|T)?)|(100(\.0+)?|[0-9]{1,2}(\.[0-9]+)?)%)?$"
"""What byte_size.parse_size accepts (a size, or a share of at most 100%), or empty."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True)


class Dtype(str, Enum):
    bfloat16 = "bfloat16"
    float16 = "float16"
    float32 = "float32"


class Quantization(str, Enum):
    none = ""
    mxfp4 = "mxfp4"
    awq = "awq"
    gptq = "gptq"


class ModelType(str, Enum):
    chat = "chat"
    tts = "tts"
    asr = "asr"
    embedding = "embedding"
    reranker = "reranker"


class LoadFormat(str, Enum):
    auto = "auto"
    gthread = "gthread"


class Endpoint(str, Enum):
    """An API a Model's clients may call (each served by vLLM where the model's tasks have it)."""

    chat_completions = "chat_completions"
    completions = "completions"
    responses = "responses"
    """OpenAI's Responses API (/v1/responses)."""
    messages = "messages"
    """Anthropic's Messages API (/v1/messages, /v1/messages/count_tokens)."""
    embeddings = "embeddings"
    rerank = "rerank"
    score = "score"
    classify = "classify"
    pooling = "pooling"
    """vLLM's raw pooler output (/pooling)."""
    tokenize = "tokenize"
    """/tokenize and /detokenize."""
    audio_transcriptions = "audio_transcriptions"
    audio_translations = "audio_translations"
    audio_speech = "audio_speech"


DEFAULT_ENDPOINTS: dict[ModelType, list[Endpoint]] = {
    ModelType.chat: [Endpoint.chat_completions, Endpoint.completions, Endpoint.responses, Endpoint.messages,
                     Endpoint.tokenize],
    ModelType.embedding: [Endpoint.embeddings, Endpoint.score, Endpoint.rerank, Endpoint.pooling, Endpoint.tokenize],
    ModelType.reranker: [Endpoint.rerank, Endpoint.score, Endpoint.classify, Endpoint.pooling, Endpoint.tokenize],
    ModelType.asr: [Endpoint.audio_transcriptions, Endpoint.audio_translations],
    ModelType.tts: [Endpoint.audio_speech],
}


class SleepSpec(_Strict):
    idle_timeout: Duration = Field(default="5m", validate_default=True)
    drain_timeout: Duration = Field(default="30s", validate_default=True)
    level: Literal[1, 2] = 1
    """1: an idle model frees its KV cache and keeps its weights, so its wake is fast; on the CPU
    they stay in the memory the ledger counts, and a model short of memory has a level-1 sleeper
    deepened to 2. 2: it frees its weights too (the wake reloads them). vLLM's sleep levels."""


class FairnessSpec(_Strict):
    min_runtime: Duration = Field(default="10s", validate_default=True)
    max_wait_time: Duration = Field(default="5s", validate_default=True)
    popular: bool = False


class StagingSpec(_Strict):
    pinned: bool = False


class LoraSpec(_Strict):
    enabled: bool = False
    max_rank: int = Field(default=64, ge=1)
    cache_dir: str = ""
    download_timeout: Duration = Field(default="5m", validate_default=True)


class KvCacheSpec(_Strict):
    enabled: bool = False
    max_size: str = Field(default="", json_schema_extra={"pattern": SIZE_PATTERN})
    """Host memory for offloaded prefix KV blocks (16Gi, 20%); empty: 4Gi."""

    @field_validator("max_size")
    @classmethod
    def _size(cls, value: str) -> str:
        from gthreadd.spec.byte_size import parse_size

        if value:
            parse_size(value, 1)
        return value


class ParallelismSpec(_Strict):
    tensor: Optional[int] = Field(default=None, json_schema_extra={"enum": list(TENSOR_PARALLEL)})
    pipeline: int = Field(default=1, ge=1)


class Toleration(_Strict):
    key: str = ""
    operator: Literal["Exists", "Equal"] = "Equal"
    value: str = ""
    effect: Literal["", "NoSchedule", "PreferNoSchedule", "NoExecute"] = ""
    toleration_seconds: Optional[int] = None


class ResourceRequirements(_Strict):
    requests: dict[str, Union[str, int, float]] = {}
    limits: dict[str, Union[str, int, float]] = {}


def _check_tp(value: Optional[int], field: str) -> Optional[int]:
    if value is not None and value not in TENSOR_PARALLEL:
        raise ValueError(f"{field} must be a power of 2 from 1 to 8, got {value}")
    return value


class ModelSpec(_Strict):
    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": [{
        "rule": "!has(self.tensorParallelSize) || !has(self.parallelism) || !has(self.parallelism.tensor)"
                " || self.tensorParallelSize == self.parallelism.tensor",
        "message": "tensorParallelSize and parallelism.tensor disagree; set one of them"}]})
    """The one cross-field rule, as a CEL rule for API servers that run them (1.25+); older ones
    leave it to the daemon (ConfigValid=False)."""

    model_name: str = Field(min_length=1)
    revision: Optional[str] = None
    model_type: ModelType = ModelType.chat
    dtype: Dtype = Dtype.bfloat16
    load_format: LoadFormat = LoadFormat.auto
    gpu_memory_utilization: str = Field(default="0.90", json_schema_extra={"pattern": FRACTION_PATTERN})
    tensor_parallel_size: Optional[int] = Field(default=None, json_schema_extra={"enum": list(TENSOR_PARALLEL)})
    parallelism: Optional[ParallelismSpec] = None
    replicas: int = Field(default=1, ge=0)
    quantization: Quantization = Quantization.none
    extra_args: list[str] = []
    endpoints: Optional[list[Endpoint]] = None
    product: str = ""
    sleep: SleepSpec = SleepSpec()
    fairness: FairnessSpec = FairnessSpec()
    staging: StagingSpec = StagingSpec()
    lora: LoraSpec = LoraSpec()
    kv_cache: KvCacheSpec = KvCacheSpec()
    node_selector: dict[str, str] = {}
    tolerations: list[Toleration] = []
    service_account_name: str = ""
    sidecar_image: str = ""
    vllm_image: str = ""
    resources: ResourceRequirements = ResourceRequirements()

    @field_validator("gpu_memory_utilization", mode="before")
    @classmethod
    def _fraction(cls, value: object) -> str:
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise ValueError(f'must be a number in (0, 1] written as a string, such as "0.90"; got {value!r}')
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f'must be a number in (0, 1] written as a string, such as "0.90"; got {value!r}') from None
        if not 0 < number <= 1:
            raise ValueError(f"must be in (0, 1], got {value!r}")
        return str(value)

    @field_validator("tensor_parallel_size")
    @classmethod
    def _tp(cls, value: Optional[int]) -> Optional[int]:
        return _check_tp(value, "tensorParallelSize")

    @model_validator(mode="after")
    def _parallelism_agrees(self) -> "ModelSpec":
        tensor = self.parallelism.tensor if self.parallelism else None
        _check_tp(tensor, "parallelism.tensor")
        if tensor is not None and self.tensor_parallel_size is not None and tensor != self.tensor_parallel_size:
            raise ValueError(
                f"tensorParallelSize ({self.tensor_parallel_size}) and parallelism.tensor ({tensor}) disagree; "
                "set one of them"
            )
        return self

    @property
    def tensor_parallel(self) -> int:
        if self.tensor_parallel_size is not None:
            return self.tensor_parallel_size
        if self.parallelism and self.parallelism.tensor is not None:
            return self.parallelism.tensor
        return 1

    @property
    def pipeline_parallel(self) -> int:
        return self.parallelism.pipeline if self.parallelism else 1

    @property
    def memory_fraction(self) -> float:
        return float(self.gpu_memory_utilization)

    @property
    def enabled_endpoints(self) -> list[Endpoint]:
        return self.endpoints if self.endpoints is not None else DEFAULT_ENDPOINTS[self.model_type]


class ObjectMeta(_Strict):
    name: str
    namespace: str = "default"
    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}

    @field_validator("name", "namespace")
    @classmethod
    def _dns_label(cls, value: str) -> str:
        if len(value) > 63 or not _DNS_LABEL.match(value):
            raise ValueError(
                f"{value!r} is not a valid name: lower-case letters, digits and '-', "
                "starting and ending with a letter or digit, at most 63 characters"
            )
        return value


class Condition(_Strict):
    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str = ""
    message: str = ""
    last_transition_time: datetime


class ConversionStatus(_Strict):
    status: Literal["Pending", "Running", "Complete", "Failed"] = "Pending"
    total_size_bytes: Optional[int] = None
    progress: Optional[float] = None


class DistributionStatus(_Strict):
    available_on_nodes: list[str] = []
    staging_tier: dict[str, Literal["system", "disk"]] = {}


class MemoryStatus(_Strict):
    serving_human: str = ""


class Phase(str, Enum):
    pending = "Pending"
    converting = "Converting"
    staging = "Staging"
    ready = "Ready"
    failed = "Failed"


class ModelState(StrEnum):
    """What a model's engine is doing (`/<name>/status` "state", seeds 002's sidecar states): the
    one vocabulary that status, metrics and the CLI use."""

    pending = "pending"
    starting = "starting"
    serving = "serving"
    waking = "waking"
    draining = "draining"
    sleeping = "sleeping"
    restarting = "restarting"
    """Its engine is gone (it died, or a start failed) and is started again after a backoff: the
    phase stays Ready. Not `failed`, which alerts fire on."""
    failed = "failed"
    """Given up on: a crash loop, or a failure that retrying cannot fix (phase Failed)."""


class ReplicaStatus(_Strict):
    """One replica's rung and what its engine holds, as the scheduler's ledgers count it."""

    replica: int
    rung: Literal["awake", "asleep", "stopped", "none"]
    """awake: holds device memory; asleep: its engine sleeps (a fast wake); stopped: a budget
    stopped its engine (a request starts it cold); none: never started, or failed."""
    state: str
    sleep_level: Optional[int] = None
    host_bytes: int = 0
    """Host memory its engine holds (measured; reserved while it starts)."""
    device_bytes: dict[str, int] = {}
    """Device index -> bytes claimed there (awake), or still held there (asleep)."""
    reason: str = ""
    retry_at: Optional[datetime] = None
    """Restarting: when its engine is started again (its backoff ends); in the past while it waits
    for capacity."""
    pid: Optional[int] = None
    """Its engine's first process (vLLM's EngineCore) while it runs, on the host that serves it:
    what `kill`, `top` or `py-spy dump` need."""


class ModelStatus(_Strict):
    phase: Phase = Phase.pending
    url: str = ""
    serving_memory_per_gpu: Optional[int] = Field(default=None, alias="servingMemoryPerGPU")
    memory: Optional[MemoryStatus] = None
    replicas: int = 0
    ready_replicas: int = 0
    serving_replicas: int = 0
    sleeping_replicas: int = 0
    node: str = ""
    gpus: str = ""
    conversion: Optional[ConversionStatus] = None
    distribution: Optional[DistributionStatus] = None
    conditions: list[Condition] = []
    lora_adapters: list[str] = []
    """LoRA adapters loaded at run time (spec.lora), by name."""
    kv_cache_bytes: Optional[int] = None
    """Host memory the Model's engines hold for offloaded KV blocks (spec.kvCache), as the daemon's
    ledger granted it; 0 when enabled but not granted (a CPU device, or no room)."""
    replica_status: list[ReplicaStatus] = []
    observed_generation: Optional[int] = None
    """The metadata.generation the Kubernetes shim last applied to a daemon (unset outside a cluster)."""
    source_file: str = ""


class ModelResource(_Strict):
    api_version: Literal["greenthread.ai/v1alpha1"]
    kind: Literal["Model"]
    metadata: ObjectMeta
    spec: ModelSpec
    status: Optional[ModelStatus] = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.metadata.namespace, self.metadata.name)
