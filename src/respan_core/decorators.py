"""`@workflow` and `@task`: give a function, coroutine or generator its own span.

    @task(name="generate_outline")
    def outline(topic): ...

    @workflow(name="content_pipeline")
    def pipeline(topic):
        plan = outline(topic)   # a task span under the workflow span

A generator's span lasts until it is exhausted or closed. Exceptions are recorded on the span
and re-raised unchanged. Inputs and outputs are recorded as JSON while content capture is on.
"""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import Callable
from typing import Any, TypeVar

from . import client, wire
from .entity import TASK, WORKFLOW, Entity

F = TypeVar("F", bound=Callable[..., Any])


def workflow(name: str | F | None = None) -> Any:
    """Trace the decorated function as a workflow (the root of a unit of work)."""
    return _entity_decorator(WORKFLOW, name)


def task(name: str | F | None = None) -> Any:
    """Trace the decorated function as a task (a step inside a workflow)."""
    return _entity_decorator(TASK, name)


def _entity_decorator(kind: str, name: str | Callable | None) -> Any:
    if callable(name):  # used bare: @workflow
        return _entity_decorator(kind, None)(name)

    def decorate(function: F) -> F:
        entity_name = name or function.__name__
        if inspect.isasyncgenfunction(function):
            wrapper = _async_generator_wrapper(kind, entity_name, function)
        elif inspect.iscoroutinefunction(function):
            wrapper = _coroutine_wrapper(kind, entity_name, function)
        elif inspect.isgeneratorfunction(function):
            wrapper = _generator_wrapper(kind, entity_name, function)
        else:
            wrapper = _function_wrapper(kind, entity_name, function)
        return functools.wraps(function)(wrapper)

    return decorate


def _start(kind: str, name: str, args: tuple, kwargs: dict) -> Entity:
    attributes = {}
    if client.trace_content():
        attributes[wire.ENTITY_INPUT] = _to_json({"args": args, "kwargs": kwargs})
    return Entity(kind, name, attributes=attributes)


def _finish(entity: Entity, output: Any) -> None:
    if client.trace_content() and output is not None:
        entity.span.set_attribute(wire.ENTITY_OUTPUT, _to_json(output))


def _function_wrapper(kind: str, name: str, function: Callable) -> Callable:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        entity = _start(kind, name, args, kwargs)
        try:
            with entity.activated():
                result = function(*args, **kwargs)
            _finish(entity, result)
            return result
        except BaseException as exception:
            entity.fail(exception)
            raise
        finally:
            entity.end()

    return wrapper


def _coroutine_wrapper(kind: str, name: str, function: Callable) -> Callable:
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        entity = _start(kind, name, args, kwargs)
        try:
            with entity.activated():
                result = await function(*args, **kwargs)
            _finish(entity, result)
            return result
        except BaseException as exception:
            entity.fail(exception)
            raise
        finally:
            entity.end()

    return wrapper


def _generator_wrapper(kind: str, name: str, function: Callable) -> Callable:
    # The generator runs inside the span's context only while it runs: between items the
    # caller's own context is current, so nothing leaks into the caller.
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        entity = _start(kind, name, args, kwargs)
        items = []
        try:
            with entity.activated():
                generator = function(*args, **kwargs)
                item = next(generator)
            while True:
                items.append(item)
                try:
                    sent = yield item
                except GeneratorExit:
                    with entity.activated():
                        generator.close()
                    raise
                except BaseException as exception:
                    with entity.activated():
                        item = generator.throw(exception)
                else:
                    with entity.activated():
                        item = generator.send(sent)
        except StopIteration as stop:
            _finish(entity, items)
            return stop.value
        except GeneratorExit:
            raise
        except BaseException as exception:
            entity.fail(exception)
            raise
        finally:
            entity.end()

    return wrapper


def _async_generator_wrapper(kind: str, name: str, function: Callable) -> Callable:
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        entity = _start(kind, name, args, kwargs)
        items = []
        try:
            with entity.activated():
                generator = function(*args, **kwargs)
                item = await generator.__anext__()
            while True:
                items.append(item)
                try:
                    sent = yield item
                except GeneratorExit:
                    with entity.activated():
                        await generator.aclose()
                    raise
                except BaseException as exception:
                    with entity.activated():
                        item = await generator.athrow(exception)
                else:
                    with entity.activated():
                        item = await generator.asend(sent)
        except StopAsyncIteration:
            _finish(entity, items)
        except GeneratorExit:
            raise
        except BaseException as exception:
            entity.fail(exception)
            raise
        finally:
            entity.end()

    return wrapper


def _to_json(value: Any) -> str:
    try:
        return json.dumps(value, default=str)
    except (TypeError, ValueError):
        return json.dumps(repr(value))
