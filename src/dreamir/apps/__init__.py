"""Applications built from the library, run by the CLI: `dreamir compare` and `dreamir quickstart`."""
