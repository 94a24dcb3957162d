"""chatqa: answer questions over long documents, routing per question between RAG and long context.

The public surface is small on purpose: :class:`ChatQA` (built from a profile) and the :class:`Answer` it
returns. Everything else is importable for research use, but may change.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Answer", "ChatQA", "__version__"]

if TYPE_CHECKING:  # pragma: no cover
    from chatqa.pipeline import Answer, ChatQA


def __getattr__(name: str) -> Any:
    # Lazy: `import chatqa` must stay cheap (the CLI imports it before parsing arguments),
    # while the pipeline pulls in torch, faiss and llama.cpp.
    if name in ("ChatQA", "Answer"):
        from chatqa import pipeline

        return getattr(pipeline, name)
    raise AttributeError(name)
