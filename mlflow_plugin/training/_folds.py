"""The folds of a backtest: how the rows are cut (rolling origin over the time column, else
seeded k-fold), each fold's rows as known at its cut, and the one horizon inside every fold's
follow-up (see :mod:`mlflow_plugin.training._backtest`, which fits and scores them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from mlflow_plugin.errors import ConfigError, DataError
from mlflow_plugin.settings import TAG_PREFIX
from mlflow_plugin.training._data import SurvivalData
from mlflow_plugin.training._gating import recipe_of
from mlflow_plugin.types import VersionInfo

if TYPE_CHECKING:
    from mlflow_plugin.policy import Policy

__all__ = [
    "FoldData",
    "FoldPlan",
    "Split",
    "backtest_recipe",
    "fold_data",
    "fold_horizon",
    "horizon_sets",
    "kfold",
    "plan_folds",
    "rolling_origin",
    "splits_for",
]

Split = tuple[np.ndarray, np.ndarray, str]


@dataclass(frozen=True)
class FoldPlan:
    """The folds of a backtest and their horizon, fixed before its run starts.

    Attributes:
        splits: ``(train, test, window)`` positions per fold.
        method: how the folds were made, for the report.
        parts: each fold's rows.
        horizon: the horizon of every fold.
        horizon_choice: how it was chosen.
    """

    splits: list[Split]
    method: str
    parts: list[FoldData]
    horizon: float
    horizon_choice: str


def plan_folds(
    version: VersionInfo,
    data: SurvivalData,
    policy: Policy,
    horizon: float | None,
    folds: int,
    seed: int,
    time_scale: float | None,
) -> FoldPlan:
    """The folds of ``version``'s backtest on ``data`` and their horizon.

    Raises:
        ConfigError: the version has no training recipe.
        DataError: too few rows or distinct times for the folds, or an explicit horizon
            (``horizon``, else the policy's) outside the follow-up of a fold.
    """
    recipe = backtest_recipe(version)
    scale = float(time_scale or recipe.get("time_scale") or 1.0)
    splits, method = splits_for(data, folds, seed)
    parts = fold_data(data, splits, scale)
    recipe_h = recipe.get("horizon")
    used_h, how = fold_horizon(
        parts,
        data,
        horizon if horizon is not None else policy.horizon,
        float(recipe_h) if recipe_h else None,
    )
    return FoldPlan(splits, method, parts, used_h, how)


def backtest_recipe(version: VersionInfo) -> dict[str, Any]:
    """``version``'s training recipe; refused for a version ``train`` did not make."""
    recipe = recipe_of(version)
    if not recipe.get("model_kind") or not recipe.get("duration_col"):
        raise ConfigError(
            f"{version.name} version {version.version} has no training recipe "
            f"(tag {TAG_PREFIX}recipe): only versions trained by mlflow_plugin can be backtested"
        )
    return recipe


def _fmt(value: Any) -> str:
    if isinstance(value, np.datetime64):
        return str(np.datetime_as_string(value, unit="s"))
    return f"{float(value):g}"


def rolling_origin(times: np.ndarray, folds: int) -> list[Split]:
    """``folds`` rolling-origin splits of rows ordered by ``times``: ``(train, test, window)``.

    Every training row is strictly earlier than every row of its test window.

    Raises:
        DataError: there are too few distinct times for two folds.
    """
    n = len(times)
    ordered = np.sort(times, kind="stable")
    cuts: list[Any] = []
    for i in range(1, folds + 1):
        cut = ordered[min(n - 1, int(n * i / (folds + 1)))]
        if not cuts or cut > cuts[-1]:
            cuts.append(cut)
    splits: list[Split] = []
    for j, cut in enumerate(cuts):
        upper = cuts[j + 1] if j + 1 < len(cuts) else None
        train = np.flatnonzero(times < cut)
        test_mask = times >= cut if upper is None else (times >= cut) & (times < upper)
        test = np.flatnonzero(test_mask)
        if len(train) and len(test):
            window = f"[{_fmt(cut)}, {_fmt(upper) if upper is not None else 'end'})"
            splits.append((train, test, window))
    if len(splits) < 2:
        raise DataError(
            f"the time column has too few distinct values for a rolling-origin backtest "
            f"({len(np.unique(times))} distinct, {folds} folds)"
        )
    return splits


def kfold(n: int, folds: int, seed: int) -> list[Split]:
    """Seeded, shuffled k-fold splits."""
    from sklearn.model_selection import KFold

    if n < 2 * folds:
        raise DataError(f"{n} rows are too few for {folds} folds")
    return [
        (train, test, f"random 1/{folds}")
        for train, test in KFold(folds, shuffle=True, random_state=seed).split(np.arange(n))
    ]


def splits_for(data: SurvivalData, folds: int, seed: int) -> tuple[list[Split], str]:
    """The backtest's folds for ``data`` and a sentence saying how they were made.

    Raises:
        DataError: too few rows or distinct times for ``folds``.
    """
    time_col = data.columns.time
    if time_col is not None:
        splits = rolling_origin(data.frame[time_col].to_numpy(), folds)
        return splits, (
            f"rolling origin over {time_col!r}, {len(splits)} folds (each trains on the past)"
        )
    splits = kfold(len(data), folds, seed)
    return splits, (
        f"no time column: seeded k-fold cross-validation ({folds} folds, seed {seed}); "
        "folds are not ordered in time"
    )


@dataclass(frozen=True)
class FoldData:
    """One fold's rows.

    Attributes:
        fit: the training rows as known at the cut (rolling origin: follow-up censored at the
            cut); the fold model is fitted on these.
        train: the same rows as followed up today: the censoring distribution of the IPCW
            weights is estimated on them (the evaluation is made today).
        test: the rows scored.
        window: which rows the fold scores, for the report.
    """

    fit: SurvivalData
    train: SurvivalData
    test: SurvivalData
    window: str


def fold_data(data: SurvivalData, splits: list[Split], time_scale: float = 1.0) -> list[FoldData]:
    """Each split's rows; with a time column, training follow-up censored at the cut."""
    out = []
    time_col = data.columns.time
    for train_idx, test_idx, window in splits:
        train, test = data.subset(train_idx), data.subset(test_idx)
        fit = train
        if time_col is not None:
            fit = train.censored_at(data.frame[time_col].to_numpy()[test_idx].min(), time_scale)
        out.append(FoldData(fit, train, test, window))
    return out


def horizon_sets(folds: list[FoldData]) -> list[np.ndarray]:
    """The durations a horizon must lie inside: every fold's test rows and its training rows
    as known at the cut (beyond those a fold model would extrapolate)."""
    return [f.test.durations for f in folds] + [f.fit.durations for f in folds]


def fold_horizon(
    folds: list[FoldData],
    data: SurvivalData,
    horizon: float | None,
    recipe_horizon: float | None,
) -> tuple[float, str]:
    """The horizon of every fold and how it was chosen.

    An explicit ``horizon`` must lie inside the follow-up of every fold (test rows, and
    training rows as known at the cut); the automatic one is placed there
    (docs/ARCHITECTURE.md, "Statistics of the gates").

    Raises:
        DataError: the explicit horizon is outside that range (the message names it).
    """
    from mlflow_plugin.metrics import auto_horizon, check_horizon

    evaluated = horizon_sets(folds)
    if horizon is not None:
        try:
            return check_horizon(horizon, evaluated), "given"
        except ValueError as exc:
            raise DataError(f"{exc} (every backtest fold)") from None
    try:
        auto = auto_horizon(data.durations, evaluated)
    except ValueError as exc:
        raise DataError(str(exc)) from None
    if recipe_horizon is not None and recipe_horizon < auto:
        return float(recipe_horizon), "the version's own horizon (inside every fold's follow-up)"
    return auto, "automatic: inside the follow-up of every fold"
