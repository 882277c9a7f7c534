"""Following the registry: :class:`Follower` reads the registered model once per poll (or on a
webhook's trigger), loads the versions the router wants on its watcher thread and swaps the
fleet in one assignment."""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
import uuid
from typing import Any

from mlflow_plugin.controller import FALLBACK_ENABLED_TAG
from mlflow_plugin.errors import IntegrityError, MlflowPluginError
from mlflow_plugin.rollouts._state import RolloutState
from mlflow_plugin.serving._inputs import ModelInputs
from mlflow_plugin.serving._observing import Cause, Loader, Observer, iso, log
from mlflow_plugin.serving._outputs import one_line
from mlflow_plugin.serving._routing import Deployment, Fleet, LoadFailure, Router
from mlflow_plugin.serving._scoring import NO_INPUTS
from mlflow_plugin.types import CHAMPION

__all__ = ["Follower"]


class Follower:
    """The fleet of loaded versions of one registered model, kept in step with the registry.

    Args:
        name: registered model name.
        registry: registry adapter.
        router: names the versions to keep loaded.
        observer: counters and failure reports.
        loader: ``(model_name, version) -> model`` (None: download and ``mlflow.pyfunc`` load).
        poll_interval: seconds between two registry reads.
        retry_interval: seconds before a version that failed to load is tried again.
        verify: check downloaded files against the version's manifest (the default loader).
    """

    def __init__(
        self,
        name: str,
        registry: Any,
        router: Router,
        observer: Observer,
        *,
        loader: Loader | None,
        poll_interval: float,
        retry_interval: float,
        verify: bool,
    ) -> None:
        self.name = name
        self.registry = registry
        self.router = router
        self.observer = observer
        self.poll_interval = poll_interval
        self.retry_interval = retry_interval
        self.verify = verify
        self.fleet = Fleet()
        self.last_swap: dict[str, Any] | None = None
        self.last_poll: float | None = None
        self.poll_error: str | None = None
        self._loader = loader or self.load_pyfunc
        self._workdir = tempfile.mkdtemp(prefix="mlflow-plugin-serve-")
        self._refresh_lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the watcher thread (one registry read per ``poll_interval``)."""
        self._thread = threading.Thread(target=self._watch, name=f"watch-{self.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float) -> None:
        """Stop the watcher thread (the loaded versions stay)."""
        self._closed = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def remove_files(self) -> None:
        """Delete the downloaded files (after :meth:`stop`)."""
        shutil.rmtree(self._workdir, ignore_errors=True)

    def trigger(self) -> None:
        """Check the registry now instead of at the next poll (webhooks call this)."""
        self._wake.set()

    def refresh(self, *, raise_errors: bool = False) -> bool:
        """Read the registry once and load/swap what changed; True if anything was swapped."""
        with self._refresh_lock:
            try:
                info = self.registry.get_model(self.name)
            except MlflowPluginError as exc:
                self.poll_error = str(exc)
                self.observer.count("poll_errors")
                if raise_errors:
                    raise
                log.warning("%s: registry poll failed, serving on: %s", self.name, exc)
                return False
            self.last_poll = time.time()
            self.poll_error = None
            wanted = self.router.wanted(info)
            enabled = info.tags.get(FALLBACK_ENABLED_TAG, "false") == "true"
            rollout = RolloutState.from_tags(info.tags)  # the same call: no extra round trip
            old = self.fleet
            loaded: dict[str, Deployment] = {}
            failed: dict[str, LoadFailure] = {}
            pending: list[tuple[str, str]] = []
            now = time.time()
            for role, version in wanted.items():
                reuse = old.by_version(version) or _find(loaded, version)
                if reuse is not None:
                    loaded[role] = reuse
                    continue
                failure = next((f for f in old.failed.values() if f.version == version), None)
                if failure is not None and now - failure.at < self.retry_interval:
                    failed[role] = failure
                    continue
                pending.append((role, version))
                if role in old.loaded:
                    # Keep answering with the current version until the new one is loaded.
                    loaded[role] = old.loaded[role]
            changed = self._publish(Fleet(wanted, dict(loaded), dict(failed), enabled, rollout))
            for role, version in pending:
                result = self._load(version)
                if isinstance(result, Deployment):
                    loaded[role] = result
                    failed.pop(role, None)
                else:
                    loaded.pop(role, None)
                    failed[role] = result
                    self.observer.report_error(Cause(role, version, "load", result.error))
                changed = (
                    self._publish(Fleet(wanted, dict(loaded), dict(failed), enabled, rollout))
                    or changed
                )
            return changed

    def _publish(self, fleet: Fleet) -> bool:
        old = self.fleet
        before = {r: d.version for r, d in old.loaded.items()}
        after = {r: d.version for r, d in fleet.loaded.items()}
        self.fleet = fleet  # the swap: one reference assignment, atomic for readers
        if before.get(CHAMPION) != after.get(CHAMPION) and CHAMPION in after:
            loaded = fleet.loaded[CHAMPION]
            self.last_swap = {
                "from": before.get(CHAMPION),
                "to": after[CHAMPION],
                "at": iso(time.time()),
                "load_seconds": round(loaded.load_seconds, 3),
            }
            self.observer.count("swaps")
            log.info(
                "%s: swap: champion %s -> %s (loaded in %.2fs)",
                self.name,
                before.get(CHAMPION),
                after[CHAMPION],
                loaded.load_seconds,
            )
        kept = {d.version for d in fleet.loaded.values()}
        for deployment in old.loaded.values():
            if deployment.version not in kept:
                self._discard(deployment.version)
        return (
            before != after
            or old.failed.keys() != fleet.failed.keys()
            or old.rollout != fleet.rollout
        )

    def _load(self, version: str) -> Deployment | LoadFailure:
        t0 = time.perf_counter()
        try:
            model = self._loader(self.name, version)
        except Exception as exc:  # noqa: BLE001 - any load failure leaves the version unloaded
            self.observer.count("load_failures")
            log.warning("%s version %s could not be loaded: %s", self.name, version, exc)
            return LoadFailure(version, one_line(exc), time.time())
        try:
            inputs = ModelInputs.of(getattr(model, "metadata", None))
        except Exception:  # noqa: BLE001 - no usable schema: only the generic checks apply
            inputs = NO_INPUTS
        return Deployment(version, model, time.time(), time.perf_counter() - t0, inputs)

    def load_pyfunc(self, name: str, version: str) -> Any:
        """The default loader: download ``models:/NAME/VERSION``, verify it, load it."""
        import mlflow.pyfunc

        from mlflow_plugin.integrity._manifest import (
            DIGEST_TAG,
            REQUIRE_SIGNED_TAG,
            download_version,
            verify_files,
        )

        target = f"{self._workdir}/v{version}-{uuid.uuid4().hex[:6]}"
        local = download_version(self.registry, name, version, target)
        if self.verify:
            # Before anything is unpickled: load_model below is the first to open a pickle.
            info = self.registry.get_version(name, version)
            required = self.registry.get_model(name).tags.get(REQUIRE_SIGNED_TAG, "") == "true"
            report = verify_files(local, dict(info.tags), require_signed=required)
            if not report.ok:
                raise IntegrityError(f"integrity check failed: {report.summary()}", report.problems)
            if report.trusted_on_first_use:
                log.warning(
                    "%s version %s has no %s: loaded unverified (trust on first use)",
                    name,
                    version,
                    DIGEST_TAG,
                )
        return mlflow.pyfunc.load_model(local)

    def _discard(self, version: str) -> None:
        # Loaded models live in memory; their downloaded files are not needed any more.
        for path in _glob(self._workdir, f"v{version}-*"):
            shutil.rmtree(path, ignore_errors=True)

    def _watch(self) -> None:
        while not self._closed:
            self._wake.wait(self.poll_interval)
            self._wake.clear()
            if self._closed:
                return
            try:
                self.refresh()
            except Exception:  # noqa: BLE001 - the watcher must outlive any single failure
                log.exception("%s: refresh failed", self.name)


def _find(loaded: dict[str, Deployment], version: str) -> Deployment | None:
    return next((d for d in loaded.values() if d.version == version), None)


def _glob(root: str, pattern: str) -> list[str]:
    import glob
    import os

    return glob.glob(os.path.join(root, pattern))
