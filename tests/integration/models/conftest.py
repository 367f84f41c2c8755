"""Session fixtures: the real MiniLM weights, a llama.cpp server with Gemma, a fault server.

Each is started once per test session; none is optional: when the local extra is not
installed these tests fail loudly instead of being skipped.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # weights come from installed packages, never the hub

import pytest

from orchestrate.models.local import LocalEmbedder, gemma_270m_path
from orchestrate.models.openai_compat import OpenAICompatModel

from .servers import FaultServer, LlamaServer


@pytest.fixture(scope="session")
def embedder() -> LocalEmbedder:
    model = LocalEmbedder()
    model.load()
    return model


@pytest.fixture(scope="session")
def gemma_path():
    return gemma_270m_path()


@pytest.fixture(scope="session")
def llama_server(gemma_path):
    server = LlamaServer(gemma_path).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def fault_server():
    server = FaultServer().start()
    yield server
    server.stop()


@pytest.fixture
def faults(fault_server) -> FaultServer:
    fault_server.reset()
    return fault_server


@pytest.fixture
async def gemma_http(llama_server):
    model = OpenAICompatModel(
        "gemma-3-270m", base_url=llama_server.url, use_completions=True, json_schema_mode="json_object", timeout=120
    )
    yield model
    await model.aclose()


@pytest.fixture
async def fault_model(faults):
    model = OpenAICompatModel("fault-model", base_url=faults.url, timeout=5)
    yield model
    await model.aclose()
