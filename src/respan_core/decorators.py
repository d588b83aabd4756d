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

import asyncio
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
    # Each step runs in the generator's own context: between items the caller's context is
    # current, so nothing leaks into the caller, and the generator keeps the scope it
    # started in even after the caller has left it.
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        entity = _start(kind, name, args, kwargs)
        context = entity.new_context()
        items = []
        try:
            generator = context.run(function, *args, **kwargs)
            item = context.run(next, generator)
            while True:
                items.append(item)
                try:
                    sent = yield item
                except GeneratorExit:
                    context.run(generator.close)
                    raise
                except BaseException as exception:
                    item = context.run(generator.throw, exception)
                else:
                    item = context.run(generator.send, sent)
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
    # As for generators; a coroutine runs in the context of the task awaiting it, so each
    # step is its own task created in the generator's context.
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        entity = _start(kind, name, args, kwargs)
        context = entity.new_context()

        def step(awaitable: Any) -> Any:
            return asyncio.create_task(awaitable, context=context)

        items = []
        try:
            generator = context.run(function, *args, **kwargs)
            item = await step(generator.__anext__())
            while True:
                items.append(item)
                try:
                    sent = yield item
                except GeneratorExit:
                    await step(generator.aclose())
                    raise
                except BaseException as exception:
                    item = await step(generator.athrow(exception))
                else:
                    item = await step(generator.asend(sent))
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
