"""One module per pipeline stage; each runs as its own process (`python -m stages.<name>`)."""
