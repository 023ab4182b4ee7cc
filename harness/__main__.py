from harness.commands.cli import run

run()
