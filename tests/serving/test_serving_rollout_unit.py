"""Rollouts in serve, against the in-memory registry with stand-in models (no server).

The rollout state is written as ``i12a``'s commands write it: the aliases ``canary`` / ``preview``
and the tags of ``RolloutState.to_tags()``. The HTTP path with two replicas is in
test_serving_rollout.py.
"""

from __future__ import annotations

import threading

import pandas as pd
import pytest
import sqlalchemy as sa
from test_serving_loader_unit import DATA, StandIn, World

from mlflow_plugin.rollouts._state import ROLLOUT_TAGS, RolloutState, routes_to_canary
from mlflow_plugin.serving import PredictionLog, ServingMetrics
from mlflow_plugin.serving._mirror import Mirror, same_answer
from mlflow_plugin.serving._prediction_log import ENTITY_KEYS_ATTR
from mlflow_plugin.serving._rollout_router import RolloutRouter
from mlflow_plugin.serving._routing import Deployment, Route


@pytest.fixture()
def world():
    w = World(n=4)
    w.controller.promote("m", "1")
    yield w
    for model in w.served:
        model.close()


def start(world: World, alias: str, version: str, **fields) -> RolloutState:
    """Write a rollout into the registry the way the rollout engine does."""
    fields.setdefault("strategy", "canary" if alias == "canary" else "blue_green")
    state = RolloutState(rollout_id=fields.pop("rollout_id", "r-1"), version=version, **fields)
    world.registry.set_alias("m", alias, version)
    for key, value in state.to_tags().items():
        world.registry.set_model_tag("m", key, value)
    return state


def end(world: World, alias: str) -> None:
    world.registry.delete_alias("m", alias)
    for key in ROLLOUT_TAGS.values():
        world.registry.delete_model_tag("m", key)


def keyed(key: str, age: float = 30.0) -> pd.DataFrame:
    frame = pd.DataFrame({"age": [age], "fin": [0]})
    frame.attrs[ENTITY_KEYS_ATTR] = (key,)
    return frame


def rows(log: PredictionLog) -> pd.DataFrame:
    assert log.flush(30)
    return pd.read_sql(sa.select(log.table), log.engine)


class TestCanary:
    def test_no_rollout_routes_like_the_champion_router(self, world):
        """Without a rollout the default router answers with the champion, mirrors nothing."""
        model = world.serve()
        assert isinstance(model.router, RolloutRouter)
        p = model.score(DATA)
        assert (p.version, p.role, p.fallback) == ("1", "champion", False)
        assert model.status()["rollout"] is None
        assert model.mirror.stats()["submitted"] == 0

    def test_share_follows_the_sticky_hash(self, world):
        """Each entity key goes where routes_to_canary says, every time; a paused rollout keeps
        its share; a watching one and an aborted one (alias gone) get nothing."""
        state = start(world, "canary", "2", weight=30, steps=(30, 100))
        model = world.serve()
        keys = [f"entity-{i}" for i in range(120)]
        expected = {k: routes_to_canary(k, state) for k in keys}
        for _ in range(2):
            got = {k: model.score(keyed(k)).role == "canary" for k in keys}
            assert got == expected
        assert 0.15 < sum(expected.values()) / len(keys) < 0.45
        world.registry.set_model_tag("m", ROLLOUT_TAGS["phase"], "paused")
        model.refresh()
        assert {k: model.score(keyed(k)).role == "canary" for k in keys} == expected
        world.registry.set_model_tag("m", ROLLOUT_TAGS["phase"], "watching")
        model.refresh()
        assert {model.score(keyed(k)).role for k in keys} == {"champion"}
        world.registry.set_model_tag("m", ROLLOUT_TAGS["phase"], "running")
        world.registry.delete_alias("m", "canary")
        model.refresh()
        assert {model.score(keyed(k)).role for k in keys} == {"champion"}
        assert "2" not in {d.version for d in model._fleet.loaded.values()}

    def test_one_registry_call_per_poll(self, world):
        """The rollout comes with the champion: a poll is one get_model, whatever the rollout."""
        start(world, "canary", "2", weight=50, previous="3", keep_previous_until=9e12)
        world.registry.set_alias("m", "preview", "4")
        model = world.serve()
        assert set(model._fleet.loaded) == {"champion", "canary", "preview", "previous"}
        world.registry.calls.clear()
        world.registry.set_model_tag("m", ROLLOUT_TAGS["weight"], "60")
        assert model.refresh() is True  # the new weight is picked up ...
        assert model.status()["rollout"]["weight"] == 60
        assert world.registry.calls == ["get_model"]  # ... by the one read of the poll

    def test_without_a_key_the_request_id_decides(self, world):
        """No X-Entity-Key and no key column: each request id is hashed (not sticky)."""
        state = start(world, "canary", "2", weight=50)
        model = world.serve()
        for i in range(50):
            rid = f"req-{i}"
            role = model.score(DATA, request_id=rid).role
            assert (role == "canary") == routes_to_canary(rid, state)

    def test_key_column_is_the_key_without_a_header(self, world):
        """With a key column, its first row's value is the key."""
        state = start(world, "canary", "2", weight=50)
        model = world.serve(key_column="fin")
        for fin in range(30):
            frame = pd.DataFrame({"age": [30, 31], "fin": [fin, 99]})
            role = model.score(frame, request_id=f"x{fin}").role
            assert (role == "canary") == routes_to_canary(str(fin), state)

    def test_failing_canary_is_backed_up_and_logged_as_contracted(self, world, tmp_path):
        """A canary that raises, or breaks an enforced guardrail: the client gets the champion's
        answer; the log has the canary's failed attempt (route canary, its version, error,
        flags), then the champion's row with fallback=true."""
        world.loader.models["2"] = StandIn(0.2, "raise")
        world.loader.models["3"] = StandIn(0.3, "nan")
        start(world, "canary", "2", weight=100)
        log = PredictionLog(f"sqlite:///{tmp_path / 'p.db'}")
        model = world.serve(prediction_log=log)
        p = model.score(keyed("a"), request_id="raised")
        assert (p.role, p.version, p.fallback) == ("champion", "1", True)
        assert p.output["risk"].tolist() == [0.1]
        world.registry.set_alias("m", "canary", "3")
        model.refresh()
        p = model.score(keyed("a"), request_id="nan")
        assert (p.role, p.version, p.fallback) == ("champion", "1", True)
        frame = rows(log).sort_values("id")
        raised = frame[frame.request_id == "raised"]
        assert raised[["route", "model_version", "fallback"]].values.tolist() == [
            ["canary", "2", False],
            ["champion", "1", True],
        ]
        assert "raised in predict" in raised.iloc[0]["error"] and raised.iloc[1]["error"] is None
        broke = frame[frame.request_id == "nan"]
        assert broke["route"].tolist() == ["canary", "champion"]
        assert "broke a guardrail" in broke.iloc[0]["error"]
        assert "non_finite" in broke.iloc[0]["guardrail_flags"]
        assert broke.iloc[0]["entity_key"] == "a"
        counts = model.counts()
        assert (
            counts[("canary_failures", "predict")] == counts[("canary_failures", "guardrail")] == 1
        )
        assert model.status()["status"] == "ok"  # a failing canary does not degrade the server

    def test_canary_that_cannot_load_gets_a_row_and_the_champion_answers(self, world, tmp_path):
        world.loader.broken.add("2")
        start(world, "canary", "2", weight=100)
        log = PredictionLog(f"sqlite:///{tmp_path / 'p.db'}")
        model = world.serve(prediction_log=log)
        p = model.score(keyed("k"), request_id="r")
        assert (p.role, p.fallback) == ("champion", True)
        frame = rows(log)
        failed = frame[frame.route == "canary"].iloc[0]
        assert failed["model_version"] == "2" and "could not be loaded" in failed["error"]

    def test_batches_split_by_plan(self, world):
        """Adaptive batching keeps each request on its side of the canary."""
        state = start(world, "canary", "2", weight=50)
        model = world.serve()
        keys = [f"k{i}" for i in range(40)]
        requests = [(keyed(k), f"r{k}", 0.0, ()) for k in keys]
        out = model.score_batch(requests)
        for key, p in zip(keys, out, strict=True):
            assert p.role == ("canary" if routes_to_canary(key, state) else "champion")
            assert p.output["risk"].tolist() == [0.2 if p.role == "canary" else 0.1]


class TestBlueGreen:
    def test_preview_gets_a_mirror_and_never_answers(self, world, tmp_path):
        """The champion answers every request; preview scores a copy off the path; its rows are
        logged with route preview; agreement is counted."""
        start(world, "preview", "3")
        log = PredictionLog(f"sqlite:///{tmp_path / 'p.db'}")
        model = world.serve(prediction_log=log)
        for i in range(20):
            p = model.score(keyed(f"e{i}"), request_id=f"r{i}")
            assert (p.role, p.version, p.output["risk"].tolist()) == ("champion", "1", [0.1])
        out = model.score_batch([(keyed("b"), "rb", 0.0, ()), (keyed("c"), "rc", 0.0, ())])
        assert {p.role for p in out} == {"champion"}
        assert model.mirror.flush(30)
        stats = model.mirror.stats()
        assert stats["scored"] == stats["disagree"] == 22 and stats["dropped"] == 0
        assert stats["predicts"] <= 22  # at most one extra predict per request
        frame = rows(log)
        preview = frame[frame.route == "preview"]
        assert set(preview.model_version) == {"3"} and len(preview) == 22
        assert set(preview.output.map(lambda s: s.startswith('{"p_high":0.3'))) == {True}
        status = model.status()["rollout"]
        assert status["strategy"] == "blue_green" and status["roles"]["preview"]["loaded"] == "3"
        text = ServingMetrics(model).render()[0].decode()
        assert 'mlflow_plugin_serving_mirror_total{outcome="disagree"} 22.0' in text
        assert 'mlflow_plugin_serving_model_loaded{role="preview",version="3"} 1.0' in text

    def test_a_failing_preview_is_logged_and_never_reaches_the_client(self, world, tmp_path):
        world.loader.models["3"] = StandIn(0.3, "raise")
        start(world, "preview", "3")
        log = PredictionLog(f"sqlite:///{tmp_path / 'p.db'}")
        model = world.serve(prediction_log=log)
        assert model.score(keyed("x"), request_id="r").role == "champion"
        assert model.mirror.flush(30)
        assert model.mirror.stats()["errors"] == 1
        frame = rows(log)
        row = frame[frame.route == "preview"].iloc[0]
        assert row["model_version"] == "3" and "raised in predict" in row["error"]

    def test_a_full_mirror_queue_drops_and_never_waits(self):
        """The mirror's queue is bounded: with the scorer stuck, submits return and count drops."""
        gate = threading.Event()

        class Stuck(StandIn):
            def predict(self, data, params=None):
                gate.wait(30)
                return super().predict(data, params)

        mirror = Mirror("m", max_queue=2)
        route = Route("preview", Deployment("3", Stuck(0.3), 0.0, 0.0))
        results: list[bool] = []
        worker = threading.Thread(
            target=lambda: results.extend(
                mirror.submit(route, DATA, None, f"r{i}", None) for i in range(20)
            )
        )
        worker.start()
        worker.join(20)
        alive = worker.is_alive()
        gate.set()
        mirror.close()
        assert not alive, "submit waited for the scorer"
        assert results.count(False) == mirror.stats()["dropped"] >= 17

    def test_same_answer(self):
        a = pd.DataFrame({"risk": [0.1, float("nan")], "p": [1, 2]})
        assert same_answer(a, a.copy())
        assert not same_answer(a, a.assign(risk=[0.2, float("nan")]))
        assert not same_answer(a, a[["p", "risk"]])
        assert not same_answer(a, [0.1, 0.2])
        assert same_answer(["x", "y"], ["x", "y"]) and not same_answer(["x"], ["y"])


class TestPrevious:
    def test_previous_is_loaded_until_its_deadline_and_backs_up_last(self, world):
        now = [1000.0]
        start(world, "preview", "3", phase="watching", previous="2", keep_previous_until=1500.0)
        world.registry.delete_alias("m", "preview")
        world.loader.models["1"] = StandIn(0.1, "raise")
        model = world.serve(router=RolloutRouter(clock=lambda: now[0]))
        assert model._fleet.loaded["previous"].version == "2"
        p = model.score(DATA)  # no fallback enabled: the previous champion backs the champion up
        assert (p.role, p.version, p.fallback) == ("previous", "2", True)
        assert model.status()["rollout"]["roles"]["previous"] == {"wanted": "2", "loaded": "2"}
        now[0] = 1600.0
        model.refresh()
        assert "previous" not in model._fleet.loaded
