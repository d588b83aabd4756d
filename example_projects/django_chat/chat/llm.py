"""The site's one way to call an LLM, through LiteLLM."""

import os

# LiteLLM ships a model cost map; without this it downloads a fresh one when imported.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import litellm

MODEL = os.environ.get("CHAT_MODEL", "gpt-4.1-nano")


def reply(messages: list[dict]) -> str:
    response = litellm.completion(model=MODEL, messages=messages)
    return response.choices[0].message.content


async def areply(messages: list[dict]) -> str:
    response = await litellm.acompletion(model=MODEL, messages=messages)
    return response.choices[0].message.content


def streamed_reply(messages: list[dict]) -> str:
    chunks = litellm.completion(
        model=MODEL, messages=messages, stream=True, stream_options={"include_usage": True}
    )
    return "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)


async def astreamed_reply(messages: list[dict]):
    chunks = await litellm.acompletion(
        model=MODEL, messages=messages, stream=True, stream_options={"include_usage": True}
    )
    async for chunk in chunks:
        if chunk.choices and chunk.choices[0].delta.content:
            yield chunk.choices[0].delta.content
