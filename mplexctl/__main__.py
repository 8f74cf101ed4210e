from mplexctl.cli.main import run

run()
