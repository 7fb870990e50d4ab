"""The reflection call: after every iteration, advice from the parent, the child, the score
change and the exception text (RZ-NAS section 1, step 5)."""
from __future__ import annotations

from .gateway import CallRecord, LLMGateway
from .prompt import ReflectionPrompt
from .proposers import Proposal, Temperature
from .trial import Member, Outcome


class Reflector:
    """Asks the LLM for short advice on one mutation step; the memory decides what is kept."""

    def __init__(self, gateway: LLMGateway, prompt: ReflectionPrompt, temperature: Temperature, *, max_tokens: int = 160):
        self.gateway = gateway
        self.prompt = prompt
        self.temperature = temperature
        self.max_tokens = max_tokens

    def reflect(self, parent: Member, parent_encoded: str, proposal: Proposal, outcome: Outcome, child_encoded: str | None) -> CallRecord:
        """One reflection call; the reply text is the advice."""
        if child_encoded is not None:
            child = child_encoded
        elif proposal.raw:
            flat = " ".join(proposal.raw.split())
            child = f"(unusable reply) {flat[:300]}{'...' if len(flat) > 300 else ''}"
        else:
            child = "(no architecture)"
        messages = self.prompt.messages(
            parent=parent_encoded,
            parent_score=parent.score,
            child=child,
            outcome=outcome.state.value,
            child_score=outcome.score,
            exception=outcome.reason,
        )
        return self.gateway.complete(
            "reflect", messages, temperature=self.temperature.draw(), max_tokens=self.max_tokens
        )
