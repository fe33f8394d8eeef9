//! Builders of `QueryService` unary calls: counts, membership tests and portraits.
//!
//! The streaming `Members` call has its own module, [`super::members`].

use portrait_proto::v1;

use super::{as_of_setter, missing, request_builder, table, table_setter};
use crate::client::Client;
use crate::error::Result;
use crate::expr::Expr;
use crate::retry::Idempotency;

impl Client {
    /// Counts the users matching `expr` (exact).
    pub fn count(&self, expr: impl Into<Expr>) -> Count {
        Count::new(
            self,
            v1::CountRequest {
                table: table(self),
                expr: Some(expr.into().into_proto()),
                as_of: None,
            },
        )
    }

    /// Tells whether the user `key` matches `expr`; unknown keys match nothing.
    pub fn contains(&self, key: impl Into<String>, expr: impl Into<Expr>) -> Contains {
        Contains::new(
            self,
            v1::ContainsRequest {
                table: table(self),
                expr: Some(expr.into().into_proto()),
                key: key.into(),
                as_of: None,
            },
        )
    }

    /// Every tag and attribute of the user `key`; [`Error::NotFound`](crate::Error::NotFound)
    /// if the key is unknown.
    pub fn portrait(&self, key: impl Into<String>) -> GetPortrait {
        GetPortrait::new(
            self,
            v1::PortraitRequest {
                table: table(self),
                key: key.into(),
                prefixes: Vec::new(),
                as_of: None,
            },
        )
    }

    /// The portraits of many users in one call; unknown keys are listed in the response's
    /// `missing_keys` instead of failing the call.
    pub fn batch_portrait<I, K>(&self, keys: I) -> BatchPortrait
    where
        I: IntoIterator<Item = K>,
        K: Into<String>,
    {
        BatchPortrait::new(
            self,
            v1::BatchPortraitRequest {
                table: table(self),
                keys: keys.into_iter().map(Into::into).collect(),
                prefixes: Vec::new(),
                as_of: None,
            },
        )
    }
}

request_builder!(
    /// Counts a crowd; resolves to the count. See [`Client::count`].
    Count: v1::CountRequest => u64
);

impl Count {
    /// Sends the request.
    pub async fn send(self) -> Result<u64> {
        let response = self
            .client
            .unary(
                self.message,
                self.timeout,
                Idempotency::Idempotent,
                |c, r| {
                    let mut stub = c.query_stub();
                    async move { stub.count(r).await }
                },
            )
            .await?;
        Ok(response.count)
    }
}

request_builder!(
    /// Tests one user's membership; resolves to `true` if the user is known and matches. See
    /// [`Client::contains`].
    Contains: v1::ContainsRequest => bool
);

impl Contains {
    /// Sends the request.
    pub async fn send(self) -> Result<bool> {
        let response = self
            .client
            .unary(
                self.message,
                self.timeout,
                Idempotency::Idempotent,
                |c, r| {
                    let mut stub = c.query_stub();
                    async move { stub.contains(r).await }
                },
            )
            .await?;
        Ok(response.contains)
    }
}

request_builder!(
    /// Fetches one user's portrait. See [`Client::portrait`].
    GetPortrait: v1::PortraitRequest => v1::Portrait
);

impl GetPortrait {
    /// Only fields under these path prefixes (segment-wise).
    pub fn prefixes<I, P>(mut self, prefixes: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: Into<String>,
    {
        self.message.prefixes = prefixes.into_iter().map(Into::into).collect();
        self
    }

    /// Sends the request.
    pub async fn send(self) -> Result<v1::Portrait> {
        let response = self
            .client
            .unary(
                self.message,
                self.timeout,
                Idempotency::Idempotent,
                |c, r| {
                    let mut stub = c.query_stub();
                    async move { stub.portrait(r).await }
                },
            )
            .await?;
        response
            .portrait
            .ok_or_else(|| missing("PortraitResponse.portrait"))
    }
}

request_builder!(
    /// Fetches many portraits. See [`Client::batch_portrait`].
    BatchPortrait: v1::BatchPortraitRequest => v1::BatchPortraitResponse
);

impl BatchPortrait {
    /// Only fields under these path prefixes (segment-wise).
    pub fn prefixes<I, P>(mut self, prefixes: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: Into<String>,
    {
        self.message.prefixes = prefixes.into_iter().map(Into::into).collect();
        self
    }

    /// Sends the request.
    pub async fn send(self) -> Result<v1::BatchPortraitResponse> {
        self.client
            .unary(
                self.message,
                self.timeout,
                Idempotency::Idempotent,
                |c, r| {
                    let mut stub = c.query_stub();
                    async move { stub.batch_portrait(r).await }
                },
            )
            .await
    }
}

table_setter!(Count, Contains, GetPortrait, BatchPortrait);
as_of_setter!(Count, Contains, GetPortrait, BatchPortrait);
