"""The openai backends against a local server that speaks OpenAI's chat-completions and embeddings API."""

from __future__ import annotations

import json
import re
from decimal import Decimal

import pytest

from app.core.pricing import cost_usd
from app.rag.embeddings import EmbeddingError, OpenAIEmbedder
from app.settings import load_settings
from tests.support.openai_server import first_sentence, source_texts


def test_openai_answer_is_grounded_cited_and_costed(openai_client, fake_openai):
    body = openai_client.post("/v1/chat", json={"question": "What is the Zero Moment Point?"}).json()
    assert body["answer_backend"] == "openai" and body["answer"].endswith("[1].")
    assert body["citations_verified"] is True and body["citation_repairs"] == {"unused": 4} and len(body["sources"]) == 1
    usage = body["usage"]
    assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0
    expected = cost_usd("gpt-4o-mini", input_tokens=usage["prompt_tokens"], output_tokens=usage["completion_tokens"])
    assert Decimal(str(usage["cost_usd"])) == pytest.approx(expected, abs=Decimal("1e-8"))
    prompt = fake_openai.requests[-1]["body"]["messages"]
    assert prompt[0]["role"] == "system" and "[1]" in prompt[-1]["content"]
    assert "Zero Moment Point" in prompt[-1]["content"]


def faulty_reply(messages):
    """Out of order ([2] first), a phantom marker ([9]) and a claim no source supports."""
    sources = source_texts(messages)
    return (f"{first_sentence(sources[2])} [2]. {first_sentence(sources[1])} [1][9]. "
            "The Eiffel Tower is repainted bronze every seven years by robots [3].")


def test_scripted_citation_faults_are_repaired_through_the_service(openai_client, fake_openai):
    fake_openai.reply = faulty_reply
    body = openai_client.post("/v1/chat", json={"question": "What is the Zero Moment Point?", "k": 5}).json()
    sources = source_texts(fake_openai.requests[-1]["body"]["messages"])
    assert body["answer_backend"] == "openai" and body["citations_verified"] is True
    assert body["answer"] == f"{first_sentence(sources[2])} [1]. {first_sentence(sources[1])} [2]."
    assert "Eiffel" not in body["answer"] and "[9]" not in body["answer"] and len(body["sources"]) == 2
    assert body["citation_repairs"] == {"phantom": 1, "unsupported": 1, "renumbered": 1, "unused": 3}
    prompt = fake_openai.requests[-1]["body"]["messages"][-1]["content"]
    first, second = body["sources"]
    assert f"[2] {first['title']} — {first['heading']}\n" in prompt and f"[1] {second['title']} — {second['heading']}\n" in prompt
    metrics = openai_client.get("/metrics").text
    for kind in ("phantom", "unsupported", "renumbered"):
        assert f'rag_citation_failures_total{{kind="{kind}"}}' in metrics


def test_stream_ends_with_the_repaired_answer_and_its_sources(openai_client, fake_openai):
    fake_openai.reply = faulty_reply
    with openai_client.stream("POST", "/v1/chat/stream", json={"question": "What is the Zero Moment Point?"}) as response:
        raw = "".join(response.iter_text())
    events = [(m.group(1), json.loads(m.group(2))) for m in re.finditer(r"event: (\w+)\ndata: (.*)\n\n", raw)]
    streamed = "".join(d["text"] for k, d in events if k == "delta")
    final = events[-1][1]
    assert events[-1][0] == "final" and "[9]" in streamed and "Eiffel" in streamed
    assert "[9]" not in final["answer"] and "Eiffel" not in final["answer"] and final["citations_verified"] is True
    assert sorted(int(n) for n in set(re.findall(r"\[(\d+)\]", final["answer"]))) == [1, 2] == list(
        range(1, len(final["sources"]) + 1))


def test_an_answer_with_no_supported_claim_falls_back_to_the_extractive_answer(openai_client, fake_openai):
    fake_openai.reply = "Bread needs flour, water, salt and a long, patient rise in a warm kitchen [1]."
    body = openai_client.post("/v1/chat", json={"question": "What is the Zero Moment Point?"}).json()
    assert body["answer_backend"] == "extractive-fallback" and "Bread" not in body["answer"]
    assert body["citations_verified"] is True and body["citation_repairs"]["no_supported_claim"] == 1
    assert re.search(r"\[1\]", body["answer"]) and body["sources"]


def test_selection_is_quoted_in_the_prompt(openai_client, fake_openai):
    selection = {"text": "The ZMP must remain inside the support polygon.", "page_url": "/docs/kinematics-and-locomotion"}
    body = openai_client.post("/v1/chat", json={"question": "Why does this matter?", "selection": selection}).json()
    prompt = fake_openai.requests[-1]["body"]["messages"][-1]["content"]
    assert "selected this passage on the page /docs/kinematics-and-locomotion:\n> The ZMP must remain" in prompt
    assert body["covered"] is True and body["sources"][0]["url"].startswith("/docs/kinematics-and-locomotion")


def test_openai_stream_relays_deltas_and_usage(openai_client):
    with openai_client.stream("POST", "/v1/chat/stream", json={"question": "What is a URDF joint?"}) as response:
        raw = "".join(response.iter_text())
    events = [(m.group(1), json.loads(m.group(2))) for m in re.finditer(r"event: (\w+)\ndata: (.*)\n\n", raw)]
    final = events[-1][1]
    assert events[-1][0] == "final" and final["answer_backend"] == "openai"
    assert "".join(d["text"] for k, d in events if k == "delta") == final["answer"]
    assert final["usage"]["completion_tokens"] == len(final["answer"].split())


@pytest.mark.parametrize("mode", ["error", "slow"])
def test_llm_failure_or_timeout_falls_back_to_the_extractive_answer(openai_client, fake_openai, mode):
    fake_openai.mode, fake_openai.slow_seconds = mode, 3
    response = openai_client.post("/v1/chat", json={"question": "What does a Kalman filter predict?"})
    body = response.json()
    assert response.status_code == 200 and body["answer_backend"] == "extractive-fallback"
    assert re.search(r"\[\d\]", body["answer"]) and body["sources"]
    metrics = openai_client.get("/metrics").text
    assert 'rag_query_errors_total{error_code="llm_fallback"}' in metrics


def test_off_topic_question_never_reaches_the_llm(openai_client, fake_openai):
    body = openai_client.post("/v1/chat", json={"question": "Who won the football world cup in 1998?"}).json()
    assert body["covered"] is False and not any(r["path"] == "/v1/chat/completions" for r in fake_openai.requests)


def test_openai_embeddings_return_vectors_and_token_usage(fake_openai):
    settings = load_settings(_env_file=None, embedding_backend="openai", openai_api_key="sk-test",
                             openai_base_url=fake_openai.base_url, embedding_batch_size=2, openai_max_retries=0)
    result = OpenAIEmbedder(settings).embed(["one text", "two texts here", "three"])
    assert len(result.vectors) == 3 and len(result.vectors[0]) == 1536 and result.tokens == 6
    assert [r["path"] for r in fake_openai.requests] == ["/v1/embeddings", "/v1/embeddings"]


def test_openai_embeddings_with_a_rejected_key_raise_a_clear_error(fake_openai):
    settings = load_settings(_env_file=None, embedding_backend="openai", openai_api_key="sk-wrong",
                             openai_base_url=fake_openai.base_url, openai_max_retries=0)
    with pytest.raises(EmbeddingError, match="AuthenticationError"):
        OpenAIEmbedder(settings).embed(["text"])


def test_price_table_is_versioned_by_date():
    from datetime import date

    assert cost_usd("gpt-4o", input_tokens=1_000_000, day=date(2024, 6, 1)) == Decimal("5.00")
    assert cost_usd("gpt-4o", input_tokens=1_000_000, day=date(2025, 1, 1)) == Decimal("2.50")
    assert cost_usd("all-MiniLM-L6-v2", input_tokens=10**9) == 0
