//! Health, reflection, catalog, admin and shutdown.

use std::time::{Duration, Instant};

use portrait_proto::v1::{self, admin_service_client::AdminServiceClient};
use portrait_server::Limits;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
use tonic_reflection::pb::v1::{
    ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
    server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
};

use crate::harness::{Harness, USERS, engine_count, text};

#[tokio::test]
async fn health_reports_every_service_serving() {
    let h = Harness::start().await;
    let mut health = HealthClient::new(h.channel.clone());
    for service in ["", "portrait.v1.QueryService", "portrait.v1.CatalogService"] {
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status();
        assert_eq!(status, ServingStatus::Serving, "{service:?}");
    }
}

#[tokio::test]
async fn reflection_lists_the_services() {
    let h = Harness::start().await;
    let mut reflection = ServerReflectionClient::new(h.channel.clone());
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = reflection
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let response = responses.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection answer: {response:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for expected in [
        "portrait.v1.CatalogService",
        "portrait.v1.QueryService",
        "portrait.v1.AnalysisService",
        "portrait.v1.AdminService",
        "grpc.health.v1.Health",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} in {names:?}"
        );
    }
}

#[tokio::test]
async fn responses_carry_a_request_id() {
    let h = Harness::start().await;
    let mut request = tonic::Request::new(v1::VersionRequest {});
    request
        .metadata_mut()
        .insert("x-request-id", "test-42".parse().unwrap());
    let response = AdminServiceClient::new(h.channel.clone())
        .version(request)
        .await
        .unwrap();
    assert_eq!(response.metadata().get("x-request-id").unwrap(), "test-42");
    let version = response.into_inner();
    assert_eq!(version.api_version, "v1");
    assert_eq!(
        version.format_version,
        portrait_engine::storage::FORMAT_VERSION
    );
}

#[tokio::test]
async fn catalog_and_stats() {
    let h = Harness::start().await;
    let mut catalog = h.catalog();
    let tables = catalog
        .list_tables(v1::ListTablesRequest {})
        .await
        .unwrap()
        .into_inner()
        .tables;
    assert_eq!(tables.len(), 1);
    assert_eq!(tables[0].users, u64::from(USERS));
    assert_eq!(tables[0].key_kind(), v1::KeyKind::String);

    let field = catalog
        .get_field(v1::GetFieldRequest {
            table: "users".into(),
            path: "commerce/total_spend".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .field
        .unwrap();
    assert_eq!(field.kind(), v1::FieldKind::Decimal);
    assert_eq!(field.versions[0].label, "2026-11-25");
    assert_eq!(field.stats.unwrap().users_covered, u64::from(USERS));

    let missing = catalog
        .get_field(v1::GetFieldRequest {
            table: "users".into(),
            path: "commerce/total_spendd".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    assert!(
        missing.message().contains("commerce/total_spend`?"),
        "{}",
        missing.message()
    );

    let fields = catalog
        .list_fields(v1::ListFieldsRequest {
            table: "users".into(),
            prefix: "geo".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .fields;
    assert!(fields.iter().all(|f| f.path.starts_with("geo/")));
    assert!(fields.windows(2).all(|w| w[0].path < w[1].path));

    let tree = catalog
        .tree(v1::TreeRequest {
            table: "users".into(),
            prefix: "demographic".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .root
        .unwrap();
    assert!(
        tree.children
            .iter()
            .any(|c| c.name == "gender" && c.is_field)
    );

    let created = catalog
        .create_table(v1::CreateTableRequest {
            name: "devices".into(),
            key_kind: v1::KeyKind::U64.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .table
        .unwrap();
    assert_eq!(created.key_kind(), v1::KeyKind::U64);
    let again = catalog
        .create_table(v1::CreateTableRequest {
            name: "devices".into(),
            key_kind: v1::KeyKind::U64.into(),
        })
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::AlreadyExists);
    let unspecified = catalog
        .create_table(v1::CreateTableRequest {
            name: "x".into(),
            key_kind: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(unspecified.code(), Code::InvalidArgument);

    let stats = AdminServiceClient::new(h.channel.clone())
        .stats(v1::StatsRequest {})
        .await
        .unwrap()
        .into_inner()
        .tables;
    assert_eq!(stats.len(), 2);
    assert!(stats[1].bytes_on_disk > 0, "{stats:?}");

    catalog
        .drop_table(v1::DropTableRequest {
            name: "devices".into(),
        })
        .await
        .unwrap();
    let gone = catalog
        .drop_table(v1::DropTableRequest {
            name: "devices".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
}

#[tokio::test]
async fn shutdown_ends_a_stalled_export_within_the_grace_period() {
    let limits = Limits {
        members_batch_keys: 1,
        ..Limits::default()
    };
    let mut h = Harness::start_with(limits, Duration::from_millis(500)).await;
    // Open an export and never read past its first batch.
    let mut stream = h
        .query()
        .members(v1::MembersRequest {
            table: "users".into(),
            expr: text("ALL"),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(stream.message().await.unwrap().is_some());
    let started = Instant::now();
    h.stop_and_wait().await;
    assert!(started.elapsed() < Duration::from_secs(3));
    // The export was closed, not finished: what the client had buffered, then an error.
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match stream.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => return Ok(()),
                Err(status) => return Err(status),
            }
        }
    })
    .await
    .expect("the closed export ends");
    assert!(ended.is_err(), "an export cut short does not end cleanly");
}

#[tokio::test]
async fn connections_on_io_threads_answer_and_the_listener_closes_on_shutdown() {
    connections_answer_and_the_listener_closes_on_shutdown(2).await;
}

/// The shared runtime (`Bound::io_threads(0)`, which the gRPC bench compares against) serves
/// and shuts down the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_on_a_shared_runtime_answer_and_the_listener_closes_on_shutdown() {
    connections_answer_and_the_listener_closes_on_shutdown(0).await;
}

/// 40 counts at once over 5 connections to a server on `io_threads` I/O threads all equal the
/// engine's count; shutdown is prompt with no call open, and a new connection is refused after
/// it.
async fn connections_answer_and_the_listener_closes_on_shutdown(io_threads: usize) {
    let mut h = Harness::start_on(io_threads, Limits::default(), Duration::from_secs(5)).await;
    let url = format!("http://{}", h.addr);
    let expected = engine_count(&h, "interest/sports");
    // More connections than I/O threads, each with calls in flight at once.
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..5 {
        let channel = tonic::transport::Channel::from_shared(url.clone())
            .unwrap()
            .connect()
            .await
            .unwrap();
        for _ in 0..8 {
            let mut query = v1::query_service_client::QueryServiceClient::new(channel.clone());
            calls.spawn(async move {
                query
                    .count(v1::CountRequest {
                        table: "users".into(),
                        expr: text("interest/sports"),
                        ..Default::default()
                    })
                    .await
                    .map(|r| r.into_inner().count)
            });
        }
    }
    let mut answered = 0;
    while let Some(answer) = calls.join_next().await {
        assert_eq!(answer.unwrap().unwrap(), expected);
        answered += 1;
    }
    assert_eq!(answered, 40);

    // With no call open, shutdown does not wait out its 5 s grace.
    let stopping = Instant::now();
    h.stop_and_wait().await;
    assert!(
        stopping.elapsed() < Duration::from_secs(2),
        "the server took {:?} to stop with no call open",
        stopping.elapsed()
    );
    let refused = tonic::transport::Channel::from_shared(url)
        .unwrap()
        .connect()
        .await;
    assert!(refused.is_err(), "the listener is closed after shutdown");
}

#[tokio::test]
async fn shutdown_closes_an_upload_still_open_after_the_grace_period() {
    let mut h = Harness::start_with(Limits::default(), Duration::from_millis(300)).await;
    // An upload that sends its options and a first chunk, then neither more nor its end.
    let (tx, rx) = tokio::sync::mpsc::channel::<v1::LoadRequest>(4);
    let first = [
        v1::load_request::Kind::Options(v1::LoadOptions {
            table: "users".into(),
            format: v1::LoadFormat::Long.into(),
            file_type: v1::FileType::Csv.into(),
            file_name: "stalled.csv".into(),
            ..Default::default()
        }),
        v1::load_request::Kind::Chunk(b"key,path,value\n".to_vec()),
    ];
    for kind in first {
        tx.send(v1::LoadRequest { kind: Some(kind) }).await.unwrap();
    }
    let mut ingest = v1::ingest_service_client::IngestServiceClient::new(h.channel.clone());
    let upload = tokio::spawn(async move {
        ingest
            .load(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
    });
    // Let the server start reading it.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    h.stop_and_wait().await;
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "the upload had its grace period"
    );
    let answer = tokio::time::timeout(Duration::from_secs(5), upload)
        .await
        .expect("the upload ends")
        .unwrap();
    assert!(answer.is_err(), "an upload cut short fails");
    drop(tx);
}
