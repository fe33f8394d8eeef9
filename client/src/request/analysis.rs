//! Builders of `AnalysisService` calls: breakdowns, rankings, distributions, aggregates,
//! overlaps, samples and plans.

use portrait_proto::v1::{self, TopOrder};

use super::{as_of_setter, request_builder, table, table_setter};
use crate::client::Client;
use crate::error::Result;
use crate::expr::{Expr, IntoLiteral};
use crate::retry::Idempotency;

fn proto(expr: impl Into<Expr>) -> Option<v1::Expr> {
    Some(expr.into().into_proto())
}

impl Client {
    /// Breaks the crowd `expr` down by 1 to 3 dimensions (FLAG, ENUM or SET field paths), with
    /// shares and TGI against the whole table or `.base(..)`.
    pub fn group<I, D>(&self, expr: impl Into<Expr>, dims: I) -> Group
    where
        I: IntoIterator<Item = D>,
        D: Into<String>,
    {
        Group::new(
            self,
            v1::GroupRequest {
                table: table(self),
                expr: proto(expr),
                dims: dims.into_iter().map(Into::into).collect(),
                base: None,
                limit: 0,
                as_of: None,
            },
        )
    }

    /// Ranks, within the crowd `expr`, the values of the field at `field` or of every field under
    /// that path prefix.
    pub fn top(&self, expr: impl Into<Expr>, field: impl Into<String>) -> Top {
        Top::new(
            self,
            v1::TopRequest {
                table: table(self),
                expr: proto(expr),
                field: field.into(),
                k: 0,
                order: TopOrder::Unspecified as i32,
                base: None,
                as_of: None,
            },
        )
    }

    /// A histogram of the numeric field at `field` over the crowd `expr` (10 equal-width buckets
    /// unless `.bounds(..)`, `.equal_width(..)` or `.quantiles(..)` says otherwise).
    pub fn distribution(&self, expr: impl Into<Expr>, field: impl Into<String>) -> Distribution {
        Distribution::new(
            self,
            v1::DistributionRequest {
                table: table(self),
                expr: proto(expr),
                field: field.into(),
                buckets: None,
                as_of: None,
            },
        )
    }

    /// Count, sum, average, min, max and `.percentiles(..)` of the numeric field at `field` over
    /// the crowd `expr`.
    pub fn aggregate(&self, expr: impl Into<Expr>, field: impl Into<String>) -> Aggregate {
        Aggregate::new(
            self,
            v1::AggregateRequest {
                table: table(self),
                expr: proto(expr),
                field: field.into(),
                percentiles: Vec::new(),
                as_of: None,
            },
        )
    }

    /// Pairwise intersection sizes of the crowds `exprs`.
    pub fn overlap<I, E>(&self, exprs: I) -> Overlap
    where
        I: IntoIterator<Item = E>,
        E: Into<Expr>,
    {
        Overlap::new(
            self,
            v1::OverlapRequest {
                table: table(self),
                exprs: exprs.into_iter().map(|e| e.into().into_proto()).collect(),
                as_of: None,
            },
        )
    }

    /// A uniform random sample of `n` keys of the crowd `expr`; fix `.seed(..)` to repeat it.
    pub fn sample(&self, expr: impl Into<Expr>, n: u32) -> Sample {
        Sample::new(
            self,
            v1::SampleRequest {
                table: table(self),
                expr: proto(expr),
                n,
                seed: None,
                as_of: None,
            },
        )
    }

    /// The evaluation plan of `expr`; `.analyze(true)` also runs and times it.
    pub fn explain(&self, expr: impl Into<Expr>) -> Explain {
        Explain::new(
            self,
            v1::ExplainRequest {
                table: table(self),
                expr: proto(expr),
                analyze: false,
                as_of: None,
            },
        )
    }
}

/// Implements `send` for an analysis builder whose call is `$method`.
macro_rules! analysis_send {
    ($name:ident, $method:ident, $response:ty) => {
        impl $name {
            /// Sends the request.
            pub async fn send(self) -> Result<$response> {
                self.client
                    .unary(
                        self.message,
                        self.timeout,
                        Idempotency::Idempotent,
                        |c, r| {
                            let mut stub = c.analysis_stub();
                            async move { stub.$method(r).await }
                        },
                    )
                    .await
            }
        }
    };
}

request_builder!(
    /// Breaks a crowd down by dimensions. See [`Client::group`].
    Group: v1::GroupRequest => v1::GroupResponse
);
analysis_send!(Group, group, v1::GroupResponse);

impl Group {
    /// Compares shares against this population instead of the whole table.
    pub fn base(mut self, base: impl Into<Expr>) -> Self {
        self.message.base = proto(base);
        self
    }

    /// At most this many rows, largest count first.
    pub fn limit(mut self, limit: u32) -> Self {
        self.message.limit = limit;
        self
    }
}

request_builder!(
    /// Ranks values within a crowd. See [`Client::top`].
    Top: v1::TopRequest => v1::TopResponse
);
analysis_send!(Top, top, v1::TopResponse);

impl Top {
    /// Number of rows to return.
    pub fn k(mut self, k: u32) -> Self {
        self.message.k = k;
        self
    }

    /// What orders the rows (descending); count by default.
    pub fn order(mut self, order: TopOrder) -> Self {
        self.message.order = order as i32;
        self
    }

    /// Computes TGI against this population instead of the whole table.
    pub fn base(mut self, base: impl Into<Expr>) -> Self {
        self.message.base = proto(base);
        self
    }
}

request_builder!(
    /// Builds a histogram. See [`Client::distribution`].
    Distribution: v1::DistributionRequest => v1::DistributionResponse
);
analysis_send!(Distribution, distribution, v1::DistributionResponse);

impl Distribution {
    /// Explicit ascending bounds `b1 < … < bn`: buckets `(-inf, b1)`, `[b1, b2)`, …, `[bn, +inf)`.
    pub fn bounds<I, L>(mut self, bounds: I) -> Self
    where
        I: IntoIterator<Item = L>,
        L: IntoLiteral,
    {
        let bounds = bounds.into_iter().map(IntoLiteral::into_literal).collect();
        self.message.buckets = Some(v1::distribution_request::Buckets::Bounds(v1::Bounds {
            bounds,
        }));
        self
    }

    /// `n` buckets of equal width between the crowd's minimum and maximum.
    pub fn equal_width(mut self, n: u32) -> Self {
        self.message.buckets = Some(v1::distribution_request::Buckets::EqualWidth(n));
        self
    }

    /// `n` buckets holding (as near as possible) the same number of users.
    pub fn quantiles(mut self, n: u32) -> Self {
        self.message.buckets = Some(v1::distribution_request::Buckets::Quantiles(n));
        self
    }
}

request_builder!(
    /// Aggregates a numeric field. See [`Client::aggregate`].
    Aggregate: v1::AggregateRequest => v1::AggregateResponse
);
analysis_send!(Aggregate, aggregate, v1::AggregateResponse);

impl Aggregate {
    /// Percentiles to compute, each in `[0, 100]`.
    pub fn percentiles(mut self, percentiles: impl IntoIterator<Item = f64>) -> Self {
        self.message.percentiles = percentiles.into_iter().collect();
        self
    }
}

request_builder!(
    /// Intersects crowds pairwise. See [`Client::overlap`].
    Overlap: v1::OverlapRequest => v1::OverlapResponse
);
analysis_send!(Overlap, overlap, v1::OverlapResponse);

request_builder!(
    /// Samples a crowd. See [`Client::sample`].
    Sample: v1::SampleRequest => v1::SampleResponse
);
analysis_send!(Sample, sample, v1::SampleResponse);

impl Sample {
    /// Seed of the pseudo-random choice; the same seed, data and `n` give the same sample.
    pub fn seed(mut self, seed: u64) -> Self {
        self.message.seed = Some(seed);
        self
    }
}

request_builder!(
    /// Explains an expression's plan. See [`Client::explain`].
    Explain: v1::ExplainRequest => v1::ExplainResponse
);
analysis_send!(Explain, explain, v1::ExplainResponse);

impl Explain {
    /// Also executes the plan, reporting actual cardinalities and times.
    pub fn analyze(mut self, analyze: bool) -> Self {
        self.message.analyze = analyze;
        self
    }
}

table_setter!(
    Group,
    Top,
    Distribution,
    Aggregate,
    Overlap,
    Sample,
    Explain
);
as_of_setter!(
    Group,
    Top,
    Distribution,
    Aggregate,
    Overlap,
    Sample,
    Explain
);

/// An overlap matrix read back as rows.
pub trait OverlapMatrix {
    /// The number of users in both crowd `i` and crowd `j` (`i == j`: the size of crowd `i`),
    /// or `None` if out of range or the response is malformed.
    fn get(&self, i: usize, j: usize) -> Option<u64>;
}

impl OverlapMatrix for v1::OverlapResponse {
    fn get(&self, i: usize, j: usize) -> Option<u64> {
        let n = self.n as usize;
        if i >= n || j >= n || self.matrix.len() != n * n {
            return None;
        }
        Some(self.matrix[i * n + j])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlap_matrix_is_row_major() {
        let response = v1::OverlapResponse {
            n: 2,
            matrix: vec![10, 3, 3, 7],
        };
        assert_eq!(response.get(0, 0), Some(10));
        assert_eq!(response.get(0, 1), Some(3));
        assert_eq!(response.get(1, 1), Some(7));
        assert_eq!(response.get(2, 0), None);
        let malformed = v1::OverlapResponse {
            n: 2,
            matrix: vec![1, 2, 3],
        };
        assert_eq!(malformed.get(0, 0), None);
    }

    #[tokio::test]
    async fn builders_fill_the_wire_message() {
        let client = Client::builder("http://127.0.0.1:1")
            .connect_lazy()
            .unwrap();
        let group = client
            .group("vip", ["gender", "city"])
            .base("age >= 18")
            .limit(5)
            .table("t");
        let m = group.message();
        assert_eq!((m.table.as_str(), m.dims.len(), m.limit), ("t", 2, 5));
        assert!(m.base.is_some());
        assert_eq!(m.as_of, None);

        let dist = client
            .distribution("vip", "age")
            .bounds([18, 30])
            .as_of("2026-11-25");
        let Some(v1::distribution_request::Buckets::Bounds(bounds)) = &dist.message().buckets
        else {
            panic!("bounds not set");
        };
        assert_eq!(bounds.bounds.len(), 2);
        assert_eq!(dist.message().as_of.as_deref(), Some("2026-11-25"));
        assert_eq!(dist.message().table, "users");

        let top = client.top("vip", "interest").k(3).order(TopOrder::Tgi);
        assert_eq!(top.message().order(), TopOrder::Tgi);
        assert_eq!(client.sample("vip", 9).seed(4).message().seed, Some(4));
    }
}
