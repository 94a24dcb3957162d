"""README's two set-up commands are the contract with new users; CI must run the test command verbatim."""

from __future__ import annotations

import re

from tests.conftest import ROOT


def commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    quick = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", quick)


def test_readme_has_an_install_and_ask_and_an_install_and_test_command() -> None:
    ask, test = commands()[:2]
    assert ask.startswith("pip install") and "chatqa ask --doc examples/" in ask
    assert (ROOT / ask.split("--doc ")[1].split()[0]).is_file()
    assert test.startswith("pip install") and test.endswith("&& pytest")


def test_ci_runs_the_readme_test_command() -> None:
    test = commands()[1]
    ci = (ROOT / ".ci" / "run").read_text()
    assert test in ci.splitlines()
