"""The one prompt format shared by training, evaluation and injection.

A question is answered after ``Answer:``; the answer is `` {value}`` and ends at a newline.
"""

from __future__ import annotations

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
