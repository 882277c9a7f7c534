"""Following the registry: the poll (or a webhook's trigger) reads the registered model once,
loads the versions the router wants on the watcher thread and swaps the fleet in one assignment
(a mixin of :class:`~mlflow_plugin.serving.ChampionModel`)."""

from __future__ import annotations

import shutil
import time
import uuid
from typing import Any

from mlflow_plugin.controller import FALLBACK_ENABLED_TAG
from mlflow_plugin.errors import IntegrityError, MlflowPluginError
from mlflow_plugin.rollouts._state import RolloutState
from mlflow_plugin.serving._inputs import ModelInputs
from mlflow_plugin.serving._observing import _Cause, _iso, _log, _Observing
from mlflow_plugin.serving._outputs import one_line
from mlflow_plugin.serving._routing import Deployment, Fleet, LoadFailure
from mlflow_plugin.serving._scoring import _NO_INPUTS
from mlflow_plugin.types import CHAMPION


class _Following(_Observing):
    """Reading the registry and loading, swapping and discarding versions."""

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
                self._count("poll_errors")
                if raise_errors:
                    raise
                _log.warning("%s: registry poll failed, serving on: %s", self.name, exc)
                return False
            self.last_poll = time.time()
            self.poll_error = None
            wanted = self.router.wanted(info)
            enabled = info.tags.get(FALLBACK_ENABLED_TAG, "false") == "true"
            rollout = RolloutState.from_tags(info.tags)  # the same call: no extra round trip
            old = self._fleet
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
                    self._report_error(_Cause(role, version, "load", result.error))
                changed = (
                    self._publish(Fleet(wanted, dict(loaded), dict(failed), enabled, rollout))
                    or changed
                )
            return changed

    def _publish(self, fleet: Fleet) -> bool:
        old = self._fleet
        before = {r: d.version for r, d in old.loaded.items()}
        after = {r: d.version for r, d in fleet.loaded.items()}
        self._fleet = fleet  # the swap: one reference assignment, atomic for readers
        if before.get(CHAMPION) != after.get(CHAMPION) and CHAMPION in after:
            loaded = fleet.loaded[CHAMPION]
            self.last_swap = {
                "from": before.get(CHAMPION),
                "to": after[CHAMPION],
                "at": _iso(time.time()),
                "load_seconds": round(loaded.load_seconds, 3),
            }
            self._count("swaps")
            _log.info(
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
            self._count("load_failures")
            _log.warning("%s version %s could not be loaded: %s", self.name, version, exc)
            return LoadFailure(version, one_line(exc), time.time())
        try:
            inputs = ModelInputs.of(getattr(model, "metadata", None))
        except Exception:  # noqa: BLE001 - no usable schema: only the generic checks apply
            inputs = _NO_INPUTS
        return Deployment(version, model, time.time(), time.perf_counter() - t0, inputs)

    def _load_pyfunc(self, name: str, version: str) -> Any:
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
                _log.warning(
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
                _log.exception("%s: refresh failed", self.name)


def _find(loaded: dict[str, Deployment], version: str) -> Deployment | None:
    return next((d for d in loaded.values() if d.version == version), None)


def _glob(root: str, pattern: str) -> list[str]:
    import glob
    import os

    return glob.glob(os.path.join(root, pattern))
