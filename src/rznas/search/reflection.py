"""The reflection call: after every iteration, advice from the parent, the child, the score
change and the exception text (RZ-NAS section 1, step 5)."""
from __future__ import annotations

from .gateway import CallRecord, LLMGateway, call_seed
from .prompt import PreviousOutcome, ReflectionPrompt
from .proposers import Proposal, Temperature
from ..trial import Member, Outcome


def describe_child(proposal: Proposal, child_encoded: str | None) -> str:
    """The child as a reflection sees it: its encoding, or the start of an unusable reply."""
    if child_encoded is not None:
        return child_encoded
    if proposal.raw:
        flat = " ".join(proposal.raw.split())
        return f"(unusable reply) {flat[:300]}{'...' if len(flat) > 300 else ''}"
    return "(no architecture)"


def previous_outcome(
    parent: Member, parent_encoded: str, proposal: Proposal, outcome: Outcome, child_encoded: str | None
) -> PreviousOutcome:
    """One finished mutation step, for the reflection call or the next fused mutation call."""
    return PreviousOutcome(
        parent=parent_encoded,
        parent_score=parent.score,
        child=describe_child(proposal, child_encoded),
        outcome=outcome.state.value,
        child_score=outcome.score,
        exception=outcome.reason,
    )


class Reflector:
    """Asks the LLM for short advice on one mutation step; the memory decides what is kept."""

    def __init__(self, gateway: LLMGateway, prompt: ReflectionPrompt, temperature: Temperature, *, max_tokens: int = 160):
        self.gateway = gateway
        self.prompt = prompt
        self.temperature = temperature
        self.max_tokens = max_tokens

    def reflect(
        self,
        parent: Member,
        parent_encoded: str,
        proposal: Proposal,
        outcome: Outcome,
        child_encoded: str | None,
        *,
        temperature: Temperature | None = None,
        seed_key: tuple[object, ...] | None = None,
    ) -> CallRecord:
        """One reflection call; the reply text is the advice. ``temperature``: a per-proposal
        source instead of the shared one (concurrent search); ``seed_key``: the trial's persisted
        identity, from which the model seed is derived."""
        step = previous_outcome(parent, parent_encoded, proposal, outcome, child_encoded)
        messages = self.prompt.messages(
            parent=step.parent,
            parent_score=step.parent_score,
            child=step.child,
            outcome=step.outcome,
            child_score=step.child_score,
            exception=step.exception,
        )
        draw = (temperature or self.temperature).draw()
        seed = call_seed(*seed_key, "reflect", 0) if seed_key is not None else None
        return self.gateway.complete("reflect", messages, temperature=draw, max_tokens=self.max_tokens, seed=seed)
