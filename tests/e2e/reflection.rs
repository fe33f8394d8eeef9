//! gRPC server reflection, as generic tools (grpcurl, Postman, other languages) use it: the
//! `portrait.v1` services are listed, and their descriptors (with methods and documentation) are
//! served, by both the `v1` and the older `v1alpha` protocol.

use prost::Message as _;
use prost_types::FileDescriptorProto;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
use tonic_reflection::pb::v1::{ServerReflectionRequest, ServerReflectionResponse};
use tonic_reflection::pb::v1alpha;

use crate::fixture::server;

const PORTRAIT_SERVICES: [&str; 4] = [
    "portrait.v1.AdminService",
    "portrait.v1.AnalysisService",
    "portrait.v1.CatalogService",
    "portrait.v1.QueryService",
];

/// A connection to the shared server.
async fn channel() -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(server().url())
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// Sends `requests` on one reflection stream and returns the answers, in order.
async fn ask(requests: Vec<MessageRequest>) -> Vec<MessageResponse> {
    let mut client = ServerReflectionClient::new(channel().await);
    let n = requests.len();
    let requests = requests.into_iter().map(|r| ServerReflectionRequest {
        host: String::new(),
        message_request: Some(r),
    });
    let mut stream = client
        .server_reflection_info(tokio_stream::iter(requests))
        .await
        .unwrap()
        .into_inner();
    let mut answers = Vec::new();
    while let Some(ServerReflectionResponse {
        message_response, ..
    }) = stream.message().await.unwrap()
    {
        answers.push(message_response.expect("an answer"));
    }
    assert_eq!(answers.len(), n);
    answers
}

#[tokio::test]
async fn reflection_lists_and_describes_the_portrait_services() {
    let answers = ask(vec![
        MessageRequest::ListServices(String::new()),
        MessageRequest::FileContainingSymbol("portrait.v1.QueryService".into()),
        MessageRequest::FileContainingSymbol("portrait.v1.CountRequest".into()),
    ])
    .await;

    let MessageResponse::ListServicesResponse(list) = &answers[0] else {
        panic!("not a service list: {:?}", answers[0]);
    };
    let mut names: Vec<&str> = list.service.iter().map(|s| s.name.as_str()).collect();
    names.sort_unstable();
    for service in PORTRAIT_SERVICES.iter().chain(&["grpc.health.v1.Health"]) {
        assert!(names.contains(service), "{service} missing from {names:?}");
    }

    let MessageResponse::FileDescriptorResponse(files) = &answers[1] else {
        panic!("not a file descriptor: {:?}", answers[1]);
    };
    let files: Vec<FileDescriptorProto> = files
        .file_descriptor_proto
        .iter()
        .map(|bytes| FileDescriptorProto::decode(bytes.as_slice()).unwrap())
        .collect();
    let file = files
        .iter()
        .find(|f| f.package() == "portrait.v1")
        .expect("the portrait.v1 file");
    let query = file
        .service
        .iter()
        .find(|s| s.name() == "QueryService")
        .expect("QueryService in its file");
    let methods: Vec<&str> = query.method.iter().map(|m| m.name()).collect();
    assert_eq!(
        methods,
        ["Count", "Members", "Contains", "Portrait", "BatchPortrait"]
    );
    let members = &query.method[1];
    assert!(members.server_streaming(), "Members streams its batches");
    assert!(
        file.source_code_info
            .as_ref()
            .is_some_and(|info| !info.location.is_empty()),
        "documentation comments travel with the descriptor"
    );

    let MessageResponse::FileDescriptorResponse(message_file) = &answers[2] else {
        panic!("not a file descriptor: {:?}", answers[2]);
    };
    assert!(!message_file.file_descriptor_proto.is_empty());
}

#[tokio::test]
async fn reflection_refuses_unknown_symbols() {
    // tonic-reflection ends the stream with NOT_FOUND rather than answering an ErrorResponse.
    let mut client = ServerReflectionClient::new(channel().await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::FileContainingSymbol(
            "portrait.v1.NoSuchService".into(),
        )),
    };
    let mut stream = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    match stream.message().await {
        Err(status) => assert_eq!(status.code(), tonic::Code::NotFound, "{status:?}"),
        Ok(Some(ServerReflectionResponse {
            message_response: Some(MessageResponse::ErrorResponse(e)),
            ..
        })) => assert_eq!(e.error_code, tonic::Code::NotFound as i32, "{e:?}"),
        Ok(other) => panic!("expected NOT_FOUND, got {other:?}"),
    }
}

#[tokio::test]
async fn the_older_reflection_protocol_lists_them_too() {
    use v1alpha::server_reflection_client::ServerReflectionClient as AlphaClient;
    use v1alpha::server_reflection_request::MessageRequest as AlphaRequest;
    use v1alpha::server_reflection_response::MessageResponse as AlphaResponse;

    let mut client = AlphaClient::new(channel().await);
    let request = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(AlphaRequest::ListServices(String::new())),
    };
    let mut stream = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let answer = stream.message().await.unwrap().expect("one answer");
    let Some(AlphaResponse::ListServicesResponse(list)) = answer.message_response else {
        panic!("not a service list: {answer:?}");
    };
    let names: Vec<&str> = list.service.iter().map(|s| s.name.as_str()).collect();
    for service in PORTRAIT_SERVICES {
        assert!(names.contains(&service), "{service} missing from {names:?}");
    }
}
