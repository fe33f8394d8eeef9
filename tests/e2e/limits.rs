//! Oversized requests against the server's default limits (`server/src/limits.rs`): each is
//! refused with the documented code and a message naming the limit, work just under the limit
//! is served, and the server keeps serving afterwards.

use portrait_client::ast::{flag, not};
use portrait_client::{Client, Error, RetryPolicy};

use crate::fixture::{DEMO_USERS, client, expected, expected_count, key, server};

/// Asserts `ResourceExhausted` whose message contains every part of `parts`.
fn exhausted<T: std::fmt::Debug>(result: Result<T, Error>, parts: &[&str]) {
    match result {
        Err(Error::ResourceExhausted(message)) => {
            for part in parts {
                assert!(message.contains(part), "{message:?} lacks {part:?}");
            }
        }
        other => panic!("expected ResourceExhausted, got {other:?}"),
    }
}

/// The server still answers, and correctly.
async fn still_serving(client: &Client) {
    let snap = expected();
    assert_eq!(
        client.count("device/ios").await.unwrap(),
        expected_count(&snap, "device/ios")
    );
}

#[tokio::test]
async fn batch_portrait_over_the_key_limit_is_refused() {
    let client = client().await;
    // Unknown keys cost nothing to answer, so the limit is the only thing in the way.
    let mut keys: Vec<String> = (0..10_000).map(|i| format!("nobody-{i}")).collect();
    keys[0] = key(5);
    let at_limit = client.batch_portrait(&keys).await.unwrap();
    assert_eq!(at_limit.portraits.len(), 1);
    assert_eq!(at_limit.missing_keys.len(), 9_999);

    keys.push("one-too-many".to_owned());
    exhausted(
        client.batch_portrait(&keys).await,
        &["keys of BatchPortrait", "10001", "10000"],
    );
    still_serving(&client).await;
}

#[tokio::test]
async fn a_batch_portrait_response_over_the_message_limit_is_refused() {
    let client = client().await;
    // Ten thousand full portraits of the demo are well over 16 MiB.
    let keys: Vec<String> = (0..10_000).map(key).collect();
    exhausted(
        client.batch_portrait(&keys).await,
        &["message limit", "prefixes"],
    );
    still_serving(&client).await;
}

#[tokio::test]
async fn expressions_over_64_kib_are_refused() {
    let client = client().await;
    let limit = 64 * 1024;
    // Exactly at the limit: `ALL` padded with spaces parses.
    let at_limit = format!("{}ALL", " ".repeat(limit - 3));
    assert_eq!(at_limit.len(), limit);
    assert_eq!(
        client.count(at_limit.as_str()).await.unwrap(),
        u64::from(DEMO_USERS)
    );

    let over = format!("{}ALL", " ".repeat(limit - 2));
    exhausted(client.count(over.as_str()).await, &["65537", "65536"]);
    exhausted(client.members(over.as_str()).await.map(drop), &["65536"]);
    exhausted(
        client
            .group("ALL", ["demographic/gender"])
            .base(over.as_str())
            .await,
        &["base", "65536"],
    );
    still_serving(&client).await;
}

/// `n` NOTs around the flag `device/ios`.
fn nested(n: usize) -> portrait_client::proto::Node {
    (0..n).fold(flag("device/ios"), |node, _| not(node))
}

#[tokio::test]
async fn deeply_nested_structured_expressions_are_refused() {
    let client = client().await;
    let snap = expected();
    let ios = expected_count(&snap, "device/ios");
    assert_eq!(client.count(nested(40)).await.unwrap(), ios);
    assert_eq!(
        client.count(nested(39)).await.unwrap(),
        u64::from(DEMO_USERS) - ios
    );
    let refused = client.count(nested(1_000)).await;
    assert!(refused.is_err(), "{refused:?}");
    still_serving(&client).await;
}

/// `limits.max_expr_depth` (default 40) promises that 40 nested connectives are accepted and
/// that deeper trees fail with INVALID_ARGUMENT naming the limit. (The default stays below
/// prost's recursion limit of 100 nested messages, two per `Not`.)
#[tokio::test]
async fn structured_expressions_nest_up_to_the_documented_depth() {
    let client = client().await;
    let snap = expected();
    assert_eq!(
        client.count(nested(40)).await.unwrap(),
        expected_count(&snap, "device/ios")
    );
    match client.count(nested(41)).await {
        Err(Error::InvalidArgument { message, .. }) => {
            assert!(message.contains("40"), "{message}");
        }
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
}

#[tokio::test]
async fn analysis_sizes_over_their_limits_are_refused() {
    let client = client().await;
    exhausted(
        client.sample("ALL", 1_000_001).seed(1).await,
        &["n of Sample", "1000001", "1000000"],
    );
    // At the limit: the whole (smaller) crowd.
    let whole = client.sample("ALL", 1_000_000).seed(1).await.unwrap();
    assert_eq!(whole.keys.len(), DEMO_USERS as usize);

    exhausted(client.top("ALL", "interest").k(10_001).await, &["k of Top"]);
    exhausted(
        client.group("ALL", ["geo/city"]).limit(100_001).await,
        &["limit of Group"],
    );
    exhausted(
        client.overlap(vec!["device/ios"; 65]).await,
        &["crowds of Overlap", "65", "64"],
    );
    exhausted(
        client
            .distribution("ALL", "demographic/age")
            .bounds(0..10_001)
            .await,
        &["bounds of Distribution"],
    );
    still_serving(&client).await;
}

/// A client that lets 64 MiB out, so that the server's 16 MiB limit is the one that refuses.
async fn big_client() -> Client {
    Client::builder(server().url())
        .max_message_size(64 << 20)
        .retry_policy(RetryPolicy::none())
        .connect()
        .await
        .unwrap()
}

/// 2,000 keys of 10 KB: a 20 MB request.
fn huge_keys() -> Vec<String> {
    (0..2_000)
        .map(|i| format!("{i:010}{}", "x".repeat(10_000)))
        .collect()
}

#[tokio::test]
async fn a_request_over_the_message_size_limit_is_refused() {
    let client = big_client().await;
    match client.batch_portrait(huge_keys()).await {
        Err(Error::ResourceExhausted(message) | Error::InvalidArgument { message, .. }) => {
            assert!(message.contains("16777216"), "{message}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    still_serving(&client).await;
}

/// gRPC's code for a message over the receiver's limit is RESOURCE_EXHAUSTED, and the client
/// documents `ResourceExhausted` as "a limit was hit: message size, ...". tonic answers
/// OUT_OF_RANGE, which the client maps to `InvalidArgument`.
#[tokio::test]
async fn a_request_over_the_message_size_limit_is_resource_exhausted() {
    let client = big_client().await;
    exhausted(client.batch_portrait(huge_keys()).await, &["16777216"]);
}
