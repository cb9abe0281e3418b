//! Test-only crate: fault tests (issue 10) that run the real `publisher`, `ws-gateway` and
//! `aggregator` binaries as child processes against a real broker. Everything lives in
//! `tests/`; see `docs/reliability.md` for what is proven and how to run longer fault runs.
