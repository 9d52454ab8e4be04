from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Node(_message.Message):
    __slots__ = ("node_id", "cpu_util", "mem_util", "energy", "latency", "bandwidth", "queue_len", "node_type", "capacity_gcps", "memory_mb", "queue_capacity", "observed_speed")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    CPU_UTIL_FIELD_NUMBER: _ClassVar[int]
    MEM_UTIL_FIELD_NUMBER: _ClassVar[int]
    ENERGY_FIELD_NUMBER: _ClassVar[int]
    LATENCY_FIELD_NUMBER: _ClassVar[int]
    BANDWIDTH_FIELD_NUMBER: _ClassVar[int]
    QUEUE_LEN_FIELD_NUMBER: _ClassVar[int]
    NODE_TYPE_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_GCPS_FIELD_NUMBER: _ClassVar[int]
    MEMORY_MB_FIELD_NUMBER: _ClassVar[int]
    QUEUE_CAPACITY_FIELD_NUMBER: _ClassVar[int]
    OBSERVED_SPEED_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    cpu_util: float
    mem_util: float
    energy: float
    latency: float
    bandwidth: float
    queue_len: float
    node_type: int
    capacity_gcps: float
    memory_mb: float
    queue_capacity: int
    observed_speed: float
    def __init__(self, node_id: _Optional[str] = ..., cpu_util: _Optional[float] = ..., mem_util: _Optional[float] = ..., energy: _Optional[float] = ..., latency: _Optional[float] = ..., bandwidth: _Optional[float] = ..., queue_len: _Optional[float] = ..., node_type: _Optional[int] = ..., capacity_gcps: _Optional[float] = ..., memory_mb: _Optional[float] = ..., queue_capacity: _Optional[int] = ..., observed_speed: _Optional[float] = ...) -> None: ...

class Edge(_message.Message):
    __slots__ = ("source", "target")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    source: int
    target: int
    def __init__(self, source: _Optional[int] = ..., target: _Optional[int] = ...) -> None: ...

class EdgeList(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[Edge]
    def __init__(self, items: _Optional[_Iterable[_Union[Edge, _Mapping]]] = ...) -> None: ...

class Task(_message.Message):
    __slots__ = ("compute_gcycles", "memory_mb", "data_mb", "deadline_ms")
    COMPUTE_GCYCLES_FIELD_NUMBER: _ClassVar[int]
    MEMORY_MB_FIELD_NUMBER: _ClassVar[int]
    DATA_MB_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_MS_FIELD_NUMBER: _ClassVar[int]
    compute_gcycles: float
    memory_mb: float
    data_mb: float
    deadline_ms: float
    def __init__(self, compute_gcycles: _Optional[float] = ..., memory_mb: _Optional[float] = ..., data_mb: _Optional[float] = ..., deadline_ms: _Optional[float] = ...) -> None: ...

class AllocateRequest(_message.Message):
    __slots__ = ("nodes", "edges", "task", "model")
    NODES_FIELD_NUMBER: _ClassVar[int]
    EDGES_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[Node]
    edges: EdgeList
    task: Task
    model: str
    def __init__(self, nodes: _Optional[_Iterable[_Union[Node, _Mapping]]] = ..., edges: _Optional[_Union[EdgeList, _Mapping]] = ..., task: _Optional[_Union[Task, _Mapping]] = ..., model: _Optional[str] = ...) -> None: ...

class NodeColumns(_message.Message):
    __slots__ = ("node_counts", "node_id", "cpu_util", "mem_util", "energy", "latency", "bandwidth", "queue_len", "node_type", "tasks", "capacity_gcps", "memory_mb", "queue_capacity", "observed_speed")
    NODE_COUNTS_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    CPU_UTIL_FIELD_NUMBER: _ClassVar[int]
    MEM_UTIL_FIELD_NUMBER: _ClassVar[int]
    ENERGY_FIELD_NUMBER: _ClassVar[int]
    LATENCY_FIELD_NUMBER: _ClassVar[int]
    BANDWIDTH_FIELD_NUMBER: _ClassVar[int]
    QUEUE_LEN_FIELD_NUMBER: _ClassVar[int]
    NODE_TYPE_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_GCPS_FIELD_NUMBER: _ClassVar[int]
    MEMORY_MB_FIELD_NUMBER: _ClassVar[int]
    QUEUE_CAPACITY_FIELD_NUMBER: _ClassVar[int]
    OBSERVED_SPEED_FIELD_NUMBER: _ClassVar[int]
    node_counts: _containers.RepeatedScalarFieldContainer[int]
    node_id: _containers.RepeatedScalarFieldContainer[str]
    cpu_util: _containers.RepeatedScalarFieldContainer[float]
    mem_util: _containers.RepeatedScalarFieldContainer[float]
    energy: _containers.RepeatedScalarFieldContainer[float]
    latency: _containers.RepeatedScalarFieldContainer[float]
    bandwidth: _containers.RepeatedScalarFieldContainer[float]
    queue_len: _containers.RepeatedScalarFieldContainer[float]
    node_type: _containers.RepeatedScalarFieldContainer[int]
    tasks: _containers.RepeatedCompositeFieldContainer[Task]
    capacity_gcps: _containers.RepeatedScalarFieldContainer[float]
    memory_mb: _containers.RepeatedScalarFieldContainer[float]
    queue_capacity: _containers.RepeatedScalarFieldContainer[int]
    observed_speed: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, node_counts: _Optional[_Iterable[int]] = ..., node_id: _Optional[_Iterable[str]] = ..., cpu_util: _Optional[_Iterable[float]] = ..., mem_util: _Optional[_Iterable[float]] = ..., energy: _Optional[_Iterable[float]] = ..., latency: _Optional[_Iterable[float]] = ..., bandwidth: _Optional[_Iterable[float]] = ..., queue_len: _Optional[_Iterable[float]] = ..., node_type: _Optional[_Iterable[int]] = ..., tasks: _Optional[_Iterable[_Union[Task, _Mapping]]] = ..., capacity_gcps: _Optional[_Iterable[float]] = ..., memory_mb: _Optional[_Iterable[float]] = ..., queue_capacity: _Optional[_Iterable[int]] = ..., observed_speed: _Optional[_Iterable[float]] = ...) -> None: ...

class BatchAllocateRequest(_message.Message):
    __slots__ = ("states", "model", "columns")
    STATES_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    states: _containers.RepeatedCompositeFieldContainer[AllocateRequest]
    model: str
    columns: NodeColumns
    def __init__(self, states: _Optional[_Iterable[_Union[AllocateRequest, _Mapping]]] = ..., model: _Optional[str] = ..., columns: _Optional[_Union[NodeColumns, _Mapping]] = ...) -> None: ...

class ModelRef(_message.Message):
    __slots__ = ("name", "version", "backend")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    backend: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., backend: _Optional[str] = ...) -> None: ...

class Decision(_message.Message):
    __slots__ = ("decision_id", "node_id", "node_index", "confidence", "scores", "ranking", "probabilities", "model", "cached", "latency_ms", "batch_size", "inference_node", "infeasible")
    class ScoresEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class ProbabilitiesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class InfeasibleEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_INDEX_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    RANKING_FIELD_NUMBER: _ClassVar[int]
    PROBABILITIES_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    CACHED_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    INFERENCE_NODE_FIELD_NUMBER: _ClassVar[int]
    INFEASIBLE_FIELD_NUMBER: _ClassVar[int]
    decision_id: str
    node_id: str
    node_index: int
    confidence: float
    scores: _containers.ScalarMap[str, float]
    ranking: _containers.RepeatedScalarFieldContainer[str]
    probabilities: _containers.ScalarMap[str, float]
    model: ModelRef
    cached: bool
    latency_ms: float
    batch_size: int
    inference_node: str
    infeasible: _containers.ScalarMap[str, str]
    def __init__(self, decision_id: _Optional[str] = ..., node_id: _Optional[str] = ..., node_index: _Optional[int] = ..., confidence: _Optional[float] = ..., scores: _Optional[_Mapping[str, float]] = ..., ranking: _Optional[_Iterable[str]] = ..., probabilities: _Optional[_Mapping[str, float]] = ..., model: _Optional[_Union[ModelRef, _Mapping]] = ..., cached: _Optional[bool] = ..., latency_ms: _Optional[float] = ..., batch_size: _Optional[int] = ..., inference_node: _Optional[str] = ..., infeasible: _Optional[_Mapping[str, str]] = ...) -> None: ...

class BatchDecisions(_message.Message):
    __slots__ = ("decisions",)
    DECISIONS_FIELD_NUMBER: _ClassVar[int]
    decisions: _containers.RepeatedCompositeFieldContainer[Decision]
    def __init__(self, decisions: _Optional[_Iterable[_Union[Decision, _Mapping]]] = ...) -> None: ...
