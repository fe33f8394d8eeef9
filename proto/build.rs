//! Generates the `portrait.v1` Rust code from `proto/portrait/v1/portrait.proto` and
//! `proto/portrait/v1/ingest.proto`.
//!
//! The `.proto` file is parsed by `protox` (pure Rust), so building needs no system `protoc`.
//! The encoded `FileDescriptorSet` is also written to `OUT_DIR/portrait_descriptor.bin` for gRPC
//! reflection.

use std::path::PathBuf;

use prost::Message as _;

const PROTO_ROOT: &str = "proto";
const PROTO_FILES: [&str; 2] = [
    "proto/portrait/v1/portrait.proto",
    "proto/portrait/v1/ingest.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed={PROTO_ROOT}");

    let fds = protox::compile(PROTO_FILES, [PROTO_ROOT])?;

    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out_dir.join("portrait_descriptor.bin"), fds.encode_to_vec())?;

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
