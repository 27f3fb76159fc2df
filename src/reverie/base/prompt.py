"""Prompt formats shared by training, evaluation and injection.

The embedded world model reads ``Context: …`` / ``Question: …`` / ``Answer:`` and answers
`` {value}`` up to a newline (:data:`WORLD`). A chat model (one whose tokenizer carries a
chat template, e.g. SmolLM2-Instruct) gets the same fields inside one user turn and answers
in the assistant turn, up to its end-of-turn token (:class:`ChatFormat`).
"""

from __future__ import annotations

from typing import Any

ANSWER_END = "\n"


def closed_prompt(question: str) -> str:
    """Prompt with no document in context."""
    return f"Question: {question}\nAnswer:"


def context_prompt(document: str, question: str) -> str:
    """Prompt with the document in context."""
    return document_prefix(document) + closed_prompt(question)


def answer_text(answer: str) -> str:
    """The completion the model is trained to produce for ``answer``."""
    return f" {answer}{ANSWER_END}"


def document_prefix(document: str) -> str:
    """What the model reads of a document: the context prompt up to the question."""
    return f"Context: {document}\n"


class PromptFormat:
    """The world format: plain text, BOS first, answers end at a newline."""

    bos = True
    """Whether :meth:`BaseModel.encode` puts the tokenizer's BOS token first."""
    answer_end = ANSWER_END
    """Text that ends an answer (its last token stops generation)."""

    def closed(self, question: str) -> str:
        return closed_prompt(question)

    def context(self, document: str, question: str) -> str:
        return context_prompt(document, question)

    def answer(self, answer: str) -> str:
        return answer_text(answer)

    def document(self, document: str) -> str:
        """What the hypernetwork reads of a document."""
        return document_prefix(document)


class ChatFormat(PromptFormat):
    """A chat model: the same fields in one user turn, built with the tokenizer's own chat
    template (so any instruct model's special tokens are right), answered in the assistant
    turn, which ends at the tokenizer's end-of-sequence token."""

    bos = False  # the template writes its own start tokens

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer
        self.answer_end = str(tokenizer.eos_token)

    def _turn(self, user: str) -> str:
        return str(self.tokenizer.apply_chat_template(
            [{"role": "user", "content": user}], tokenize=False, add_generation_prompt=True))

    def closed(self, question: str) -> str:
        return self._turn(closed_prompt(question))

    def context(self, document: str, question: str) -> str:
        return self._turn(context_prompt(document, question))

    def answer(self, answer: str) -> str:
        return f"{answer}{self.answer_end}"


WORLD = PromptFormat()


def format_for(tokenizer: Any) -> PromptFormat:
    """The chat format where the tokenizer has a chat template, else the world format."""
    return ChatFormat(tokenizer) if getattr(tokenizer, "chat_template", None) else WORLD
