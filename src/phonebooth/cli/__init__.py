"""The `phonebooth` command line: server-side commands and a client of the REST API."""
