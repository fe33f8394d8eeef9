//! Builders of the real-time calls of `IngestService`: batches of writes (values and event
//! appends), compaction and the size of the delta; and [`IntoValue`], the values a write sets.

use portrait_proto::v1::{self, field_write::Change};

use super::{request_builder, table, table_setter};
use crate::client::Client;
use crate::error::Result;
use crate::retry::Idempotency;

impl Client {
    /// Starts a batch of real-time writes (see [`Write`]): add writes with `.set(..)` and
    /// `.clear(..)`, then `.await` it.
    ///
    /// ```no_run
    /// # async fn demo(client: portrait_client::Client) -> portrait_client::Result<()> {
    /// use portrait_client::value;
    ///
    /// let done = client
    ///     .write()
    ///     .set("u42", "interest/sports", true)
    ///     .set("u42", "account/vip_level", 3)
    ///     .set("u42", "commerce/total_spend", value::decimal("12.50"))
    ///     .set("u42", "activity/last_active", value::timestamp_ms(1_764_028_800_000))
    ///     .clear("u42", "risk/blacklist")
    ///     .append("u42", "purchase", 1_764_060_000_000, 1)
    ///     .await?;
    /// println!("{} writes, {} new users, batch {}", done.writes, done.new_users, done.seq);
    /// # Ok(())
    /// # }
    /// ```
    pub fn write(&self) -> Write {
        Write::new(
            self,
            v1::WriteRequest {
                table: table(self),
                writes: Vec::new(),
            },
        )
    }

    /// Folds the table's pending real-time changes into its stored versions now. The call has
    /// the client's default deadline; give a large delta a longer one with `.timeout(..)`.
    pub fn compact(&self) -> Compact {
        Compact::new(self, v1::CompactRequest { table: table(self) })
    }

    /// The size of the table's real-time delta (changes not yet compacted).
    pub fn delta_stats(&self) -> DeltaStats {
        DeltaStats::new(self, v1::DeltaStatsRequest { table: table(self) })
    }
}

request_builder!(
    /// A batch of real-time writes, applied atomically; resolves once the server has made the
    /// whole batch durable and visible. See [`Client::write`].
    ///
    /// A failed batch applied nothing. A batch whose answer was lost (the connection broke) may
    /// have been applied; it is retried on [`Error::Unavailable`](crate::Error::Unavailable)
    /// like every call, which is harmless because each value write sets an absolute value
    /// (unless another writer changed the same values in between). A batch that appends events
    /// is never retried, since appends add up.
    Write: v1::WriteRequest => v1::WriteResponse
);

impl Write {
    /// Gives user `key` the value `value` of field `path` (see [`IntoValue`]; `true` sets a
    /// flag, `false` clears it).
    pub fn set(
        mut self,
        key: impl Into<String>,
        path: impl Into<String>,
        value: impl IntoValue,
    ) -> Self {
        self.message.writes.push(v1::FieldWrite {
            key: key.into(),
            path: path.into(),
            change: Some(Change::Value(value.into_value())),
        });
        self
    }

    /// Removes the value of field `path` from user `key` (a flag: the user no longer has it).
    pub fn clear(mut self, key: impl Into<String>, path: impl Into<String>) -> Self {
        self.message.writes.push(v1::FieldWrite {
            key: key.into(),
            path: path.into(),
            change: Some(Change::Clear(true)),
        });
        self
    }

    /// Records that user `key` did event `path` `count` times at `at_ms` (Unix epoch
    /// milliseconds; the day is taken in the table's time zone). Appends add up, so a batch
    /// holding one is never retried: a failed call may have been applied.
    pub fn append(
        mut self,
        key: impl Into<String>,
        path: impl Into<String>,
        at_ms: i64,
        count: u32,
    ) -> Self {
        self.message.writes.push(v1::FieldWrite {
            key: key.into(),
            path: path.into(),
            change: Some(Change::Event(v1::EventAppend {
                at_unix_ms: at_ms,
                count,
            })),
        });
        self
    }

    /// Adds writes built elsewhere.
    pub fn extend(mut self, writes: impl IntoIterator<Item = v1::FieldWrite>) -> Self {
        self.message.writes.extend(writes);
        self
    }

    /// Number of writes in the batch so far.
    pub fn len(&self) -> usize {
        self.message.writes.len()
    }

    /// Whether the batch has no write yet.
    pub fn is_empty(&self) -> bool {
        self.message.writes.is_empty()
    }

    /// Sends the batch.
    pub async fn send(self) -> Result<v1::WriteResponse> {
        let appends = self
            .message
            .writes
            .iter()
            .any(|w| matches!(w.change, Some(Change::Event(_))));
        let idempotency = if appends {
            Idempotency::Once
        } else {
            Idempotency::NonIdempotent
        };
        self.client
            .unary(self.message, self.timeout, idempotency, |c, r| {
                let mut stub = c.ingest_stub();
                async move { stub.write(r).await }
            })
            .await
    }
}

request_builder!(
    /// Compacts a table's real-time delta. See [`Client::compact`].
    Compact: v1::CompactRequest => v1::CompactResponse
);

impl Compact {
    /// Sends the request. Repeating it is harmless, so a deadline that expires is retried.
    pub async fn send(self) -> Result<v1::CompactResponse> {
        self.client
            .unary(
                self.message,
                self.timeout,
                Idempotency::Idempotent,
                |c, r| {
                    let mut stub = c.ingest_stub();
                    async move { stub.compact(r).await }
                },
            )
            .await
    }
}

request_builder!(
    /// Fetches the size of a table's real-time delta. See [`Client::delta_stats`].
    DeltaStats: v1::DeltaStatsRequest => v1::DeltaStatsResponse
);

impl DeltaStats {
    /// Sends the request.
    pub async fn send(self) -> Result<v1::DeltaStatsResponse> {
        self.client
            .unary(
                self.message,
                self.timeout,
                Idempotency::Idempotent,
                |c, r| {
                    let mut stub = c.ingest_stub();
                    async move { stub.delta_stats(r).await }
                },
            )
            .await
    }
}

table_setter!(Write, Compact, DeltaStats);

/// A value a real-time write can set: `bool` (a flag: `true` sets, `false` clears), strings (an
/// enum value), integers (an int; whole units of a decimal; epoch milliseconds of a timestamp),
/// a ready [`v1::Value`], or one of the builders in [`value`](crate::value) (decimals,
/// timestamps, sets).
pub trait IntoValue {
    /// The wire value.
    fn into_value(self) -> v1::Value;
}

fn wrap(kind: v1::value::Kind) -> v1::Value {
    v1::Value { kind: Some(kind) }
}

impl IntoValue for v1::Value {
    fn into_value(self) -> v1::Value {
        self
    }
}

impl IntoValue for bool {
    fn into_value(self) -> v1::Value {
        wrap(v1::value::Kind::FlagValue(self))
    }
}

impl IntoValue for &str {
    fn into_value(self) -> v1::Value {
        wrap(v1::value::Kind::StringValue(self.to_owned()))
    }
}

impl IntoValue for String {
    fn into_value(self) -> v1::Value {
        wrap(v1::value::Kind::StringValue(self))
    }
}

macro_rules! int_value {
    ($($t:ty),*) => {$(
        impl IntoValue for $t {
            fn into_value(self) -> v1::Value {
                wrap(v1::value::Kind::IntValue(i64::from(self)))
            }
        }
    )*};
}
int_value!(i8, i16, i32, i64, u8, u16, u32);

/// Values of the kinds Rust has no literal for.
///
/// ```
/// use portrait_client::value;
///
/// let spend = value::decimal("12.50");
/// let seen = value::timestamp_ms(1_764_028_800_000);
/// let interests = value::set(["sports", "travel"]);
/// # let _ = (spend, seen, interests);
/// ```
pub mod value {
    use super::{v1, wrap};

    /// An exact decimal in plain notation (`"12.50"`, `"-3"`) for a decimal field; the server
    /// refuses more places than the field keeps, unless they are zeros.
    pub fn decimal(text: impl Into<String>) -> v1::Value {
        wrap(v1::value::Kind::DecimalValue(text.into()))
    }

    /// A time in Unix epoch milliseconds, for a timestamp field.
    pub fn timestamp_ms(ms: i64) -> v1::Value {
        wrap(v1::value::Kind::TimestampUnixMs(ms))
    }

    /// The whole new list of values of a set field (an empty list clears it).
    pub fn set<I, S>(values: I) -> v1::Value
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        wrap(v1::value::Kind::SetValue(v1::StringSet {
            values: values.into_iter().map(Into::into).collect(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use v1::value::Kind;

    use super::*;

    fn kind(v: v1::Value) -> Kind {
        v.kind.unwrap()
    }

    #[test]
    fn rust_values_become_wire_values() {
        assert_eq!(kind(true.into_value()), Kind::FlagValue(true));
        assert_eq!(
            kind("female".into_value()),
            Kind::StringValue("female".into())
        );
        assert_eq!(
            kind(String::from("x").into_value()),
            Kind::StringValue("x".into())
        );
        assert_eq!(kind(3u8.into_value()), Kind::IntValue(3));
        assert_eq!(kind((-3i64).into_value()), Kind::IntValue(-3));
        assert_eq!(
            kind(value::decimal("1.50")),
            Kind::DecimalValue("1.50".into())
        );
        assert_eq!(kind(value::timestamp_ms(7)), Kind::TimestampUnixMs(7));
        assert_eq!(
            kind(value::set(["a", "b"])),
            Kind::SetValue(v1::StringSet {
                values: vec!["a".into(), "b".into()]
            })
        );
    }

    #[tokio::test]
    async fn a_batch_collects_its_writes_in_order() {
        let client = Client::builder("http://127.0.0.1:1")
            .default_table("devices")
            .connect_lazy()
            .unwrap();
        let batch = client
            .write()
            .set("d1", "vip", true)
            .clear("d2", "city")
            .extend([v1::FieldWrite {
                key: "d3".into(),
                path: "age".into(),
                change: Some(Change::Value(7.into_value())),
            }]);
        assert_eq!(batch.len(), 3);
        let m = batch.message();
        assert_eq!(m.table, "devices");
        let keys: Vec<&str> = m.writes.iter().map(|w| w.key.as_str()).collect();
        assert_eq!(keys, ["d1", "d2", "d3"]);
        assert_eq!(m.writes[1].change, Some(Change::Clear(true)));
        let appended = client.write().append("d1", "login", 7, 2);
        assert_eq!(
            appended.message().writes[0].change,
            Some(Change::Event(v1::EventAppend {
                at_unix_ms: 7,
                count: 2
            }))
        );
        assert!(client.write().table("users").is_empty());
        assert_eq!(client.compact().table("t").message().table, "t");
        assert_eq!(client.delta_stats().message().table, "devices");
    }
}
