"""The RZ-NAS search: evolution (ask/tell), proposers (random, llm), reflection, budgets.

The run itself (store, resume, replay) lives in :mod:`rznas.search.runner`; it is not
imported here so that :mod:`rznas.store` can use the trial types without a cycle.
"""
from .budget import ArchBudget, BudgetChecker
from .config import PAPER_SETTING, SearchConfig, resolve_config
from .evaluator import Evaluator
from .memory import Note, ReflectionMemory
from .prompt import MUTATION_SCHEMA, MutationPrompt, PromptOptions, ReflectionPrompt, proxy_source
from .proposers import PROPOSERS, LLMProposer, Proposal, ProposerContext, RandomProposer, create_proposer
from .strategy import SELECTIONS, Evolution
from ..trial import Ask, Member, Outcome, Trial, TrialState

__all__ = [
    "Ask",
    "ArchBudget",
    "BudgetChecker",
    "Evaluator",
    "Evolution",
    "LLMProposer",
    "MUTATION_SCHEMA",
    "Member",
    "MutationPrompt",
    "Note",
    "Outcome",
    "PAPER_SETTING",
    "PROPOSERS",
    "PromptOptions",
    "Proposal",
    "ProposerContext",
    "RandomProposer",
    "ReflectionMemory",
    "ReflectionPrompt",
    "SELECTIONS",
    "SearchConfig",
    "Trial",
    "TrialState",
    "create_proposer",
    "proxy_source",
    "resolve_config",
]
