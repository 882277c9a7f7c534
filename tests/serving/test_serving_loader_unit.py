"""ChampionModel logic against the in-memory registry and ledger, with stand-in models (no server).

The stand-ins replace the *loaded model* (anything with ``predict``), not mlflow: the loader's
``loader=`` argument is the seam. The real load path is covered by test_serving_server.py.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pandas as pd
import pytest

from mlflow_plugin import BadInput, ModelUnavailable, NotFound, RegistryUnavailable
from mlflow_plugin.controller import Controller
from mlflow_plugin.serving import ChampionModel, ChampionRouter, Fleet, Guardrails, PredictionLog
from mlflow_plugin.serving._routing import Deployment
from mlflow_plugin.testing import InMemoryLedger, InMemoryRegistry

PASSED = {"mlflow_plugin.validation": "passed", "mlflow_plugin.backtest": "passed"}
DATA = pd.DataFrame({"age": [20, 30], "fin": [0, 1]})


class SchemaError(Exception):
    """What pyfunc raises when the input does not match the signature."""

    error_class = "SCHEMA_ENFORCEMENT_FAILED"
    message = "Failed to enforce schema of data '...' with schema '...'. Error: Model is missing inputs ['age']."


class StandIn:
    """A loaded model returning a constant risk; ``mode`` makes it misbehave."""

    metadata = None

    def __init__(self, risk: float, mode: str = "ok") -> None:
        self.risk = risk
        self.mode = mode
        self.calls = 0

    def predict(self, data, params=None):
        self.calls += 1
        if self.mode == "raise":
            raise RuntimeError("boom")
        if self.mode == "schema" and "age" not in data.columns:
            raise SchemaError(SchemaError.message)
        risk = np.full(len(data), np.nan if self.mode == "nan" else self.risk)
        return pd.DataFrame({"risk": risk, "p_low": 1 - self.risk, "p_high": self.risk})


class Loader:
    """Stands in for download + ``mlflow.pyfunc.load_model``; counts loads, can hold one."""

    def __init__(self) -> None:
        self.models: dict[str, StandIn] = {}
        self.broken: set[str] = set()
        self.loads: list[str] = []
        self.gate = threading.Event()
        self.gate.set()
        self.waiting = threading.Event()

    def __call__(self, name: str, version: str) -> StandIn:
        self.loads.append(version)
        if not self.gate.is_set():
            self.waiting.set()
            assert self.gate.wait(30)
        if version in self.broken:
            raise OSError(f"artifacts of version {version} are missing")
        return self.models[version]


class World:
    """An in-memory registry and ledger with versions 1..n of model ``m``."""

    def __init__(self, n: int = 3) -> None:
        self.registry = InMemoryRegistry()
        self.ledger = InMemoryLedger()
        self.controller = Controller(self.registry, self.ledger, stage_mirror=False)
        self.loader = Loader()
        for i in range(1, n + 1):
            self.registry.register_version("m", "src", None, dict(PASSED))
            self.loader.models[str(i)] = StandIn(i / 10)
        self.served: list[ChampionModel] = []

    def serve(self, **kwargs) -> ChampionModel:
        kwargs.setdefault("poll_interval", 60.0)
        kwargs.setdefault("watch", False)
        model = ChampionModel(
            "m", registry=self.registry, ledger=self.ledger, loader=self.loader, **kwargs
        )
        self.served.append(model)
        return model

    def events(self, event_type: str) -> list:
        for model in self.served:
            model.events.flush()
        return self.ledger.events("m", event_type)


@pytest.fixture()
def world():
    """Three versions of ``m``, nothing promoted yet."""
    w = World()
    yield w
    for model in w.served:
        model.close()


class TestHotSwap:
    def test_serves_the_champion(self, world):
        """The champion answers, and says which version it is."""
        world.controller.promote("m", "1")
        model = world.serve()
        prediction = model.score(DATA)
        assert (prediction.version, prediction.role, prediction.fallback) == (
            "1",
            "champion",
            False,
        )
        assert prediction.output["risk"].tolist() == [0.1, 0.1]
        assert model.version == "1"

    def test_promotion_is_picked_up_on_refresh(self, world):
        """After the alias moves, one refresh loads and swaps in the new champion."""
        world.controller.promote("m", "1")
        model = world.serve()
        world.controller.promote("m", "2")
        assert model.refresh() is True
        assert model.score(DATA).version == "2"
        assert model.last_swap["from"] == "1" and model.last_swap["to"] == "2"
        assert model.refresh() is False  # nothing changed, nothing loaded
        assert world.loader.loads == ["1", "2"]

    def test_requests_are_answered_while_the_new_champion_loads(self, world):
        """While a load is held open, requests keep being answered by the old champion."""
        world.controller.promote("m", "1")
        model = world.serve()
        world.controller.promote("m", "2")
        world.loader.gate.clear()
        refresher = threading.Thread(target=model.refresh)
        refresher.start()
        assert world.loader.waiting.wait(10)
        answers = {model.score(DATA).version for _ in range(20)}
        assert answers == {"1"} and not world.loader.gate.is_set()  # the load is still held
        world.loader.gate.set()
        refresher.join(10)
        assert model.score(DATA).version == "2"

    def test_rollback_to_the_loaded_fallback_needs_no_load(self, world):
        """With the fallback enabled it is kept loaded, so rolling back to it is instant."""
        world.controller.promote("m", "1")
        world.controller.promote("m", "2")
        world.controller.fallback_enable("m")
        model = world.serve()
        loads = list(world.loader.loads)
        world.controller.rollback("m", reason="bad")
        model.refresh()
        assert model.score(DATA).version == "1"
        assert world.loader.loads == loads

    def test_watcher_follows_the_alias_by_itself(self, world):
        """The background watcher swaps within a few poll intervals."""
        world.controller.promote("m", "1")
        model = world.serve(poll_interval=0.05, watch=True)
        world.controller.promote("m", "2")
        deadline = time.monotonic() + 10
        while model.version != "2" and time.monotonic() < deadline:
            time.sleep(0.02)
        assert model.version == "2"

    def test_trigger_wakes_the_watcher(self, world):
        """trigger() (the webhook) checks the registry without waiting for the poll."""
        world.controller.promote("m", "1")
        model = world.serve(poll_interval=3600, watch=True)
        world.controller.promote("m", "2")
        model.trigger()
        deadline = time.monotonic() + 10
        while model.version != "2" and time.monotonic() < deadline:
            time.sleep(0.02)
        assert model.version == "2"

    def test_registry_outage_keeps_serving(self, world):
        """A failed poll is recorded; the loaded champion keeps answering."""
        world.controller.promote("m", "1")
        model = world.serve()

        def down(name):
            raise RegistryUnavailable("tracking server http://x could not be reached")

        world.registry.get_model = down
        assert model.refresh() is False
        assert model.score(DATA).version == "1"
        assert "could not be reached" in model.status()["poll_error"]


class TestFallback:
    def fallback_world(self, world, broken: str) -> ChampionModel:
        world.controller.promote("m", "1")
        world.controller.promote("m", "2")  # fallback alias -> 1
        world.controller.fallback_enable("m")
        return world.serve() if broken != "load" else None

    def test_raising_champion_is_answered_by_the_fallback(self, world):
        """A champion that raises is answered by the fallback; error and recovery events written."""
        world.loader.models["2"].mode = "raise"
        model = self.fallback_world(world, "raise")
        prediction = model.score(DATA)
        assert (prediction.version, prediction.role, prediction.fallback) == ("1", "fallback", True)
        (error,) = world.events("error")
        (recovery,) = world.events("recovery")
        assert (
            error.version == "2"
            and "raised in predict" in error.message
            and "boom" in error.message
        )
        assert (recovery.version, recovery.from_version) == ("1", "2")
        assert recovery.actor.startswith("serving@")
        assert model.counts()[("fallbacks", "predict")] == 1

    def test_guardrail_breach_is_answered_by_the_fallback(self, world):
        """A champion returning NaN is not returned; the fallback answers."""
        world.loader.models["2"].mode = "nan"
        model = self.fallback_world(world, "nan")
        prediction = model.score(DATA)
        assert prediction.version == "1" and prediction.output["risk"].notna().all()
        assert model.counts()[("guardrail", "non_finite", "2")] == 1
        assert "broke a guardrail" in world.events("error")[0].message

    def test_champion_that_cannot_load_is_answered_by_the_fallback(self, world):
        """A champion whose artifacts are gone never loads; the fallback answers; /health says so."""
        world.loader.broken.add("2")
        self.fallback_world(world, "load")
        model = world.serve()
        assert model.score(DATA).version == "1"
        state = model.status()
        assert state["status"] == "degraded"
        assert state["serving"] == {"version": "1", "role": "fallback"}
        assert "missing" in state["champion"]["error"]
        assert state["fallback"]["enabled"] is True and state["fallback"]["loaded"] == "1"
        assert {e.event_type for e in world.events("error") + world.events("recovery")} == {
            "error",
            "recovery",
        }

    def test_bad_new_champion_falls_back_instead_of_keeping_the_old_one(self, world):
        """If the promoted version cannot load, the configured fallback answers - not a leftover."""
        world.controller.promote("m", "1")
        world.controller.promote("m", "2")
        world.controller.fallback_enable("m", "1")
        model = world.serve()
        world.loader.broken.add("3")
        world.controller.promote("m", "3")
        model.refresh()
        assert model.score(DATA).version == "1"

    def test_without_fallback_the_error_is_clear(self, world):
        """No fallback: ModelUnavailable names the champion's failure; no other version answers."""
        world.controller.promote("m", "1")
        model = world.serve()
        world.loader.broken.add("2")
        world.controller.promote("m", "2")
        model.refresh()
        with pytest.raises(
            ModelUnavailable, match=r"champion version 2 could not be loaded.*no fallback"
        ):
            model.score(DATA)
        assert model.version is None and model.status()["status"] == "unavailable"
        assert world.loader.models["1"].calls == 0

    def test_fallback_that_fails_too(self, world):
        """When champion and fallback both fail, both causes are in the error."""
        world.loader.models["2"].mode = "raise"
        world.loader.models["1"].mode = "nan"
        model = self.fallback_world(world, "raise")
        with pytest.raises(
            ModelUnavailable, match=r"champion version 2 raised.*fallback version 1 broke"
        ):
            model.score(DATA)

    def test_missing_champion_alias_uses_the_fallback(self, world):
        """With the champion alias deleted, the enabled fallback answers and the gap is reported."""
        self.fallback_world(world, "x")
        world.registry.delete_alias("m", "champion")
        model = world.serve()
        assert model.score(DATA).role == "fallback"
        assert "champion alias is not set" in world.events("error")[0].message

    def test_events_are_rate_limited(self, world):
        """A flood of failures writes one error and one recovery per interval, counting the rest."""
        world.loader.models["2"].mode = "raise"
        self.fallback_world(world, "raise")
        model = world.serve(event_interval=0.3)
        for _ in range(50):
            model.score(DATA)
        assert len(world.events("error")) == 1 and len(world.events("recovery")) == 1
        assert model.events.stats()["suppressed"] == 98
        time.sleep(0.35)
        model.score(DATA)
        errors = world.events("error")
        assert len(errors) == 2 and "+49 more" in errors[1].message

    def test_bad_input_is_not_a_model_failure(self, world):
        """A signature mismatch is BadInput: no fallback, no ledger event."""
        world.loader.models["2"].mode = "schema"
        model = self.fallback_world(world, "schema")
        with pytest.raises(BadInput, match=r"missing inputs \['age'\]"):
            model.score(DATA.drop(columns=["age"]))
        assert world.loader.models["1"].calls == 0
        assert world.events("error") == []

    def test_observe_mode_flags_without_falling_back(self, world):
        """With enforce=False a violating answer is returned, flagged and counted."""
        world.loader.models["2"].mode = "nan"
        self.fallback_world(world, "nan")
        model = world.serve(guardrails=Guardrails(enforce=False, latency_budget_ms=1e-6))
        prediction = model.score(DATA)
        assert prediction.version == "2" and prediction.flags == ("non_finite", "latency_budget")


class TestStartAndLog:
    def test_nothing_to_serve_fails_at_start(self, world):
        """No champion and no fallback: the constructor raises ModelUnavailable."""
        with pytest.raises(ModelUnavailable, match="no champion"):
            world.serve()

    def test_unknown_model_fails_at_start(self, world):
        """An unknown model is NotFound (exit code 2 in the CLI)."""
        with pytest.raises(NotFound):
            ChampionModel("nope", registry=world.registry, loader=world.loader, watch=False)

    def test_every_answer_goes_to_the_prediction_log(self, world, tmp_path):
        """Champion and fallback answers are logged with version, route and fallback flag."""
        import sqlalchemy as sa

        world.controller.promote("m", "1")
        world.controller.promote("m", "2")
        world.controller.fallback_enable("m")
        uri = f"sqlite:///{tmp_path / 'p.db'}"
        model = world.serve(prediction_log=PredictionLog(uri))
        model.score(DATA, request_id="a")
        world.loader.models["2"].mode = "raise"
        model.score(DATA, request_id="b")
        model.close()
        engine = sa.create_engine(uri)
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT request_id, model_version, route, fallback FROM predictions ORDER BY id"
                )
            ).all()
        engine.dispose()
        assert [tuple(r) for r in rows] == [
            ("a", "2", "champion", 0),
            ("a", "2", "champion", 0),
            ("b", "1", "fallback", 1),
            ("b", "1", "fallback", 1),
        ]


class TestRouter:
    def test_fallback_equal_to_champion_is_tried_once(self):
        """The plan never lists the same version twice."""
        d = Deployment("4", object(), 0.0, 0.0)
        fleet = Fleet({"champion": "4", "fallback": "4"}, {"champion": d, "fallback": d})
        plan = ChampionRouter().plan(fleet, "r")
        assert [r.role for r in plan.routes] == ["champion"]

    def test_disabled_fallback_is_not_wanted(self):
        """The fallback alias alone does not load anything; the enabled tag is needed."""
        from mlflow_plugin.types import ModelInfo

        info = ModelInfo("m", {"champion": "2", "fallback": "1"}, {})
        assert ChampionRouter().wanted(info) == {"champion": "2"}
        info.tags["mlflow_plugin.fallback_enabled"] = "true"
        assert ChampionRouter().wanted(info) == {"champion": "2", "fallback": "1"}
