//! Integration tests of the engine's public API (one binary, modules per topic).

mod golden;
