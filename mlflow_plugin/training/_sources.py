"""Reading a data set: a CSV or Parquet path or URI (MLflow artifact URIs downloaded first), or
the name of a dataset lifelines ships, as a :class:`Dataset`. What cannot be read is one
:class:`~mlflow_plugin.DataError` line naming the source; checking the columns is
:func:`mlflow_plugin.training._data.prepare`.
"""

from __future__ import annotations

import hashlib
import os
import urllib.parse
import warnings
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from mlflow_plugin.errors import DataError

__all__ = ["Dataset", "frame_digest", "lifelines_datasets", "load_data"]

_CSV = (".csv", ".csv.gz", ".csv.bz2", ".csv.zip", ".tsv")
_PARQUET = (".parquet", ".pq", ".parq")
# Schemes pandas reads itself (fsspec for the cloud ones, when installed).
_PANDAS_SCHEMES = ("http", "https", "s3", "gs", "gcs", "abfs", "az", "hdfs")
_MLFLOW_SCHEMES = ("runs", "models", "mlflow-artifacts", "dbfs")


@dataclass(frozen=True)
class Dataset:
    """A loaded table and where it came from.

    Attributes:
        frame: the rows, as read.
        source: what the user gave (path, URI or dataset name).
        name: short name for runs and reports (file stem or dataset name).
        lifelines_name: the lifelines dataset name, when it is one.
    """

    frame: pd.DataFrame
    source: str
    name: str
    lifelines_name: str | None = None

    @property
    def digest(self) -> str:
        return frame_digest(self.frame)


def frame_digest(frame: pd.DataFrame) -> str:
    """SHA-256 of a frame's column names and values (row order matters, the index does not)."""
    h = hashlib.sha256()
    h.update("\x1f".join(map(str, frame.columns)).encode())
    h.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return h.hexdigest()


def lifelines_datasets() -> list[str]:
    """Names of the datasets lifelines ships (``rossi``, ``waltons``, ...)."""
    import lifelines.datasets as ds

    return sorted(n.removeprefix("load_") for n in dir(ds) if n.startswith("load_"))


def _looks_like_name(text: str) -> bool:
    return text.replace("_", "").isalnum() and not os.path.exists(text)


def load_data(data: str) -> Dataset:
    """Read ``data``: a CSV or Parquet path or URI, or the name of a lifelines dataset.

    Raises:
        DataError: the file does not exist or cannot be parsed, its format is unknown, or the
            name is not a lifelines dataset.
    """
    text = str(data).strip()
    if not text:
        raise DataError("data: no data set given")
    if _looks_like_name(text):
        return _load_lifelines(text)
    scheme = urllib.parse.urlparse(text).scheme.lower()
    if scheme in _MLFLOW_SCHEMES:
        local = _download(text)
        return Dataset(_read(local, text), text, Path(local).stem.split(".")[0])
    if scheme == "file":
        path = urllib.parse.unquote(urllib.parse.urlparse(text).path)
    elif scheme in _PANDAS_SCHEMES:
        return Dataset(_read(text, text), text, _stem(urllib.parse.urlparse(text).path))
    elif len(scheme) > 1:
        raise DataError(f"data {text!r}: unsupported URI scheme {scheme!r}")
    else:
        path = text
    if not os.path.exists(path):
        raise DataError(f"data file not found: {path}")
    if os.path.isdir(path):
        raise DataError(f"data {path!r} is a directory; give a CSV or Parquet file")
    return Dataset(_read(path, text), text, _stem(path))


def _stem(path: str) -> str:
    return Path(path).name.split(".")[0] or "data"


def _load_lifelines(name: str) -> Dataset:
    import lifelines.datasets as ds

    loader = getattr(ds, f"load_{name}", None)
    if loader is None:
        known = ", ".join(lifelines_datasets())
        raise DataError(
            f"data {name!r}: no such file, and lifelines ships no dataset of that name "
            f"(known: {known})"
        )
    return Dataset(loader(), name, name, lifelines_name=name)


def _download(uri: str) -> str:
    import mlflow

    from mlflow_plugin.registry._adapter import wrap_mlflow_errors

    try:
        with wrap_mlflow_errors(f"download {uri}"):
            return str(mlflow.artifacts.download_artifacts(artifact_uri=uri))
    except Exception as exc:  # NotFound/BadInput/RegistryError: all "cannot get the data"
        raise DataError(f"data {uri!r} could not be downloaded: {exc}") from exc


def _read(path: str, source: str) -> pd.DataFrame:
    lower = path.lower().split("?")[0]
    try:
        if lower.endswith(_PARQUET):
            return pd.read_parquet(path)
        if lower.endswith(_CSV):
            sep = "\t" if lower.endswith(".tsv") else ","
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", pd.errors.DtypeWarning)
                header = pd.read_csv(path, sep=sep, header=None, nrows=1, dtype=str)
                names = [str(v) for v in header.iloc[0].tolist()] if len(header) else []
                dupes = sorted({n for n in names if names.count(n) > 1})
                if dupes:
                    raise DataError(f"data {source!r}: column {dupes[0]!r} appears twice")
                return pd.read_csv(path, sep=sep)
    except FileNotFoundError:
        raise DataError(f"data file not found: {source}") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"data {source!r} is empty (no columns)") from None
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"data {source!r} could not be read: {first}") from exc
    raise DataError(
        f"data {source!r}: unknown format; expected a .csv or .parquet file "
        "or a lifelines dataset name"
    )
