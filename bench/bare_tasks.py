"""Bare Celery baselines, measured on the same broker and worker as the engine."""

from __future__ import annotations

import time

import redis
from celery import shared_task
from django.conf import settings


@shared_task(name="bench.noop", ignore_result=True)
def noop(*args: object) -> None:
    return None


@shared_task(name="bench.mark", ignore_result=True)
def mark(*args: object, key: str = "") -> None:
    redis.Redis.from_url(settings.CELERY_BROKER_URL).set(key, time.time())


@shared_task(name="bench.member", ignore_result=False)
def member(i: int) -> int:
    return i


@shared_task(name="bench.join", ignore_result=True)
def join(results: list[int], key: str) -> None:
    redis.Redis.from_url(settings.CELERY_BROKER_URL).set(key, f"{time.time()}:{len(results)}")
