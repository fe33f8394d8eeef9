//! The library against the mock: retries, deadlines, stream resumption and error mapping.

use std::time::Duration;

use portrait_client::{Client, Error, Position, RetryPolicy};

use crate::mock::{MEMBERS, Mock, serve};

async fn client(mock: &Mock, retries: u32) -> Client {
    Client::builder(serve(mock.clone()).await)
        .retry_policy(RetryPolicy {
            max_retries: retries,
            initial_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(20),
        })
        .connect()
        .await
        .unwrap()
}

#[tokio::test]
async fn unavailable_is_retried_until_the_server_answers() {
    let mock = Mock::default();
    mock.state.lock().unwrap().count_failures = 2;
    let client = client(&mock, 3).await;
    assert_eq!(client.count("vip").await.unwrap(), 42);
    assert_eq!(mock.state.lock().unwrap().count_calls, 3);
}

#[tokio::test]
async fn retries_are_bounded_by_the_policy() {
    let mock = Mock::default();
    mock.state.lock().unwrap().count_failures = 10;
    let client = client(&mock, 2).await;
    let error = client.count("vip").await.unwrap_err();
    assert!(
        matches!(error, Error::Unavailable(ref m) if m == "warming up"),
        "{error:?}"
    );
    assert_eq!(mock.state.lock().unwrap().count_calls, 3);
}

#[tokio::test]
async fn expression_errors_carry_their_position() {
    let mock = Mock::default();
    let client = client(&mock, 3).await;
    let error = client.count("bad >> 3").await.unwrap_err();
    assert_eq!(error.position(), Some(Position { line: 1, column: 5 }));
    assert!(matches!(error, Error::InvalidArgument { .. }));
    assert_eq!(
        mock.state.lock().unwrap().count_calls,
        1,
        "bad input is not retried"
    );
}

#[tokio::test]
async fn deadlines_are_sent_enforced_and_retried_for_reads() {
    let mock = Mock::default();
    let client = client(&mock, 1).await;
    let error = client
        .count("slow")
        .timeout(Duration::from_millis(50))
        .await
        .unwrap_err();
    assert!(matches!(error, Error::DeadlineExceeded(_)), "{error:?}");
    let state = mock.state.lock().unwrap();
    assert_eq!(state.count_calls, 2, "an idempotent read is retried once");
    assert_eq!(state.last_timeout.as_deref(), Some("50000000n"));
}

#[tokio::test]
async fn members_resume_from_the_last_cursor_after_a_broken_stream() {
    let mock = Mock::default();
    let client = client(&mock, 3).await;
    let keys = client
        .members("vip")
        .await
        .unwrap()
        .collect_keys()
        .await
        .unwrap();
    assert_eq!(keys, MEMBERS);
    let calls = mock.state.lock().unwrap().members_calls.clone();
    assert_eq!(calls, [(String::new(), 0), ("2".to_owned(), 0)]);
}

#[tokio::test]
async fn members_resume_a_stream_that_ends_before_its_last_batch() {
    let mock = Mock::default();
    let client = client(&mock, 3).await;
    let keys = client
        .members("cut")
        .await
        .unwrap()
        .collect_keys()
        .await
        .unwrap();
    assert_eq!(keys, MEMBERS);
    assert_eq!(mock.state.lock().unwrap().members_calls.len(), 2);
}

#[tokio::test]
async fn an_empty_crowd_is_an_empty_export() {
    let mock = Mock::default();
    let client = client(&mock, 0).await;
    let mut stream = client.members("nobody").await.unwrap();
    assert!(stream.next_batch().await.unwrap().is_none());
    assert_eq!(stream.received(), 0);
}

#[tokio::test]
async fn members_resume_with_the_remaining_limit() {
    let mock = Mock::default();
    let client = client(&mock, 3).await;
    let mut stream = client.members("vip").limit(3).await.unwrap();
    let mut keys = Vec::new();
    while let Some(batch) = stream.next_batch().await.unwrap() {
        keys.extend(batch.keys);
    }
    assert_eq!(keys, ["u1", "u2", "u3"]);
    assert_eq!(stream.received(), 3);
    let calls = mock.state.lock().unwrap().members_calls.clone();
    assert_eq!(calls, [(String::new(), 3), ("2".to_owned(), 1)]);
}

#[tokio::test]
async fn a_broken_stream_without_retries_reports_the_error_and_the_cursor() {
    let mock = Mock::default();
    let client = client(&mock, 0).await;
    let mut stream = client.members("vip").await.unwrap();
    assert_eq!(
        stream.next_batch().await.unwrap().unwrap().keys,
        ["u1", "u2"]
    );
    assert!(matches!(
        stream.next_batch().await,
        Err(Error::Unavailable(_))
    ));
    assert_eq!(stream.cursor(), "2");
    assert!(
        stream.next_batch().await.unwrap().is_none(),
        "a failed stream stays finished"
    );
    let rest = client.members("vip").cursor(stream.cursor()).await.unwrap();
    assert_eq!(rest.collect_keys().await.unwrap(), ["u3", "u4", "u5"]);
}

#[tokio::test]
async fn status_codes_come_back_typed() {
    let mock = Mock::default();
    let client = client(&mock, 3).await;
    assert!(client.contains("u1", "vip").await.unwrap());
    assert!(!client.contains("nobody", "vip").await.unwrap());
    assert!(
        matches!(client.portrait("nobody").await, Err(Error::NotFound(m)) if m == "unknown key `nobody`")
    );
    assert!(matches!(
        client.batch_portrait(["u1"]).await,
        Err(Error::PermissionDenied(_))
    ));
    // The mock serves no AdminService.
    assert!(matches!(
        client.version().await,
        Err(Error::Unimplemented(_))
    ));
}

#[tokio::test]
async fn connecting_to_nothing_is_a_transport_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let error = Client::connect(address).await.unwrap_err();
    assert!(matches!(error, Error::Transport(_)), "{error:?}");
}
