//! Test-only crate: see `tests/` and `scripts/`.
