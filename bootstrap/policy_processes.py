"""The policy runner (``clientele policies run``, or inside ``serve``): each policy's process
manager reacting to the store's log and sweeping, and the churn model's periodic fit."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial

from bootstrap.processes import InThread, Process, Worker
from bootstrap.services import Services
from consumers.campaign_schedule import scheduled_launches
from consumers.churn_fit import ModelFitter
from consumers.lifecycle_policy import LifecycleRunner
from consumers.loyalty_policy import LoyaltyRunner
from consumers.periodic import Every
from infra.notifications import Listener, Wakeup


def lifecycle_runner(services: Services) -> LifecycleRunner:
    """The lifecycle policy's process manager on ``services`` (sweeps and simulations by hand;
    :func:`policy_runner` runs it), its checkpoint beside the event store."""
    return LifecycleRunner(
        services.store,
        services.commands,
        services.policies,
        services.store_db,
        models=services.models,
        sweep_seconds=services.settings.policy_sweep_seconds,
    )


def model_fitter(services: Services) -> ModelFitter:
    """Fits the churn model on the analytics read model and records it in the store."""
    wake = services.runner.wake if services.runner is not None else None
    return ModelFitter(services.read_store, services.models, on_commit=wake)


def loyalty_runner(services: Services) -> LoyaltyRunner:
    """The loyalty policy's process manager on ``services`` (docs/adr/0010), alike."""
    return LoyaltyRunner(
        services.store,
        services.commands,
        services.policies,
        services.store_db,
        sweep_seconds=services.settings.policy_sweep_seconds,
    )


def policy_runners(services: Services) -> list[LifecycleRunner]:
    """Every policy's process manager, in the order sweeps run them."""
    return [lifecycle_runner(services), loyalty_runner(services)]


def policy_parts(services: Services) -> tuple[str, list[LifecycleRunner], list[Worker]]:
    """(what they do, each policy's process manager, the churn model's periodic fit) of the
    policy runner: each runner reacts to the events it follows in the store's log and sweeps
    as of now every ``CLIENTELE_POLICY_SWEEP_SECONDS`` (docs/adr/0008, 0010, 0011); the model
    is fitted every ``CLIENTELE_MODEL_FIT_SECONDS`` (0: never; docs/adr/0009)."""
    runners = policy_runners(services)
    deciding = "; ".join(f"{r.decides} from position {r.position()}" for r in runners)
    every = services.settings.model_fit_seconds
    beside: list[Worker] = (
        [Every(every, model_fitter(services).fit_now, "churn-model-fit")] if every else []
    )
    launching = services.settings.campaign_schedule_seconds  # scheduled campaigns (ADR 0014)
    beside += scheduled_launches(services.launcher, launching)
    channel = services.store.backend.notify_channel
    if channel is not None:  # PostgreSQL: woken by every write, whoever made it
        listener = Listener(services.settings.database_url, [channel])
        beside.append(Wakeup(listener, partial(wake_all, runners), "policy-wakeup"))
    summary = (
        f"deciding {deciding}; sweeping every {services.settings.policy_sweep_seconds:g} s"
        + (f"; fitting the churn model every {every:g} s" if every else "")
        + (f"; launching scheduled campaigns every {launching:g} s" if launching else "")
    )
    return summary, runners, beside


def wake_all(runners: list[LifecycleRunner], *_: object) -> None:
    """Wake every policy runner (after a write was noticed)."""
    for runner in runners:
        runner.wake()


@contextmanager
def policy_runner(services: Services) -> Iterator[Process]:
    """The policy runner (``clientele policies run``), alike in embedded and full mode
    (:func:`policy_parts`): the first policy's process manager in the foreground, the others
    and the model fit in threads of their own."""
    summary, (first, *others), beside = policy_parts(services)
    yield Process(summary, first, [*(InThread(r, f"policy-{r.name}") for r in others), *beside])
