"""MLflow's scoring protocol: a request's body parsed into model input, a prediction encoded.

The parsing (``dataframe_split``, ``dataframe_records``, ``instances``, ``inputs``, CSV, Parquet)
and the encoding are MLflow's scoring server's own, so clients of ``mlflow models serve`` work
unchanged. A request that cannot be answered raises: :class:`~mlflow_plugin.BadInput` (400),
:class:`~mlflow_plugin.ModelUnavailable` (503) or :class:`Refused` (any other status); the app's
exception handlers turn them into replies (:func:`error_reply`).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlflow_plugin.errors import BadInput

if TYPE_CHECKING:
    from mlflow_plugin.serving._loader import ChampionModel, Prediction

__all__ = [
    "JSON",
    "Parsed",
    "Refused",
    "Reply",
    "attach_keys",
    "batchable",
    "encode",
    "error_reply",
    "invoke",
    "parse",
]

JSON = "application/json"


class Reply:
    """What ``/invocations`` answers: status, body, headers and the metrics' reason."""

    __slots__ = ("body", "headers", "media_type", "reason", "status")

    def __init__(
        self,
        status: int,
        body: str,
        media_type: str = JSON,
        headers: dict[str, str] | None = None,
        reason: str | None = None,
    ) -> None:
        self.status = status
        self.body = body
        self.media_type = media_type
        self.headers = headers or {}
        self.reason = reason


class Refused(Exception):
    """A request answered with an error: an unreadable body (400, 415), an output that cannot
    be encoded (500), a timeout (503).

    Args:
        status: the HTTP status.
        code: MLflow's ``error_code``.
        message: the reply's ``message`` (its first line).
        reason: the metrics' label for the failure.
    """

    def __init__(self, status: int, code: str, message: str, reason: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.reason = reason


def error_reply(status: int, code: str, message: str, reason: str, request_id: str) -> Reply:
    """MLflow's error body (``error_code``, a one-line ``message``) for a refused request."""
    line = " ".join(message.split("\n", 1)[0].split())
    line = line if len(line) <= 400 else line[:397] + "..."
    body = json.dumps({"error_code": code, "message": line})
    return Reply(status, body, headers={"X-Request-Id": request_id}, reason=reason)


@dataclass
class Parsed:
    """A parsed request: the model's input, its params, and the input guardrails' flags."""

    data: Any
    params: Any
    unified: bool
    flags: tuple[str, ...]


def parse(model: ChampionModel, body: bytes, content_type: str | None) -> Parsed:
    """Parse a request and apply the input guardrails to the raw values.

    The guardrails look at the values as sent, before MLflow's schema cast (which would turn
    ``null`` into a conversion error without a row, and ``1e308`` in a ``long`` column into
    ``-9223372036854775808``); the cast follows when they pass.

    Raises:
        Refused: 415, the body is not UTF-8 or its content type is not one MLflow reads; 400,
            the body cannot be parsed.
        BadInput: the input guardrails refuse it.
    """
    from mlflow.pyfunc import scoring_server as ss

    mime, _, rest = (content_type or ss.CONTENT_TYPE_JSON).partition(";")
    mime = mime.strip().lower()
    charset = rest.strip().lower().removeprefix("charset=").strip() if rest else "utf-8"
    if charset not in ("utf-8", "utf8"):
        raise Refused(
            415, "BAD_REQUEST", "only UTF-8 bodies are supported", "unsupported_media_type"
        )
    metadata = model.metadata
    schema = metadata.get_input_schema() if metadata is not None else None
    if mime not in (ss.CONTENT_TYPE_JSON, ss.CONTENT_TYPE_CSV, ss.CONTENT_TYPE_PARQUET):
        raise Refused(
            415,
            "BAD_REQUEST",
            f"unsupported content type {mime!r}; use one of {', '.join(ss.CONTENT_TYPES)}",
            "unsupported_media_type",
        )
    unified = False
    params = None
    guarded = model.input_guard.mode != "off"
    raw_schema = None if guarded else schema
    try:
        if mime == ss.CONTENT_TYPE_JSON:
            parsed = ss._parse_json_data(body, metadata, raw_schema)
            data, params, unified = parsed.data, parsed.params, parsed.is_unified_llm_input
        elif mime == ss.CONTENT_TYPE_CSV:
            data = ss.parse_csv_input(io.StringIO(body.decode("utf-8")), schema=raw_schema)  # type: ignore[arg-type]
        else:
            data = ss.parse_parquet_input(io.BytesIO(body))
        flags: tuple[str, ...] = ()
        if guarded:
            flags = model.check_input(data)
            if schema is not None:
                data = _cast(ss, body, mime, metadata, schema, data)
    except BadInput:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever the parser raises, the request is bad
        message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
        raise Refused(400, "BAD_REQUEST", f"bad request: {message}", "bad_request") from exc
    return Parsed(data, params, unified, flags)


def _cast(ss: Any, body: bytes, mime: str, metadata: Any, schema: Any, data: Any) -> Any:
    """Apply the signature's types to checked raw data, as MLflow's parser would have."""
    import pandas as pd
    from mlflow.utils.proto_json_utils import cast_df_types_according_to_schema

    if isinstance(data, pd.DataFrame) and mime != ss.CONTENT_TYPE_PARQUET:
        fast = _numeric_cast(data, schema)
        if fast is not None:
            return fast
        if schema.is_tensor_spec() or not schema.has_input_names():
            return (
                ss._parse_json_data(body, metadata, schema).data
                if mime == ss.CONTENT_TYPE_JSON
                else data
            )
        return cast_df_types_according_to_schema(data, schema)
    if mime == ss.CONTENT_TYPE_JSON:
        return ss._parse_json_data(body, metadata, schema).data
    return data


_NUMPY_TYPES = {"long": "int64", "integer": "int32", "double": "float64", "float": "float32"}


def _numeric_cast(data: Any, schema: Any) -> Any:
    """MLflow's cast for the common case, minus its per-call overhead: every input is a number
    column (already checked finite by the input guardrails). None when it does not apply."""
    if schema.is_tensor_spec() or not schema.has_input_names():
        return None
    try:
        types = {name: str(getattr(t, "name", t)) for name, t in schema.input_types_dict().items()}
    except Exception:  # noqa: BLE001 - anything unusual: MLflow's own cast
        return None
    if not all(t in _NUMPY_TYPES for t in types.values()):
        return None
    wanted = {
        name: _NUMPY_TYPES[kind]
        for name, kind in types.items()
        if name in data.columns and data[name].dtype != _NUMPY_TYPES[kind]
    }
    if not wanted:
        return data
    try:
        return data.astype(wanted)
    except (TypeError, ValueError):
        return None


def invoke(
    model: ChampionModel,
    body: bytes,
    content_type: str | None,
    request_id: str,
    entity_keys: tuple[str, ...] | None = None,
) -> Reply:
    """Parse, score and encode one request (runs on a worker thread, like MLflow's)."""
    parsed = parse(model, body, content_type)
    attach_keys(parsed.data, entity_keys)
    prediction = model.score(
        parsed.data, parsed.params, request_id=request_id, input_flags=parsed.flags
    )
    return encode(prediction, parsed.unified, request_id)


def encode(prediction: Prediction, unified: bool, request_id: str) -> Reply:
    """MLflow's ``{"predictions": ...}`` with headers naming who answered.

    Raises:
        Refused: 500, the output could not be encoded.
    """
    from mlflow.pyfunc import scoring_server as ss

    fast = _fast_json(prediction.output) if not unified else None
    if fast is not None:
        return Reply(200, fast, headers=_headers(prediction, request_id))
    out = io.StringIO()
    try:
        if unified:
            ss.unwrapped_predictions_to_json(prediction.output, out)
        else:
            ss.predictions_to_json(prediction.output, out)
    except Exception as exc:  # noqa: BLE001
        raise Refused(
            500, "INTERNAL_ERROR", f"output could not be encoded: {exc}", "internal"
        ) from exc
    return Reply(200, out.getvalue(), headers=_headers(prediction, request_id))


def _headers(prediction: Prediction, request_id: str) -> dict[str, str]:
    headers = {
        "X-Model-Version": prediction.version,
        "X-Model-Role": prediction.role,
        "X-Request-Id": request_id,
    }
    if prediction.flags:
        headers["X-Guardrail-Flags"] = ",".join(prediction.flags)
    return headers


def _fast_json(output: Any) -> str | None:
    """MLflow's ``{"predictions": records}`` for an all-number DataFrame, without its generic
    encoder (the same text: floats and ints print alike; NaN as ``NaN``). None otherwise."""
    import pandas as pd

    if not isinstance(output, pd.DataFrame) or output.columns.dtype.kind != "O":
        return None
    if not all(dt.kind in "fi" for dt in output.dtypes) or not all(
        isinstance(c, str) for c in output.columns
    ):
        return None
    names = list(output.columns)
    rows = [dict(zip(names, row, strict=True)) for row in output.to_numpy(dtype=object).tolist()]
    return json.dumps({"predictions": rows})


def attach_keys(data: Any, keys: tuple[str, ...] | None) -> None:
    """The prediction log reads a request's entity keys from its frame's ``attrs``."""
    from mlflow_plugin.serving._prediction_log import ENTITY_KEYS_ATTR

    if keys and hasattr(data, "attrs"):
        data.attrs[ENTITY_KEYS_ATTR] = keys


def batchable(data: Any) -> bool:
    """A request the batcher can score with others: a non-empty DataFrame."""
    import pandas as pd

    return isinstance(data, pd.DataFrame) and len(data) > 0
