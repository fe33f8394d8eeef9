//! A scriptable `QueryService` served on an ephemeral loopback port.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use portrait_client::proto::query_service_server::{QueryService, QueryServiceServer};
use portrait_client::proto::{self as v1, expr::Kind};
use tokio::net::TcpListener;
use tokio_stream::Stream;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::metadata::MetadataMap;
use tonic::{Code, Request, Response, Status};

/// What the mock has seen and how it should misbehave.
#[derive(Debug, Default)]
pub struct State {
    /// `Count` calls fail with UNAVAILABLE this many more times before answering.
    pub count_failures: u32,
    /// Number of `Count` calls received.
    pub count_calls: u32,
    /// `(cursor, limit)` of every `Members` call received.
    pub members_calls: Vec<(String, u64)>,
    /// `grpc-timeout` header of the last call, if any.
    pub last_timeout: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct Mock {
    pub state: Arc<Mutex<State>>,
}

fn text(expr: Option<v1::Expr>) -> String {
    match expr.and_then(|e| e.kind) {
        Some(Kind::Text(text)) => text,
        Some(Kind::Ast(_)) => "<ast>".to_owned(),
        None => String::new(),
    }
}

/// The keys of the mock's single crowd, in export order.
pub const MEMBERS: [&str; 5] = ["u1", "u2", "u3", "u4", "u5"];

type BatchStream = Pin<Box<dyn Stream<Item = Result<v1::MembersBatch, Status>> + Send>>;

#[tonic::async_trait]
impl QueryService for Mock {
    /// `bad …` is a syntax error at line 1, column 5; `slow` takes 300 ms; anything else counts
    /// 42 users after the scripted failures.
    async fn count(
        &self,
        request: Request<v1::CountRequest>,
    ) -> Result<Response<v1::CountResponse>, Status> {
        let timeout = request
            .metadata()
            .get("grpc-timeout")
            .map(|v| v.to_str().unwrap().to_owned());
        let expr = text(request.into_inner().expr);
        {
            let mut state = self.state.lock().unwrap();
            state.count_calls += 1;
            state.last_timeout = timeout;
            if state.count_failures > 0 {
                state.count_failures -= 1;
                return Err(Status::unavailable("warming up"));
            }
        }
        if expr.starts_with("bad") {
            let mut metadata = MetadataMap::new();
            metadata.insert("x-portrait-line", "1".parse().unwrap());
            metadata.insert("x-portrait-column", "5".parse().unwrap());
            return Err(Status::with_metadata(
                Code::InvalidArgument,
                "unexpected token `>>` at line 1, column 5",
                metadata,
            ));
        }
        if expr == "slow" {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        Ok(Response::new(v1::CountResponse { count: 42 }))
    }

    type MembersStream = BatchStream;

    /// Streams [`MEMBERS`] two per batch from the cursor (an index). The first call breaks
    /// after its first batch: with UNAVAILABLE, or for the crowd `cut` by ending the stream early.
    /// The crowd `nobody` is empty.
    async fn members(
        &self,
        request: Request<v1::MembersRequest>,
    ) -> Result<Response<BatchStream>, Status> {
        let request = request.into_inner();
        let crowd = text(request.expr);
        let first_call = {
            let mut state = self.state.lock().unwrap();
            state
                .members_calls
                .push((request.cursor.clone(), request.limit));
            state.members_calls.len() == 1
        };
        let start: usize = if request.cursor.is_empty() {
            0
        } else {
            request
                .cursor
                .parse()
                .map_err(|_| Status::invalid_argument("bad cursor"))?
        };
        let end = if crowd == "nobody" {
            start
        } else if request.limit == 0 {
            MEMBERS.len()
        } else {
            MEMBERS.len().min(start + request.limit as usize)
        };
        let mut items = Vec::new();
        let mut at = start;
        while at < end {
            let next = (at + 2).min(end);
            let cursor = if next < MEMBERS.len() {
                next.to_string()
            } else {
                String::new()
            };
            let keys = MEMBERS[at..next].iter().map(|k| (*k).to_owned()).collect();
            items.push(Ok(v1::MembersBatch {
                keys,
                next_cursor: cursor,
                // Plain keys, as a server that predates packed keys sends them.
                ..Default::default()
            }));
            if first_call {
                if crowd != "cut" {
                    items.push(Err(Status::unavailable("connection reset")));
                }
                break;
            }
            at = next;
        }
        Ok(Response::new(Box::pin(tokio_stream::iter(items))))
    }

    async fn contains(
        &self,
        request: Request<v1::ContainsRequest>,
    ) -> Result<Response<v1::ContainsResponse>, Status> {
        let request = request.into_inner();
        let known = MEMBERS.contains(&request.key.as_str());
        Ok(Response::new(v1::ContainsResponse {
            contains: known && text(request.expr) == "vip",
            known,
        }))
    }

    async fn portrait(
        &self,
        request: Request<v1::PortraitRequest>,
    ) -> Result<Response<v1::PortraitResponse>, Status> {
        Err(Status::not_found(format!(
            "unknown key `{}`",
            request.into_inner().key
        )))
    }

    async fn batch_portrait(
        &self,
        _request: Request<v1::BatchPortraitRequest>,
    ) -> Result<Response<v1::BatchPortraitResponse>, Status> {
        Err(Status::permission_denied(
            "no key may read portraits in bulk here",
        ))
    }
}

/// Serves `mock` on `127.0.0.1:<ephemeral>` for the rest of the test; returns its URL.
pub async fn serve(mock: Mock) -> String {
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(QueryServiceServer::new(mock))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    format!("http://{address}")
}
