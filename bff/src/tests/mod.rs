//! Tests that reach inside the crate: the refresh machinery on an injected clock and a scripted
//! upstream (every interleaving, both refresh memories), and property tests over every input a
//! browser controls. The crate's public surface is tested from `bff/tests/` and `examples/`.

mod fuzz;
mod refresher;
