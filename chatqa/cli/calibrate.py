"""``chatqa calibrate``: measure the generator's effective window and write it into the profile
(the measuring lives in :mod:`chatqa.evaluation.calibrate`, imported only when this command runs)."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from chatqa.cli._app import Json, Profile, app


@app.command()
def calibrate(
    profile: Profile = "default",
    json_out: Json = False,
    lengths: Annotated[str, typer.Option(help="total prompt lengths to test (k = 1024)")] = "2k,4k,8k,16k,32k",
    depths: Annotated[str, typer.Option(help="pass key positions, fractions of the context")] = "0.1,0.5,0.9",
    n: Annotated[int, typer.Option("--n", help="passkey cases per length x depth; LongEval cases per file")] = 1,
    threshold: Annotated[float, typer.Option(help="accuracy required (RULER: 0.85)")] = 0.85,
    no_longeval: Annotated[bool, typer.Option("--no-longeval", help="skip LongEval line retrieval")] = False,
    no_nolima: Annotated[bool, typer.Option("--no-nolima", help="skip the NoLiMa non-literal needle probe")] = False,
    relative: Annotated[float, typer.Option(help="NoLiMa: share of the model's 1K base score to keep")] = 0.85,
    rule: Annotated[str, typer.Option(help="window written: stricter | absolute (RULER) | relative (NoLiMa)")] = (
        "stricter"
    ),
    write: Annotated[bool, typer.Option("--write/--dry-run", help="write the profile, or only measure")] = True,
) -> None:
    """Measure the effective context window and write it into the profile."""
    from chatqa.config import load_profile
    from chatqa.evaluation.calibrate import markdown, run
    from chatqa.evaluation.suites import parse_depths, parse_lengths
    from chatqa.progress import interactive, quiet_libraries

    quiet_libraries()  # calibration loads the generator directly, not through ChatQA
    config = load_profile(profile)
    depth_list = parse_depths(depths)
    tty = interactive()

    def notice(text: str) -> None:
        if not json_out:
            print(text, flush=True)
        elif tty:
            print(text, file=sys.stderr, flush=True)

    report = run(config, parse_lengths(lengths), depth_list, n, threshold, not no_longeval, write, notice,
                 progress=tty, nolima=not no_nolima, rule=rule, relative=relative)  # fmt: skip
    if json_out:
        print(json.dumps(report))
        return
    print(markdown(report))
    if report["evidence"]:
        print(f"evidence: {report['evidence']}" + (f"; wrote effective_window to {report['profile_path']}"
                                                   if report["written"] else ""))  # fmt: skip
