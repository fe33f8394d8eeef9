//! `AnalysisService`: breakdowns, top values, distributions, aggregates, overlaps, samples and
//! plans of crowds.
//!
//! Numbers cross the wire in the field's own terms: bucket bounds, extremes and percentiles as
//! values of the field's kind (decimals as exact strings), averages in the field's unit.

use std::sync::Arc;

use portrait_engine::{Buckets, Crowd, FieldKind, TableSnapshot, TopOrder, TopRow};
use portrait_proto::v1::{self, analysis_service_server::AnalysisService};
use tonic::{Request, Response, Status};

use super::{State, as_of, plan};
use crate::call::{Call, run_blocking, run_parallel};
use crate::convert;
use crate::limits::{self, DEFAULT_GROUP_ROWS, DEFAULT_TOP_K};
use crate::status::OrStatus;

/// The analysis service over the shared [`State`].
#[derive(Debug, Clone)]
pub struct AnalysisApi {
    state: Arc<State>,
}

impl AnalysisApi {
    /// The service over `state`.
    pub fn new(state: Arc<State>) -> Self {
        Self { state }
    }
}

/// The kind of numeric field `path`, refusing other kinds as the engine would.
fn numeric_kind(snap: &TableSnapshot, path: &str) -> Result<FieldKind, Status> {
    let kind = snap.field(path).or_status()?.kind();
    if !kind.is_numeric() {
        return Err(crate::status::to_status(
            portrait_engine::Error::KindMismatch {
                path: path.to_owned(),
                actual: kind.name(),
                expected: "a numeric field",
            },
        ));
    }
    Ok(kind)
}

/// The buckets of a distribution request, in stored units of a field of `kind`.
fn buckets(
    kind: FieldKind,
    spec: Option<&v1::distribution_request::Buckets>,
    max_bounds: usize,
) -> Result<Buckets, Status> {
    use v1::distribution_request::Buckets as B;
    Ok(match spec {
        None => Buckets::EqualWidth(10),
        Some(B::EqualWidth(n)) => Buckets::EqualWidth(*n),
        Some(B::Quantiles(n)) => Buckets::Quantiles(*n),
        Some(B::Bounds(bounds)) => {
            limits::check(
                "bounds of Distribution",
                bounds.bounds.len() as u64,
                max_bounds as u64,
            )?;
            let mut units = Vec::with_capacity(bounds.bounds.len());
            for (i, b) in bounds.bounds.iter().enumerate() {
                let literal = b
                    .value
                    .as_ref()
                    .ok_or_else(|| "the value is missing".to_owned())
                    .and_then(convert::literal_value)
                    .map_err(|e| Status::invalid_argument(format!("bounds[{i}]: {e}")))?;
                let u = convert::ceil_units(kind, &literal).ok_or_else(|| {
                    Status::invalid_argument(format!(
                        "bounds[{i}]: {literal} is not a value for a {} field",
                        kind.name()
                    ))
                })?;
                units.push(u);
            }
            Buckets::Bounds(units)
        }
    })
}

fn top_order(order: i32) -> Result<TopOrder, Status> {
    match v1::TopOrder::try_from(order) {
        Ok(v1::TopOrder::Unspecified | v1::TopOrder::Count) => Ok(TopOrder::Count),
        Ok(v1::TopOrder::Share) => Ok(TopOrder::Share),
        Ok(v1::TopOrder::Tgi) => Ok(TopOrder::Tgi),
        Err(_) => Err(Status::invalid_argument(format!(
            "order must be COUNT, SHARE or TGI, got {order}"
        ))),
    }
}

/// Top rows with TGI against `base` instead of all users: every candidate of the crowd is
/// ranked again, so `k` applies after the new TGI is known.
fn top_against(
    call: &Call,
    crowd: &Crowd<'_>,
    base: &Crowd<'_>,
    prefix: &str,
    k: usize,
    order: TopOrder,
) -> Result<Vec<TopRow>, Status> {
    let snap = crowd.snapshot();
    let mut rows = crowd
        .top_values(prefix, usize::MAX, TopOrder::Count)
        .or_status()?;
    let base = base.bitmap().or_status()?;
    let base_total = base.cardinality();
    for row in &mut rows {
        call.check()?;
        let field = snap.field(&row.path).or_status()?;
        let holders = match &row.value {
            None => field.flag_bitmap(),
            Some(v) => field.value_bitmap(v),
        }
        .or_status()?;
        let base_share = match base_total {
            0 => 0.0,
            n => holders.and_cardinality(&base) as f64 / n as f64,
        };
        row.tgi = (base_share > 0.0).then(|| row.share / base_share * 100.0);
    }
    if order == TopOrder::Tgi {
        rows.sort_by(|a, b| {
            b.tgi
                .unwrap_or(0.0)
                .total_cmp(&a.tgi.unwrap_or(0.0))
                .then_with(|| b.count.cmp(&a.count))
                .then_with(|| a.path.cmp(&b.path))
        });
    }
    rows.truncate(k);
    Ok(rows)
}

#[tonic::async_trait]
impl AnalysisService for AnalysisApi {
    async fn group(
        &self,
        request: Request<v1::GroupRequest>,
    ) -> Result<Response<v1::GroupResponse>, Status> {
        let state = self.state.clone();
        let call = state.call(&request);
        let r = request.into_inner();
        let limit = match r.limit {
            0 => DEFAULT_GROUP_ROWS,
            n => n,
        };
        limits::check(
            "limit of Group",
            limit.into(),
            state.limits.max_group_rows.into(),
        )?;
        run_parallel(call, move |call| {
            let snap = state.snapshot(&r.table)?;
            let expr = state.expr(&snap, r.expr.as_ref(), "expr")?;
            let as_of = as_of(&r.as_of);
            let crowd = plan(&snap, &expr, as_of)?;
            let base_expr = r
                .base
                .as_ref()
                .map(|b| state.expr(&snap, Some(b), "base"))
                .transpose()?;
            let base = base_expr
                .as_ref()
                .map(|b| plan(&snap, b, as_of))
                .transpose()?;
            let dims: Vec<&str> = r.dims.iter().map(String::as_str).collect();
            let rows = crowd
                .group_count(&dims, base.as_ref(), limit as usize)
                .or_status()?;
            call.check()?;
            let total = crowd.count().or_status()?;
            let base_total = match &base {
                Some(b) => b.count().or_status()?,
                None => snap.users().into(),
            };
            let response = v1::GroupResponse {
                dims: r.dims.clone(),
                rows: rows
                    .into_iter()
                    .map(|g| v1::GroupRow {
                        values: g.values.iter().map(|v| convert::string_value(v)).collect(),
                        count: g.count,
                        share: g.share,
                        base_count: g.base_count,
                        base_share: g.base_share,
                        tgi: g.tgi.unwrap_or(0.0),
                    })
                    .collect(),
                total,
                base_total,
            };
            Ok(Response::new(
                state.fits(response, "ask for fewer rows with `limit`")?,
            ))
        })
        .await
    }

    async fn top(
        &self,
        request: Request<v1::TopRequest>,
    ) -> Result<Response<v1::TopResponse>, Status> {
        let state = self.state.clone();
        let call = state.call(&request);
        let r = request.into_inner();
        let k = match r.k {
            0 => DEFAULT_TOP_K,
            n => n,
        };
        limits::check("k of Top", k.into(), state.limits.max_top_k.into())?;
        let order = top_order(r.order)?;
        run_parallel(call, move |call| {
            let snap = state.snapshot(&r.table)?;
            let expr = state.expr(&snap, r.expr.as_ref(), "expr")?;
            let as_of = as_of(&r.as_of);
            let crowd = plan(&snap, &expr, as_of)?;
            let rows = match &r.base {
                None => crowd.top_values(&r.field, k as usize, order).or_status()?,
                Some(b) => {
                    let base_expr = state.expr(&snap, Some(b), "base")?;
                    let base = plan(&snap, &base_expr, as_of)?;
                    top_against(call, &crowd, &base, &r.field, k as usize, order)?
                }
            };
            call.check()?;
            let total = crowd.count().or_status()?;
            let response = v1::TopResponse {
                rows: rows
                    .into_iter()
                    .map(|row| v1::TopRow {
                        value: Some(match &row.value {
                            None => convert::value(&portrait_engine::Value::Flag),
                            Some(v) => convert::string_value(v),
                        }),
                        path: row.path,
                        count: row.count,
                        share: row.share,
                        tgi: row.tgi.unwrap_or(0.0),
                    })
                    .collect(),
                total,
            };
            Ok(Response::new(
                state.fits(response, "ask for fewer rows with `k`")?,
            ))
        })
        .await
    }

    async fn distribution(
        &self,
        request: Request<v1::DistributionRequest>,
    ) -> Result<Response<v1::DistributionResponse>, Status> {
        let state = self.state.clone();
        let call = state.call(&request);
        let r = request.into_inner();
        run_parallel(call, move |call| {
            let snap = state.snapshot(&r.table)?;
            let expr = state.expr(&snap, r.expr.as_ref(), "expr")?;
            let crowd = plan(&snap, &expr, as_of(&r.as_of))?;
            let kind = numeric_kind(&snap, &r.field)?;
            let spec = buckets(kind, r.buckets.as_ref(), state.limits.max_buckets)?;
            let rows = crowd.distribution(&r.field, &spec).or_status()?;
            call.check()?;
            let crowd_size = crowd.count().or_status()?;
            let total: u64 = rows.iter().map(|b| b.count).sum();
            let bound = |b: Option<i64>| {
                b.map(|u| convert::numeric_value(kind, u))
                    .unwrap_or_default()
            };
            Ok(Response::new(v1::DistributionResponse {
                buckets: rows
                    .iter()
                    .map(|b| v1::Bucket {
                        lower: Some(bound(b.lower)),
                        upper: Some(bound(b.upper)),
                        count: b.count,
                    })
                    .collect(),
                total,
                missing: crowd_size.saturating_sub(total),
            }))
        })
        .await
    }

    async fn aggregate(
        &self,
        request: Request<v1::AggregateRequest>,
    ) -> Result<Response<v1::AggregateResponse>, Status> {
        let state = self.state.clone();
        let call = state.call(&request);
        let r = request.into_inner();
        run_parallel(call, move |_| {
            let snap = state.snapshot(&r.table)?;
            let expr = state.expr(&snap, r.expr.as_ref(), "expr")?;
            let crowd = plan(&snap, &expr, as_of(&r.as_of))?;
            let kind = numeric_kind(&snap, &r.field)?;
            let a = crowd.aggregate(&r.field, &r.percentiles).or_status()?;
            let value = |u: i64| convert::numeric_value(kind, u);
            Ok(Response::new(v1::AggregateResponse {
                count: a.count,
                sum: if a.count == 0 {
                    convert::sum_value(kind, 0)
                } else {
                    convert::sum_value(kind, a.sum)
                },
                avg: a
                    .avg
                    .map(|avg| convert::in_field_units(kind, avg))
                    .unwrap_or(0.0),
                min: a.min.map(value),
                max: a.max.map(value),
                percentiles: r
                    .percentiles
                    .iter()
                    .map(|&p| v1::Percentile {
                        percentile: p,
                        value: a
                            .percentiles
                            .iter()
                            .find(|(q, _)| *q == p)
                            .map(|(_, u)| value(*u)),
                    })
                    .collect(),
            }))
        })
        .await
    }

    async fn overlap(
        &self,
        request: Request<v1::OverlapRequest>,
    ) -> Result<Response<v1::OverlapResponse>, Status> {
        let state = self.state.clone();
        let call = state.call(&request);
        let r = request.into_inner();
        if r.exprs.is_empty() {
            return Err(Status::invalid_argument("exprs needs at least one crowd"));
        }
        limits::check(
            "crowds of Overlap",
            r.exprs.len() as u64,
            state.limits.max_overlap_crowds as u64,
        )?;
        run_parallel(call, move |call| {
            let snap = state.snapshot(&r.table)?;
            let exprs = r
                .exprs
                .iter()
                .enumerate()
                .map(|(i, e)| state.expr(&snap, Some(e), &format!("exprs[{i}]")))
                .collect::<Result<Vec<_>, _>>()?;
            let as_of = as_of(&r.as_of);
            let mut crowds = Vec::with_capacity(exprs.len());
            for e in &exprs {
                call.check()?;
                crowds.push(plan(&snap, e, as_of)?);
            }
            let matrix = portrait_engine::overlap(&snap, &crowds).or_status()?;
            Ok(Response::new(v1::OverlapResponse {
                n: crowds.len() as u32,
                matrix: matrix.into_iter().flatten().collect(),
            }))
        })
        .await
    }

    async fn sample(
        &self,
        request: Request<v1::SampleRequest>,
    ) -> Result<Response<v1::SampleResponse>, Status> {
        let state = self.state.clone();
        let call = state.call(&request);
        let r = request.into_inner();
        limits::check("n of Sample", r.n.into(), state.limits.max_sample.into())?;
        let seed = r.seed.unwrap_or_else(random_seed);
        run_parallel(call, move |_| {
            let snap = state.snapshot(&r.table)?;
            let expr = state.expr(&snap, r.expr.as_ref(), "expr")?;
            let crowd = plan(&snap, &expr, as_of(&r.as_of))?;
            let keys = crowd.sample(r.n as usize, seed).or_status()?;
            let response = v1::SampleResponse {
                keys: keys.iter().map(ToString::to_string).collect(),
                seed,
            };
            Ok(Response::new(
                state.fits(response, "ask for a smaller sample")?,
            ))
        })
        .await
    }

    async fn explain(
        &self,
        request: Request<v1::ExplainRequest>,
    ) -> Result<Response<v1::ExplainResponse>, Status> {
        let state = self.state.clone();
        let call = state.call(&request);
        let r = request.into_inner();
        run_blocking(call, move |_| {
            let snap = state.snapshot(&r.table)?;
            let expr = state.expr(&snap, r.expr.as_ref(), "expr")?;
            let crowd = plan(&snap, &expr, as_of(&r.as_of))?;
            let tree = if r.analyze {
                crowd.explain().or_status()?
            } else {
                crowd.plan()
            };
            Ok(Response::new(v1::ExplainResponse {
                plan: convert::plan_text(&tree, r.analyze),
                root: Some(convert::plan_node(&tree, r.analyze)),
            }))
        })
        .await
    }
}

/// A seed for a `Sample` that did not name one: the clock mixed with a per-process counter.
fn random_seed() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut z = nanos ^ COUNTER.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
