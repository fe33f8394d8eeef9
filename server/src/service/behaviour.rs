//! `BehaviourService`: retention matrices, funnels, frequency histograms and activity series
//! over event fields.
//!
//! Every request analyses a crowd (its `expr`, or every known user when absent) planned with the
//! request's reference day, so relative windows in the crowd (`did(login, last 7 days)`) and the
//! analysis count back from the same day. Dates cross the wire as `YYYY-MM-DD` in the table's
//! time zone, converted to and from the engine's day numbers by [`crate::convert`]. The engine
//! checks events, splits, ranges and sizes; its errors reach the client through
//! [`crate::status`].

use std::sync::Arc;

use portrait_engine::behaviour::funnel::FunnelQuery;
use portrait_engine::behaviour::retention::RetentionQuery;
use portrait_engine::expr::Expr;
use portrait_engine::{Crowd, TableSnapshot};
use portrait_proto::v1::{self, behaviour_service_server::BehaviourService};
use tonic::{Request, Response, Status};

use super::{State, as_of};
use crate::call::run_parallel;
use crate::convert;
use crate::status::OrStatus;

/// The behaviour service over the shared [`State`].
#[derive(Debug, Clone)]
pub struct BehaviourApi {
    state: Arc<State>,
}

impl BehaviourApi {
    /// The service over `state`.
    pub fn new(state: Arc<State>) -> Self {
        Self { state }
    }
}

/// The crowd of a behaviour request: `expr` (every known user when absent), planned at version
/// `as_of` with relative windows counted back from `reference`.
fn crowd<'s>(
    state: &State,
    snap: &'s TableSnapshot,
    expr: Option<&v1::Expr>,
    as_of: Option<&'s str>,
    reference: Option<i32>,
) -> Result<Crowd<'s>, Status> {
    let expr = match expr {
        None => Expr::All,
        Some(e) => state.expr(snap, Some(e), "expr")?,
    };
    snap.crowd_with(&expr, as_of, reference).or_status()
}

/// The split dimension of a request: `None` when empty.
fn split(dim: &str) -> Option<String> {
    (!dim.is_empty()).then(|| dim.to_owned())
}

/// Refuses an empty event path with a message that names the request field.
fn required(value: &str, what: &str) -> Result<(), Status> {
    if value.is_empty() {
        return Err(Status::invalid_argument(format!(
            "{what} is required: the path of an event field"
        )));
    }
    Ok(())
}

#[tonic::async_trait]
impl BehaviourService for BehaviourApi {
    async fn retention(
        &self,
        request: Request<v1::RetentionRequest>,
    ) -> Result<Response<v1::RetentionResponse>, Status> {
        let state = self.state.clone();
        let call = state.call(&request);
        let r = request.into_inner();
        required(&r.cohort_event, "cohort_event")?;
        required(&r.return_event, "return_event")?;
        let cohorts = convert::day_range(r.cohorts.as_ref(), "cohorts")?;
        let period = convert::period(r.period)?;
        let reference = convert::reference_day(&r.reference_date)?;
        run_parallel(call, move |call| {
            let snap = state.snapshot(&r.table)?;
            let crowd = crowd(&state, &snap, r.expr.as_ref(), as_of(&r.as_of), reference)?;
            let query = RetentionQuery {
                cohort_event: r.cohort_event.clone(),
                return_event: r.return_event.clone(),
                cohorts,
                period,
                periods: r.periods,
                split: split(&r.split),
                reference,
            };
            let rows = crowd.retention(&query).or_status()?;
            call.check()?;
            let response = v1::RetentionResponse {
                rows: rows
                    .iter()
                    .map(|row| v1::RetentionRow {
                        group: row.group.clone(),
                        cohort: convert::day_text(row.cohort),
                        size: row.size,
                        retained: row.retained.clone(),
                        rates: (0..row.retained.len()).map(|k| row.rate(k)).collect(),
                    })
                    .collect(),
                reference_date: reference
                    .or_else(|| snap.reference_day())
                    .map(convert::day_text)
                    .unwrap_or_default(),
            };
            Ok(Response::new(state.fits(
                response,
                "ask for fewer cohorts, fewer periods or a split with fewer values",
            )?))
        })
        .await
    }

    async fn funnel(
        &self,
        request: Request<v1::FunnelRequest>,
    ) -> Result<Response<v1::FunnelResponse>, Status> {
        let state = self.state.clone();
        let call = state.call(&request);
        let r = request.into_inner();
        for (i, step) in r.steps.iter().enumerate() {
            required(step, &format!("steps[{i}]"))?;
        }
        let starts = convert::day_range(r.starts.as_ref(), "starts")?;
        let reference = convert::reference_day(&r.reference_date)?;
        run_parallel(call, move |call| {
            let snap = state.snapshot(&r.table)?;
            let crowd = crowd(&state, &snap, r.expr.as_ref(), as_of(&r.as_of), reference)?;
            let query = FunnelQuery {
                steps: r.steps.clone(),
                window: r.window_days,
                starts,
                split: split(&r.split),
            };
            let rows = crowd.funnel(&query).or_status()?;
            call.check()?;
            let response = v1::FunnelResponse {
                steps: r.steps.clone(),
                groups: rows
                    .iter()
                    .map(|row| v1::FunnelGroup {
                        group: row.group.clone(),
                        steps: r
                            .steps
                            .iter()
                            .enumerate()
                            .map(|(i, event)| v1::FunnelStep {
                                event: event.clone(),
                                users: row.reached[i],
                                conversion: row.conversion(i),
                                overall: row.overall(i),
                                drop_off: row.drop_off(i),
                            })
                            .collect(),
                    })
                    .collect(),
            };
            Ok(Response::new(state.fits(
                response,
                "split by a dimension with fewer values",
            )?))
        })
        .await
    }

    async fn frequency(
        &self,
        request: Request<v1::FrequencyRequest>,
    ) -> Result<Response<v1::FrequencyResponse>, Status> {
        let state = self.state.clone();
        let call = state.call(&request);
        let r = request.into_inner();
        required(&r.event, "event")?;
        let days = convert::day_range(r.days.as_ref(), "days")?;
        let measure = convert::frequency_measure(r.measure)?;
        let reference = convert::reference_day(&r.reference_date)?;
        run_parallel(call, move |_| {
            let snap = state.snapshot(&r.table)?;
            let crowd = crowd(&state, &snap, r.expr.as_ref(), as_of(&r.as_of), reference)?;
            let f = crowd.frequency(&r.event, days, measure).or_status()?;
            Ok(Response::new(v1::FrequencyResponse {
                crowd: f.crowd,
                inactive: f.inactive(),
                histogram: f
                    .histogram
                    .iter()
                    .map(|&(n, users)| v1::FrequencyBucket {
                        n,
                        users,
                        share: convert::rate(users, f.crowd),
                    })
                    .collect(),
                measure: convert::wire_measure(measure).into(),
            }))
        })
        .await
    }

    async fn active(
        &self,
        request: Request<v1::ActiveRequest>,
    ) -> Result<Response<v1::ActiveResponse>, Status> {
        let state = self.state.clone();
        let call = state.call(&request);
        let r = request.into_inner();
        required(&r.event, "event")?;
        let days = convert::day_range(r.days.as_ref(), "days")?;
        let period = convert::period(r.period)?;
        let reference = convert::reference_day(&r.reference_date)?;
        run_parallel(call, move |call| {
            let snap = state.snapshot(&r.table)?;
            let crowd = crowd(&state, &snap, r.expr.as_ref(), as_of(&r.as_of), reference)?;
            let rows = crowd.active(&r.event, days, period).or_status()?;
            call.check()?;
            let size = crowd.count().or_status()?;
            let response = v1::ActiveResponse {
                periods: rows
                    .iter()
                    .map(|row| v1::ActivePeriod {
                        start: convert::day_text(row.period),
                        users: row.users,
                        share: convert::rate(row.users, size),
                    })
                    .collect(),
                crowd: size,
            };
            Ok(Response::new(state.fits(
                response,
                "ask for a shorter range or a longer period",
            )?))
        })
        .await
    }
}
