//! The Rust client of Portrait, the bitmap-index database for user profiling.
//!
//! # Tutorial
//!
//! Start `portraitd` (it listens on `http://127.0.0.1:7070` by default), then connect. One
//! [`Client`] holds one HTTP/2 connection; clone it freely, clones share the connection.
//!
//! ```no_run
//! # async fn demo() -> portrait_client::Result<()> {
//! use portrait_client::Client;
//!
//! let client = Client::connect("http://127.0.0.1:7070").await?;
//! # let _ = client;
//! # Ok(())
//! # }
//! ```
//!
//! Every call is a builder: name what you want, chain options, `.await` it. Requests go to the
//! `users` table unless you say `.table(..)` (or set another default with
//! [`ClientBuilder::default_table`]).
//!
//! ## Count a crowd
//!
//! Crowds are written in the compact text form of expressions...
//!
//! ```no_run
//! # async fn demo(client: portrait_client::Client) -> portrait_client::Result<()> {
//! let vips = client.count("vip AND age >= 30").await?;
//! let last_week = client
//!     .count("vip AND age >= 30")
//!     .table("users")
//!     .as_of("2026-11-25")
//!     .await?;
//! println!("{vips} VIPs over 30 today, {last_week} on 2026-11-25");
//! # Ok(())
//! # }
//! ```
//!
//! ...or, from programs, as a structured AST that needs no quoting (see [`ast`]):
//!
//! ```no_run
//! # async fn demo(client: portrait_client::Client) -> portrait_client::Result<()> {
//! use portrait_client::ast::{and, field, flag, not};
//!
//! let city = "Shanghai"; // e.g. user input: no escaping needed
//! let crowd = and([flag("vip"), field("city").eq(city), not(flag("risk/blacklist"))]);
//! let n = client.count(crowd).await?;
//! # let _ = n;
//! # Ok(())
//! # }
//! ```
//!
//! ## Look up one user
//!
//! ```no_run
//! # async fn demo(client: portrait_client::Client) -> portrait_client::Result<()> {
//! if client.contains("u42", "interest HAS 'sports'").await? {
//!     let portrait = client.portrait("u42").prefixes(["demographic"]).await?;
//!     for value in &portrait.values {
//!         println!("{} = {:?}", value.path, value.value);
//!     }
//! }
//! # Ok(())
//! # }
//! ```
//!
//! ## Export members
//!
//! Members arrive as a stream of batches. A transient failure mid-stream is resumed from the last
//! cursor automatically; [`MemberStream::cursor`] lets you resume in another process.
//!
//! ```no_run
//! # async fn demo(client: portrait_client::Client) -> portrait_client::Result<()> {
//! let mut members = client.members("vip").limit(1_000_000).await?;
//! while let Some(batch) = members.next_batch().await? {
//!     for key in batch.keys {
//!         println!("{key}");
//!     }
//! }
//! # Ok(())
//! # }
//! ```
//!
//! ## Analyse a crowd
//!
//! ```no_run
//! # async fn demo(client: portrait_client::Client) -> portrait_client::Result<()> {
//! use portrait_client::proto::TopOrder;
//!
//! // Which interests over-index among young VIPs, compared with all users?
//! let top = client
//!     .top("vip AND age < 30", "interest")
//!     .k(10)
//!     .order(TopOrder::Tgi)
//!     .await?;
//! for row in &top.rows {
//!     println!("{:?}: {} users, TGI {:.0}", row.value, row.count, row.tgi);
//! }
//!
//! // Gender x city breakdown, against the base of all VIPs.
//! let groups = client.group("vip AND age < 30", ["gender", "city"]).base("vip").await?;
//! println!("{} groups", groups.rows.len());
//!
//! // Spending percentiles.
//! let spend = client.aggregate("vip", "spend/total").percentiles([50.0, 90.0, 99.0]).await?;
//! println!("{} spenders, average {:.2}", spend.count, spend.avg);
//! # Ok(())
//! # }
//! ```
//!
//! ## Analyse behaviour
//!
//! Event fields (the demo has `login`, `view`, `add_cart`, `purchase`, `pay`, …) answer
//! `did(...)` predicates in crowds, and retention, funnels, frequency and activity:
//!
//! ```no_run
//! # async fn demo(client: portrait_client::Client) -> portrait_client::Result<()> {
//! use portrait_client::ast::{and, did, did_count, last_days, not};
//! use portrait_client::proto::{CompareOp, Measure, Period};
//!
//! // Bought at least twice in the last 7 days, but has not logged in for 3 days.
//! let at_risk = and([
//!     did_count("purchase", last_days(7), CompareOp::Ge, 2, Measure::Times),
//!     not(did("login", last_days(3))),
//! ]);
//! println!("{} buyers at risk", client.count(at_risk).await?);
//!
//! // Of each day's logins in the first week of November (users over 30), who bought 0-7 days later.
//! let retention = client
//!     .retention("login", "purchase", "2026-11-01", "2026-11-07")
//!     .period(Period::Day)
//!     .periods(7)
//!     .crowd("demographic/age >= 30")
//!     .await?;
//! for row in &retention.rows {
//!     println!("{}: {} users, day-1 rate {:?}", row.cohort, row.size, row.rates.get(1));
//! }
//!
//! // A 4-step funnel within 7 days, by gender.
//! let funnel = client
//!     .funnel(["view", "add_cart", "purchase", "pay"], "2026-10-27", "2026-11-18")
//!     .window_days(7)
//!     .split("demographic/gender")
//!     .await?;
//! for group in &funnel.groups {
//!     let last = group.steps.last().map_or(0.0, |s| s.overall);
//!     println!("{:?}: {:.1}% pay", group.group, last * 100.0);
//! }
//!
//! // How many days users bought, and weekly active users.
//! let freq = client.frequency("purchase", "2026-11-01", "2026-11-25").await?;
//! let wau = client.active("login", "2026-11-01", "2026-11-25").period(Period::Week).await?;
//! println!("{} never bought; {} weeks", freq.inactive, wau.periods.len());
//! # Ok(())
//! # }
//! ```
//!
//! ## Write in real time
//!
//! A batch of writes sets or clears single values and appends events, atomically: once `.await`
//! returns `Ok`, the whole batch is durable on the server and visible to every later query.
//! Unknown keys add users.
//!
//! ```no_run
//! # async fn demo(client: portrait_client::Client) -> portrait_client::Result<()> {
//! use portrait_client::value;
//!
//! client
//!     .write()
//!     .set("u42", "interest/sports", true) // a flag
//!     .set("u42", "demographic/gender", "female") // an enum
//!     .set("u42", "commerce/total_spend", value::decimal("12.50"))
//!     .clear("u42", "risk/blacklist")
//!     .append("u42", "purchase", 1_764_060_000_000, 1) // an event, at Unix milliseconds
//!     .await?;
//! assert!(client.contains("u42", "interest/sports").await?);
//! let delta = client.delta_stats().await?;
//! println!("{} changes wait for compaction", delta.pending);
//! # Ok(())
//! # }
//! ```
//!
//! ## Handle errors
//!
//! Failures come back as a typed [`Error`]. An expression the server rejects is an
//! [`Error::InvalidArgument`] that knows where the problem is:
//!
//! ```no_run
//! # async fn demo(client: portrait_client::Client) -> portrait_client::Result<()> {
//! use portrait_client::Error;
//!
//! match client.count("vip AND age >>= 30").await {
//!     Ok(n) => println!("{n}"),
//!     Err(Error::InvalidArgument { message, position: Some(at) }) => {
//!         eprintln!("bad expression at {at}: {message}");
//!     }
//!     Err(other) => return Err(other),
//! }
//! # Ok(())
//! # }
//! ```
//!
//! Transient failures ([`Error::Unavailable`], and [`Error::DeadlineExceeded`] for reads) are
//! retried with exponential backoff and jitter before they reach you; tune that with
//! [`ClientBuilder::retries`] or [`ClientBuilder::retry_policy`].
//!
//! # Shape of the API
//!
//! - [`Client`] methods return request builders from [`request`]; every builder has
//!   `.timeout(..)`, table-scoped ones `.table(..)`, query and analysis ones `.as_of(..)`.
//! - A response whose only payload is one value resolves to that value (`count` gives `u64`,
//!   `contains` gives `bool`); the others resolve to the generated message in [`proto`].
//! - This crate depends on the wire contract only (`portrait-proto`), never on the engine.

mod client;
mod error;
mod expr;
pub mod request;
mod retry;

pub use client::{
    Client, ClientBuilder, DEFAULT_ADDRESS, DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_TABLE, DEFAULT_TIMEOUT,
};
pub use error::{COLUMN_METADATA, Error, LINE_METADATA, Position, Result};
pub use expr::{Expr, IntoLiteral, ast};
pub use request::{IntoValue, MemberStream, OverlapMatrix, value};
pub use retry::RetryPolicy;

/// The generated `portrait.v1` messages and enums, as returned by the client.
pub use portrait_proto::v1 as proto;
