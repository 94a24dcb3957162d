from chatqa.cli import run

run()
