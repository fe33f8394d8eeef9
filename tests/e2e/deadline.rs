//! Deadlines that expire: calls over everything with a deadline far too short end with
//! `DeadlineExceeded` (never a hang, never a partial answer), and the server stays healthy.

use std::time::Duration;

use portrait_client::proto::TopOrder;
use portrait_client::{Client, Error, RetryPolicy};
use tonic_health::pb::health_check_response::ServingStatus;

use crate::fixture::{expected, expected_count, server};

/// Shorter than any call can take, so the outcome does not depend on the machine's speed.
const TINY: Duration = Duration::from_micros(1);

/// tonic's status for a deadline its *server* enforced: `CANCELLED` with this message.
const TONIC_SERVER_TIMEOUT: &str = "Timeout expired";

/// Asserts that a deadline ended the call: `DeadlineExceeded`, or the `CANCELLED` that tonic's
/// server timer sends when it fires before the work noticed the deadline, which the client
/// passes on as `Cancelled` (a known mismatch, see
/// `server_side_expiry_is_deadline_exceeded_too`).
fn deadline_exceeded<T: std::fmt::Debug>(what: &str, result: Result<T, Error>) {
    match &result {
        Err(Error::DeadlineExceeded(_)) => {}
        Err(Error::Cancelled(message)) if message == TONIC_SERVER_TIMEOUT => {}
        _ => panic!("{what}: expected DeadlineExceeded, got {result:?}"),
    }
}

#[tokio::test]
async fn expired_deadlines_fail_and_the_server_stays_healthy() {
    // Deadline expiry is retried for reads; without retries every expiry shows.
    let client = Client::builder(server().url())
        .retry_policy(RetryPolicy::none())
        .connect()
        .await
        .unwrap();

    for _ in 0..3 {
        deadline_exceeded(
            "top over every field",
            client
                .top("ALL", "")
                .k(10_000)
                .order(TopOrder::Tgi)
                .timeout(TINY)
                .await,
        );
        deadline_exceeded(
            "a three-dimension group",
            client
                .group(
                    "ALL",
                    ["geo/city", "acquisition/channel", "demographic/gender"],
                )
                .limit(100_000)
                .timeout(TINY)
                .await,
        );
        deadline_exceeded("a count", client.count("ALL").timeout(TINY).await);

        // An export of everything without a limit: the expiry shows when the stream opens or
        // at the latest before its last batch.
        let export = async {
            let mut stream = client.members("ALL").timeout(TINY).await?;
            let mut keys = 0;
            while let Some(batch) = stream.next_batch().await? {
                keys += batch.keys.len();
            }
            Ok(keys)
        };
        deadline_exceeded("members of ALL", export.await);
    }

    let health = portrait_e2e::health(server().addr(), "").await;
    assert_eq!(health, Ok(ServingStatus::Serving));
    for service in ["portrait.v1.QueryService", "portrait.v1.AnalysisService"] {
        let health = portrait_e2e::health(server().addr(), service).await;
        assert_eq!(health, Ok(ServingStatus::Serving), "{service}");
    }
    let snap = expected();
    assert_eq!(
        client.count("device/ios").await.unwrap(),
        expected_count(&snap, "device/ios")
    );
    let all = client
        .members("ALL")
        .await
        .unwrap()
        .collect_keys()
        .await
        .unwrap();
    assert_eq!(all.len() as u64, expected_count(&snap, "ALL"));
}

#[tokio::test]
async fn a_retried_deadline_still_fails_in_the_end() {
    // With retries (reads retry DeadlineExceeded), every attempt expires again.
    let client = Client::builder(server().url())
        .retry_policy(RetryPolicy {
            max_retries: 2,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(2),
        })
        .connect()
        .await
        .unwrap();
    deadline_exceeded(
        "a retried top",
        client.top("ALL", "").k(100).timeout(TINY).await,
    );
    assert_eq!(
        portrait_e2e::health(server().addr(), "").await,
        Ok(ServingStatus::Serving)
    );
}

/// Every expired deadline should reach the caller as `DeadlineExceeded`. When tonic's server-side
/// timer fires first (the work had not started yet, e.g. the blocking pool was busy), portraitd
/// answers `CANCELLED` "Timeout expired", which the client maps to `Error::Cancelled`: not
/// transient, so not retried, unlike the same expiry seen by the client's own timer.
#[tokio::test]
async fn server_side_expiry_is_deadline_exceeded_too() {
    let client = Client::builder(server().url())
        .retry_policy(RetryPolicy::none())
        .connect()
        .await
        .unwrap();
    for _ in 0..200 {
        let result = client.top("ALL", "").k(10_000).timeout(TINY).await;
        assert!(
            matches!(result, Err(Error::DeadlineExceeded(_))),
            "expected DeadlineExceeded, got {result:?}"
        );
    }
}
