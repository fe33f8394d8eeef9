//! The `portrait.v1` wire contract of Portrait and its generated Rust code.
//!
//! This crate is the single source of truth shared by `portraitd` (the server) and
//! `portrait-client`. Its only input is `proto/portrait/v1/portrait.proto`; `build.rs` parses it
//! with the pure-Rust `protox` compiler (no system `protoc` is needed) and generates, with
//! `tonic-prost-build`:
//!
//! - the message types, e.g. [`v1::CountRequest`], [`v1::Expr`], [`v1::Node`];
//! - a client per service, e.g. [`v1::query_service_client::QueryServiceClient`];
//! - a server trait per service, e.g. [`v1::query_service_server::QueryService`].
//!
//! The services are `CatalogService`, `QueryService`, `AnalysisService`, `BehaviourService` and
//! `AdminService` (`portrait.proto`), and `IngestService` (`ingest.proto`). The
//! rules for evolving `v1` without breaking deployed clients are in `proto/README.md`.
//!
//! ```
//! use portrait_proto::v1::{CountRequest, Expr, expr};
//!
//! let request = CountRequest {
//!     table: "users".into(),
//!     expr: Some(Expr { kind: Some(expr::Kind::Text("vip AND age >= 30".into())) }),
//!     as_of: None,
//! };
//! assert_eq!(request.table, "users");
//! ```

/// Generated types and gRPC stubs of the `portrait.v1` package.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod v1 {
    tonic::include_proto!("portrait.v1");
}

/// The encoded `google.protobuf.FileDescriptorSet` of `portrait.v1` (including its source
/// comments), for gRPC server reflection (`tonic-reflection`'s
/// `register_encoded_file_descriptor_set`).
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/portrait_descriptor.bin"));

/// The fully qualified protobuf package of this API version.
pub const PACKAGE: &str = "portrait.v1";

#[cfg(test)]
mod tests {
    use prost::Message as _;

    use super::*;

    #[test]
    fn descriptor_set_describes_every_service() {
        let fds = prost_types::FileDescriptorSet::decode(FILE_DESCRIPTOR_SET).unwrap();
        let file = fds
            .file
            .iter()
            .find(|f| f.package() == PACKAGE)
            .expect("portrait.v1 file in descriptor set");
        let services: Vec<&str> = file.service.iter().map(|s| s.name()).collect();
        assert_eq!(
            services,
            [
                "CatalogService",
                "QueryService",
                "AnalysisService",
                "BehaviourService",
                "AdminService"
            ]
        );
        assert!(
            file.source_code_info.is_some(),
            "comments must be kept for reflection clients"
        );
    }

    #[test]
    fn messages_round_trip() {
        let node = v1::Node {
            kind: Some(v1::node::Kind::LogicalNot(Box::new(v1::node::Not {
                operand: Some(Box::new(v1::Node {
                    kind: Some(v1::node::Kind::Flag(v1::node::Flag { path: "vip".into() })),
                })),
            }))),
        };
        let request = v1::CountRequest {
            table: "users".into(),
            expr: Some(v1::Expr {
                kind: Some(v1::expr::Kind::Ast(node)),
            }),
            as_of: Some("2026-11-25".into()),
        };
        let decoded = v1::CountRequest::decode(request.encode_to_vec().as_slice()).unwrap();
        assert_eq!(decoded, request);
    }
}
