"""Client commands of the `docket` CLI that talk to a running Docket server."""
