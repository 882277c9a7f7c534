"""Artifact downloads through the server's artifact proxy
(``/api/2.0/mlflow-artifacts/artifacts``), as MLflow's client does them for ``mlflow-artifacts:``
URIs: list the directory, then fetch its files side by side. No ``mlflow`` import (see
:mod:`mlflow_plugin.mlflow_io._rest`).
"""

from __future__ import annotations

import posixpath
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote, urlsplit

from mlflow_plugin.mlflow_io._rest_entities import _int
from mlflow_plugin.mlflow_io._rest_http import _ARTIFACTS, _RestHttp, _verify


class _ArtifactDownloads(_RestHttp):
    """Downloading the artifacts this server's proxy serves."""

    def serves(self, artifact_uri: str) -> bool:
        """Whether ``artifact_uri`` is served by this server's artifact proxy
        (``mlflow-artifacts:/…`` without another host, or its ``http(s)`` form on this host)."""
        return self._artifact_root(artifact_uri) is not None

    def _artifact_root(self, artifact_uri: str) -> str | None:
        parts = urlsplit(artifact_uri)
        mine = urlsplit(self.base)
        host = mine.netloc.rpartition("@")[2]
        if parts.scheme == "mlflow-artifacts":
            if parts.netloc and parts.netloc.rpartition("@")[2] != host:
                return None
            return parts.path.strip("/")
        if parts.scheme in ("http", "https") and parts.netloc.rpartition("@")[2] == host:
            head, sep, tail = parts.path.partition(_ARTIFACTS)
            if sep and head == mine.path.rstrip("/"):
                return tail.strip("/")
        return None

    def download_artifacts(self, artifact_uri: str, dst: str) -> str:
        """Download the directory (or file) at ``artifact_uri`` into ``dst``; the local path.

        Raises:
            RestError: listing or a file failed (``error_code`` as MLflow's client reports it).
            ValueError: ``artifact_uri`` is not served by this server (see :meth:`serves`).
        """
        root = self._artifact_root(artifact_uri)
        if root is None:
            raise ValueError(f"{artifact_uri!r} is not served by {self.base}")
        files: list[tuple[str, int | None]] = []
        self._walk(root, "", files)
        Path(dst).mkdir(parents=True, exist_ok=True)
        if not files:  # a single file: the listing of a file is empty
            name = posixpath.basename(root)
            self._fetch(root, Path(dst, name))
            return str(Path(dst, name))
        # Own threads, not the shared pool: the check itself may run inside a pooled call.
        with ThreadPoolExecutor(max_workers=min(8, len(files))) as pool:
            list(
                pool.map(
                    lambda item: self._fetch(
                        posixpath.join(root, item[0]), Path(dst, *item[0].split("/"))
                    ),
                    files,
                )
            )
        return dst

    def _walk(self, root: str, rel: str, out: list[tuple[str, int | None]]) -> None:
        path = posixpath.join(root, rel) if rel else root
        url = self.base + _ARTIFACTS
        answer = _verify(self._send("GET", url, params={"path": path}), _ARTIFACTS)
        for entry in answer.get("files", []):
            child = posixpath.join(rel, posixpath.basename(entry["path"]))
            if entry.get("is_dir"):
                self._walk(root, child, out)
            else:
                out.append((child, _int(entry.get("file_size"))))

    def _fetch(self, remote: str, target: Path) -> None:
        url = self.base + _ARTIFACTS + "/" + quote(remote)
        resp = self._send("GET", url, stream=True)
        with resp:
            if resp.status_code != 200:
                _verify(resp, _ARTIFACTS)
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(target, "wb") as out:
                for chunk in resp.iter_content(1 << 20):
                    out.write(chunk)
