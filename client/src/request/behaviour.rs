//! Builders of `BehaviourService` calls: retention matrices, funnels, frequency histograms and
//! activity series over event fields.
//!
//! Each analysis looks at every known user unless `.crowd(..)` narrows it. Dates are
//! `YYYY-MM-DD` strings, calendar days in the table's time zone; `.reference_date(..)` sets the
//! day relative windows (`last 7 days` in the crowd) count back from, by default the newest day
//! the table has events for.

use portrait_proto::v1::{self, Measure, Period};

use super::{as_of_setter, request_builder, table, table_setter};
use crate::client::Client;
use crate::error::Result;
use crate::expr::Expr;
use crate::retry::Idempotency;

fn dates(first: impl Into<String>, last: impl Into<String>) -> Option<v1::DateRange> {
    Some(v1::DateRange {
        first: first.into(),
        last: last.into(),
    })
}

impl Client {
    /// The retention matrix of users who did `cohort_event` in the periods from `first`'s to
    /// `last`'s (dates `YYYY-MM-DD`): how many of each cohort did `return_event` 0, 1, …
    /// `.periods(..)` periods later (7 unless set), by day unless `.period(..)` says otherwise.
    pub fn retention(
        &self,
        cohort_event: impl Into<String>,
        return_event: impl Into<String>,
        first: impl Into<String>,
        last: impl Into<String>,
    ) -> Retention {
        Retention::new(
            self,
            v1::RetentionRequest {
                table: table(self),
                expr: None,
                cohort_event: cohort_event.into(),
                return_event: return_event.into(),
                cohorts: dates(first, last),
                period: Period::Day.into(),
                periods: 7,
                split: String::new(),
                reference_date: None,
                as_of: None,
            },
        )
    }

    /// The funnel through the events `steps`, in order, for users whose first step falls between
    /// `first` and `last` (dates `YYYY-MM-DD`) and whose last step comes at most
    /// `.window_days(..)` days after it (7 unless set).
    pub fn funnel<I, S>(
        &self,
        steps: I,
        first: impl Into<String>,
        last: impl Into<String>,
    ) -> Funnel
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Funnel::new(
            self,
            v1::FunnelRequest {
                table: table(self),
                expr: None,
                steps: steps.into_iter().map(Into::into).collect(),
                window_days: 7,
                starts: dates(first, last),
                split: String::new(),
                reference_date: None,
                as_of: None,
            },
        )
    }

    /// The histogram of how many days (or, with `.measure(Measure::Times)`, times) users did
    /// `event` between `first` and `last` (dates `YYYY-MM-DD`).
    pub fn frequency(
        &self,
        event: impl Into<String>,
        first: impl Into<String>,
        last: impl Into<String>,
    ) -> Frequency {
        Frequency::new(
            self,
            v1::FrequencyRequest {
                table: table(self),
                expr: None,
                event: event.into(),
                days: dates(first, last),
                measure: Measure::Days.into(),
                reference_date: None,
                as_of: None,
            },
        )
    }

    /// Users who did `event` in each day (or `.period(..)`) between `first` and `last` (dates
    /// `YYYY-MM-DD`): a DAU, WAU or MAU series.
    pub fn active(
        &self,
        event: impl Into<String>,
        first: impl Into<String>,
        last: impl Into<String>,
    ) -> Active {
        Active::new(
            self,
            v1::ActiveRequest {
                table: table(self),
                expr: None,
                event: event.into(),
                days: dates(first, last),
                period: Period::Day.into(),
                reference_date: None,
                as_of: None,
            },
        )
    }
}

/// Implements `send`, `.crowd(..)` and `.reference_date(..)` for a behaviour builder whose call
/// is `$method`.
macro_rules! behaviour_builder {
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
                            let mut stub = c.behaviour_stub();
                            async move { stub.$method(r).await }
                        },
                    )
                    .await
            }

            /// Analyses only the users of this crowd instead of every known user.
            pub fn crowd(mut self, expr: impl Into<Expr>) -> Self {
                self.message.expr = Some(expr.into().into_proto());
                self
            }

            /// The day (`YYYY-MM-DD`) relative windows count back from, instead of the newest
            /// day the table has events for.
            pub fn reference_date(mut self, date: impl Into<String>) -> Self {
                self.message.reference_date = Some(date.into());
                self
            }
        }
    };
}

request_builder!(
    /// Computes a retention matrix. See [`Client::retention`].
    Retention: v1::RetentionRequest => v1::RetentionResponse
);
behaviour_builder!(Retention, retention, v1::RetentionResponse);

impl Retention {
    /// The unit of cohorts and offsets.
    pub fn period(mut self, period: Period) -> Self {
        self.message.period = period.into();
        self
    }

    /// Offsets computed: `0..=periods`.
    pub fn periods(mut self, periods: u32) -> Self {
        self.message.periods = periods;
        self
    }

    /// Splits every cohort by the values of this ENUM or SET field.
    pub fn split(mut self, dim: impl Into<String>) -> Self {
        self.message.split = dim.into();
        self
    }
}

request_builder!(
    /// Computes a funnel. See [`Client::funnel`].
    Funnel: v1::FunnelRequest => v1::FunnelResponse
);
behaviour_builder!(Funnel, funnel, v1::FunnelResponse);

impl Funnel {
    /// Days the last step may come after the first (0: all on the same day).
    pub fn window_days(mut self, days: u32) -> Self {
        self.message.window_days = days;
        self
    }

    /// Breaks the funnel down by the values of this ENUM or SET field.
    pub fn split(mut self, dim: impl Into<String>) -> Self {
        self.message.split = dim.into();
        self
    }
}

request_builder!(
    /// Computes a frequency histogram. See [`Client::frequency`].
    Frequency: v1::FrequencyRequest => v1::FrequencyResponse
);
behaviour_builder!(Frequency, frequency, v1::FrequencyResponse);

impl Frequency {
    /// Counts days with the event (the default) or times.
    pub fn measure(mut self, measure: Measure) -> Self {
        self.message.measure = measure.into();
        self
    }
}

request_builder!(
    /// Computes an activity series. See [`Client::active`].
    Active: v1::ActiveRequest => v1::ActiveResponse
);
behaviour_builder!(Active, active, v1::ActiveResponse);

impl Active {
    /// The unit of the series: days (the default), weeks or months.
    pub fn period(mut self, period: Period) -> Self {
        self.message.period = period.into();
        self
    }
}

table_setter!(Retention, Funnel, Frequency, Active);
as_of_setter!(Retention, Funnel, Frequency, Active);

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn builders_fill_the_wire_message() {
        let client = Client::builder("http://127.0.0.1:1")
            .connect_lazy()
            .unwrap();
        let retention = client
            .retention("login", "purchase", "2026-11-01", "2026-11-07")
            .period(Period::Week)
            .periods(4)
            .split("gender")
            .crowd("vip")
            .reference_date("2026-11-20")
            .as_of("2026-11-25")
            .table("t");
        let m = retention.message();
        assert_eq!(
            (m.cohort_event.as_str(), m.return_event.as_str()),
            ("login", "purchase")
        );
        let cohorts = m.cohorts.as_ref().unwrap();
        assert_eq!(
            (cohorts.first.as_str(), cohorts.last.as_str()),
            ("2026-11-01", "2026-11-07")
        );
        assert_eq!((m.period(), m.periods), (Period::Week, 4));
        assert_eq!((m.split.as_str(), m.table.as_str()), ("gender", "t"));
        assert_eq!(m.reference_date.as_deref(), Some("2026-11-20"));
        assert_eq!(m.as_of.as_deref(), Some("2026-11-25"));
        assert!(matches!(
            m.expr.as_ref().and_then(|e| e.kind.as_ref()),
            Some(v1::expr::Kind::Text(t)) if t == "vip"
        ));
        assert_eq!(client.retention("a", "b", "x", "y").message().periods, 7);

        let funnel = client.funnel(["view", "pay"], "2026-10-27", "2026-11-18");
        assert_eq!(funnel.message().window_days, 7);
        assert_eq!(funnel.message().expr, None);
        let funnel = funnel.window_days(3).split("city");
        assert_eq!(funnel.message().steps, ["view", "pay"]);
        assert_eq!(
            (
                funnel.message().window_days,
                funnel.message().split.as_str()
            ),
            (3, "city")
        );

        let freq = client.frequency("purchase", "2026-11-01", "2026-11-25");
        assert_eq!(freq.message().measure(), Measure::Days);
        assert_eq!(
            freq.measure(Measure::Times).message().measure(),
            Measure::Times
        );

        let active = client.active("login", "2026-11-01", "2026-11-25");
        assert_eq!(active.message().period(), Period::Day);
        let active = active.period(Period::Month);
        assert_eq!(active.message().period(), Period::Month);
        assert_eq!(active.message().table, "users");
    }
}
