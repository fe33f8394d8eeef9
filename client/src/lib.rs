//! Rust client for portraitd (in progress).
