//! Bitmap algorithms over CRoaring bitmaps, owned or zero-copy views alike.
//!
//! - [`bsi`]: bit-sliced indexes for numeric fields: range predicates and aggregates.

pub mod bsi;
