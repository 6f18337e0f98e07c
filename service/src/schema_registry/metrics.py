"""Prometheus metrics, names from the upstream spec with the schema_registry_ prefix.

With several workers, PROMETHEUS_MULTIPROC_DIR is set before this module is imported
(see cli.serve) and the metrics listener in the parent process aggregates all workers.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

_P = "schema_registry_"
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

HTTP_REQUESTS = Counter(
    _P + "http_requests_total", "HTTP requests by route", ["method", "path", "status"]
)
HTTP_DURATION = Histogram(
    _P + "http_request_duration_seconds",
    "HTTP request duration",
    ["method", "path"],
    buckets=_LATENCY_BUCKETS,
)
HTTP_IN_FLIGHT = Gauge(
    _P + "http_requests_in_flight", "Requests being served", multiprocess_mode="livesum"
)
SCHEMAS_REGISTERED = Counter(
    _P + "schemas_registered_total", "Schemas registered", ["format", "state"]
)
VALIDATIONS = Counter(_P + "validations_total", "Data validations", ["format", "result"])
VALIDATION_DURATION = Histogram(
    _P + "validation_duration_seconds", "Data validation duration", buckets=_LATENCY_BUCKETS
)
COMPATIBILITY_CHECKS = Counter(
    _P + "compatibility_checks_total", "Compatibility checks", ["mode", "result"]
)
COMPATIBILITY_VIOLATIONS = Counter(
    _P + "compatibility_violations_total", "Compatibility violations found", ["mode"]
)
CACHE_OPERATIONS = Counter(
    _P + "cache_operations_total", "Cache operations", ["operation", "tier", "result"]
)
DB_QUERY_DURATION = Histogram(
    _P + "db_query_duration_seconds",
    "Database query duration",
    ["query"],
    buckets=_LATENCY_BUCKETS,
)
DB_CONNECTIONS_ACTIVE = Gauge(
    _P + "db_connections_active", "Pool connections in use", multiprocess_mode="livesum"
)
DB_CONNECTIONS_IDLE = Gauge(
    _P + "db_connections_idle", "Pool connections idle", multiprocess_mode="livesum"
)
DB_CONNECTIONS_MAX = Gauge(
    _P + "db_connections_max", "Pool size limit", multiprocess_mode="livesum"
)
REDIS_OPERATIONS = Counter(_P + "redis_operations_total", "Redis commands", ["command", "result"])
BUILD_INFO = Gauge(
    _P + "build_info", "Running release", ["version", "broken"], multiprocess_mode="max"
)
# Labelled (no value until a worker sets one): an unlabelled metric would also get a
# value in the parent process of a multi-worker server, which never updates it.
DB_AVAILABLE = Gauge(
    _P + "db_available",
    "1 while the workers reach the read-write (primary) database, 0 while a circuit is open",
    ["role"],
    multiprocess_mode="livemin",
)
DB_CIRCUIT_OPENED = Counter(
    _P + "db_circuit_opened_total",
    "Times the database circuit opened, by the error that opened it",
    ["error"],
)
DB_PROBES = Counter(_P + "db_probes_total", "Background database probes", ["result"])
DB_WRITE_RETRIES = Counter(
    _P + "db_write_retries_total",
    "Retried idempotent writes (register) after a connection-level failure or failover",
    ["outcome"],
)
