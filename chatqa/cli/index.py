"""``chatqa index``: build (or find up to date) the index of documents ahead of the first question."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from chatqa.cli._app import ChunkTokens, Docs, Json, Profile, app


@app.command()
def index(
    doc: Docs,
    profile: Profile = "default",
    json_out: Json = False,
    chunk_tokens: ChunkTokens = None,
    rebuild: Annotated[bool, typer.Option("--rebuild", help="rebuild even if an up-to-date index exists")] = False,
) -> None:
    """Build or refresh the index of documents ahead of time."""
    from chatqa.cli.ask import load_qa
    from chatqa.progress import Stages, interactive

    progress = interactive() and not json_out
    stages = Stages() if progress else None
    try:
        if stages:
            stages.show("loading the models")
        built = load_qa(profile, chunk_tokens).index(doc, rebuild=rebuild, progress=progress)
    finally:
        if stages:
            stages.stop()
    m = built.manifest
    out = {
        "path": str(built.path),
        "built": built.built,
        "documents": [d["name"] for d in m["documents"]],
        "chunks": len(built.chunks),
        "tokens": built.n_tokens,
        "vectors": int(built.faiss.ntotal),
        "faiss": m.get("faiss"),
        "stats": m.get("stats", {}),
    }
    if json_out:
        print(json.dumps(out))
        return
    verb = "built" if built.built else "up to date (reused)"
    print(f"{verb}: {out['path']}")
    print(f"{len(out['documents'])} document(s), {out['chunks']} chunks, {out['tokens']:,} tokens, "
          f"{out['vectors']} vectors ({out['faiss']})")  # fmt: skip
    if built.built:
        st = out["stats"]
        total = st["chunk_s"] + st["embed_s"] + st["index_s"]
        print(f"took {total:.1f}s (chunk {st['chunk_s']:.1f}s, embed {st['embed_s']:.1f}s, "
              f"index {st['index_s']:.1f}s); {st['tokens'] / max(total, 1e-9):,.0f} tokens/s")  # fmt: skip
