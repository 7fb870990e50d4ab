"""The JSON the dashboard page polls: one run's summary, curve, population, trials and LLM calls."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..report import population_series
from ..run_reader import RunReader, population, summarize

#: characters of a reply shown in the calls table (the whole reply comes with the call's details)
REPLY_PREVIEW = 160


def run_payload(run_dir: Path) -> dict[str, Any]:
    """Everything the page shows for one run, read in one snapshot (prompts come per call)."""
    with RunReader(run_dir) as reader:
        with reader.snapshot():
            rows = reader.trial_rows()
            summary = summarize(reader, rows, accuracy=False)
            calls = reader.llm_calls()
            reflections = reader.reflections()
            final = reader.final_selection()
            usage = reader.usage()
    series = population_series(rows, summary.population)
    return {
        "summary": summary.to_dict(),
        "usage": usage,
        "series": [{"iteration": s.iteration, "best": s.best, "median": s.median, "valid_rate": s.valid_rate}
                   for s in series],
        "population": [_trial(r) for r in population(rows, summary.population)],
        "trials": [_trial(r, reflections.get(r["number"])) for r in rows],
        "calls": [_call(c) for c in calls],
        "final_selection": final,
    }


def call_payload(run_dir: Path, call_id: int) -> dict[str, Any] | None:
    """One LLM call with its prompt messages, whole reply and its trial's reflection."""
    with RunReader(run_dir) as reader:
        call = reader.call_request(call_id)
        if call is None:
            return None
        reflection = reader.reflections().get(call["trial_number"])
    request = call.pop("request") or {}
    return {
        **call,
        "messages": request.get("messages", []),
        "max_tokens": request.get("max_tokens"),
        "reflection": reflection,
    }


def _trial(row: dict[str, Any], reflection: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "number": row["number"],
        "iteration": row["iteration"],
        "state": row["state"],
        "score": row["score"],
        "encoded": row["encoded"],
        "reason": row["reason"],
        "parent_number": row["parent_number"],
        "thinking": row["thinking"],
        "total_s": row["timings"].get("total_s"),
        "reflection": reflection["note"] if reflection else None,
    }


def _call(call: dict[str, Any]) -> dict[str, Any]:
    reply = call["reply_text"]
    return {
        "id": call["id"],
        "trial_number": call["trial_number"],
        "seq": call["seq"],
        "purpose": call["purpose"],
        "model": call["model"],
        "temperature": call["temperature"],
        "input_tokens": call["input_tokens"],
        "output_tokens": call["output_tokens"],
        "latency_s": call["latency_s"],
        "cost_usd": call["cost_usd"],
        "cache_hit": bool(call["cache_hit"]),
        "reply_preview": reply if len(reply) <= REPLY_PREVIEW else reply[:REPLY_PREVIEW] + "…",
    }


def dumps(value: Any) -> str:
    """JSON for the page; non-finite floats (possible in measurements) become null."""
    return json.dumps(_clean(value), allow_nan=False, default=str)


def _clean(value: Any) -> Any:
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value
