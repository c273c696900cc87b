"""One module per command; importing them registers the commands on ``forecast.cli.app.main``."""
