//! The portrait.v1 contract (in progress).
