"""Triggers: runs started by events — broker messages, cron slots and webhooks.

Each event is one run, however often it is delivered: the run's id is derived from the
trigger's name and the event's idempotency key (a message id, a slot time, a webhook's
``Idempotency-Key``), and a run whose id exists is never created twice. Messages are
acknowledged only after their run is stored; poison messages become dead runs in the
dead-letter queue. ``orchestrate worker --triggers module:NAME`` serves them.

* :class:`NatsTrigger` (extra ``nats``), :class:`RedisTrigger` (``redis``),
  :class:`RabbitMQTrigger` (``rabbitmq``): one run per message;
* :class:`Schedule` (``cron``): one run per cron slot, in a time zone, across workers;
* :class:`WebhookTrigger` and :func:`webhook_routes` (``server``): signed HTTP requests.

The broker clients are imported when a trigger connects, so this package imports
without any of them.
"""

from __future__ import annotations

from orchestrate.triggers.base import (
    BrokerTrigger,
    Delivery,
    EventOutcome,
    PoisonMessageError,
    Started,
    Trigger,
    TriggerError,
    TriggerStats,
    event_run_id,
    json_body,
    run_triggers,
    start_for_event,
)
from orchestrate.triggers.cron import Misfire, Schedule
from orchestrate.triggers.nats import NatsTrigger
from orchestrate.triggers.rabbitmq import RabbitMQTrigger
from orchestrate.triggers.redis import RedisTrigger
from orchestrate.triggers.webhook import WebhookTrigger, webhook_routes

__all__ = [
    "BrokerTrigger",
    "Delivery",
    "EventOutcome",
    "Misfire",
    "NatsTrigger",
    "PoisonMessageError",
    "RabbitMQTrigger",
    "RedisTrigger",
    "Schedule",
    "Started",
    "Trigger",
    "TriggerError",
    "TriggerStats",
    "WebhookTrigger",
    "event_run_id",
    "json_body",
    "run_triggers",
    "start_for_event",
    "webhook_routes",
]
