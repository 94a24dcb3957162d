"""The one typer application every command module adds itself to, and the options they share.

Options are defined here once (as ``Annotated`` types) so ``--profile``, ``--json`` and ``--doc`` read and
behave the same in every command. Nothing heavy is imported: ``chatqa --help`` must stay fast.
"""

from __future__ import annotations

from typing import Annotated

import typer

app = typer.Typer(
    name="chatqa",
    help="Answer questions over long documents, routing per question between RAG and long context.",
    add_completion=True,
    no_args_is_help=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

Profile = Annotated[str, typer.Option("--profile", help="profile name (shipped or user config dir) or a YAML path")]
Json = Annotated[bool, typer.Option("--json", help="print one JSON object and nothing else")]
Docs = Annotated[
    list[str],
    typer.Option("--doc", metavar="PATH", help="a .txt/.md file, a folder of them, or - for stdin (repeatable)"),
]
ChunkTokens = Annotated[int | None, typer.Option("--chunk-tokens", help="chunk size in generator tokens")]
Mode = Annotated[
    str | None, typer.Option("--mode", help="route: rag, long, auto, self-route, map-reduce (default: profile)")
]
MaxMapCalls = Annotated[
    int | None,
    typer.Option("--max-map-calls", metavar="N",
                 help="map-reduce: refuse a document that needs more than N map calls (auto answers by RAG)"),
]  # fmt: skip
TopK = Annotated[int | None, typer.Option("--top-k", help="chunks retrieved for RAG (default: profile)")]
Retrieval = Annotated[str | None, typer.Option("--retrieval", help="retrieval method: dense, bm25, hybrid")]
Truncate = Annotated[
    str | None, typer.Option("--truncate", help="'middle': cut the middle of a too-long document for --mode long")
]
MaxNewTokens = Annotated[int | None, typer.Option("--max-new-tokens", help="answer length limit")]
