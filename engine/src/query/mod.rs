//! Crowd queries: plan an expression once at one snapshot, then count it, list it, test one user
//! against it or explain it.
//!
//! ```text
//! text ──expr::parse──▶ Expr ──plan::Planner──▶ Node tree ──eval (per shard, in parallel)──▶ merge
//! ```
//! Shards are evaluated on rayon's pool (one thread per core) and merged: counts add, bitmaps of
//! different shards are disjoint so they concatenate.

mod blockwise;
pub(crate) mod eval;
pub(crate) mod plan;
#[cfg(test)]
mod tests;

use std::time::Instant;

use croaring::Bitmap;
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::expr::{Expr, parse};
use crate::ids::{Key, KeyRef};
use crate::table::{TableSnapshot, Value};
use eval::Shard;
use plan::{Node, Planner};

/// Pages of at least this many members look their keys up in parallel.
const PARALLEL_KEYS: usize = 1 << 14;

/// An expression planned against one snapshot, ready to evaluate any number of times.
#[derive(Debug, Clone)]
pub struct Crowd<'s> {
    pub(crate) snap: &'s TableSnapshot,
    pub(crate) root: Node<'s>,
    /// The version label analyses read other fields at (`None`: current versions).
    pub(crate) as_of: Option<&'s str>,
}

/// One page of members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MembersPage {
    /// External keys, in id order.
    pub keys: Vec<Key>,
    /// Pass this as the next call's cursor; `None` when the crowd is exhausted.
    pub next_cursor: Option<u64>,
}

/// A node of an `explain` tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExplainNode {
    /// What the node computes.
    pub label: String,
    /// Users expected from catalog statistics.
    pub estimated: u64,
    /// Users actually found.
    pub actual: u64,
    /// Time spent on the node and its children, in microseconds (summed over shards).
    pub micros: u64,
    /// Operands, in evaluation order.
    pub children: Vec<ExplainNode>,
}

impl ExplainNode {
    /// An indented, human-readable rendering of the tree.
    pub fn render(&self) -> String {
        fn go(n: &ExplainNode, depth: usize, out: &mut String) {
            out.push_str(&format!(
                "{:indent$}{}  (estimated {}, actual {}, {} µs)\n",
                "",
                n.label,
                n.estimated,
                n.actual,
                n.micros,
                indent = depth * 2
            ));
            for c in &n.children {
                go(c, depth + 1, out);
            }
        }
        let mut s = String::new();
        go(self, 0, &mut s);
        s
    }
}

impl TableSnapshot {
    /// Plans `expr` against the current versions of its fields.
    pub fn crowd(&self, expr: &Expr) -> Result<Crowd<'_>> {
        self.crowd_as_of(expr, None)
    }

    /// Plans `expr` reading every field at the version labelled `as_of` (current when `None`).
    pub fn crowd_as_of<'s>(&'s self, expr: &Expr, as_of: Option<&'s str>) -> Result<Crowd<'s>> {
        self.crowd_with(expr, as_of, None)
    }

    /// Plans `expr` with every option: fields read as of version `as_of` (current when
    /// `None`), and behaviour windows (`last 7 days`, `30 days ago`) counted back from day
    /// `reference` (days since 1970-01-01; `None`: [`TableSnapshot::reference_day`]).
    pub fn crowd_with<'s>(
        &'s self,
        expr: &Expr,
        as_of: Option<&'s str>,
        reference: Option<i32>,
    ) -> Result<Crowd<'s>> {
        expr.check()
            .map_err(|e| Error::InvalidArgument(format!("malformed expression: {e}")))?;
        let reference = reference.or_else(|| self.reference_day());
        let root = Planner {
            snap: self,
            as_of,
            reference,
        }
        .plan(expr)?;
        Ok(Crowd {
            snap: self,
            root,
            as_of,
        })
    }

    /// Parses and plans the text form of an expression.
    pub fn crowd_text(&self, text: &str) -> Result<Crowd<'_>> {
        self.crowd(&parse(text)?)
    }

    /// Every field value of one user, by field path (in path order), for fields where the user
    /// has a value.
    pub fn portrait<'k>(&self, key: impl Into<KeyRef<'k>>) -> Result<Vec<(String, Value)>> {
        let key = key.into();
        let id = self
            .id_of(key)?
            .ok_or_else(|| Error::KeyNotFound(key.to_string()))?;
        self.portrait_of_id(id)
    }
}

impl<'s> Crowd<'s> {
    /// The snapshot the crowd was planned at.
    pub fn snapshot(&self) -> &'s TableSnapshot {
        self.snap
    }

    fn shard(&self, shard: u32) -> Shard<'s> {
        Shard {
            snap: self.snap,
            shard,
        }
    }

    /// Exact number of users, shard-parallel, without materializing more than needed.
    pub fn count(&self) -> Result<u64> {
        (0..self.snap.shards())
            .into_par_iter()
            .map(|s| eval::count(&self.root, &self.shard(s)))
            .try_reduce(|| 0, |a, b| Ok(a + b))
    }

    /// The users of one shard.
    pub fn shard_bitmap(&self, shard: u32) -> Result<Bitmap> {
        Ok(eval::eval(&self.root, &self.shard(shard))?.into_owned())
    }

    /// The stored (serialized) bytes of this crowd in `shard`, for kernels that read it in
    /// place, when the crowd is one stored bitmap (a flag, or one value of an enum or set)
    /// without real-time changes in the shard: `Some(None)` when nobody in the shard is a
    /// member. `None` for any other crowd: callers then use [`Crowd::shard_bitmap`].
    pub(crate) fn stored_in(&self, shard: u32) -> Result<Option<Option<&'s [u8]>>> {
        match &self.root {
            Node::Flag(f) => f.stored_bytes_in(shard, None),
            Node::AnyValue(f, codes) if codes.len() == 1 => {
                f.stored_bytes_in(shard, Some(codes[0]))
            }
            _ => Ok(None),
        }
    }

    /// Every member's id, as one bitmap.
    pub fn bitmap(&self) -> Result<Bitmap> {
        let parts: Vec<Bitmap> = (0..self.snap.shards())
            .into_par_iter()
            .map(|s| self.shard_bitmap(s))
            .collect::<Result<_>>()?;
        let refs: Vec<&Bitmap> = parts.iter().collect();
        Ok(Bitmap::fast_or(&refs))
    }

    /// Whether user `key` is a member, evaluated for that user alone. Unknown users are not.
    pub fn contains<'k>(&self, key: impl Into<KeyRef<'k>>) -> Result<bool> {
        match self.snap.id_of(key)? {
            Some(id) => self.contains_id(id),
            None => Ok(false),
        }
    }

    /// Whether user `id` is a member.
    pub fn contains_id(&self, id: u32) -> Result<bool> {
        eval::contains(&self.root, self.snap, id)
    }

    /// Up to `limit` members with ids after `cursor` (from the start when `None`), in id order.
    /// Cursors are user ids, stable across snapshots: paging never repeats or skips a user that
    /// stays a member.
    pub fn members(&self, cursor: Option<u64>, limit: usize) -> Result<MembersPage> {
        self.members_with(cursor, limit, PARALLEL_KEYS)
    }

    /// [`Crowd::members`], looking the keys up on every core from `parallel_keys` members on.
    pub(crate) fn members_with(
        &self,
        cursor: Option<u64>,
        limit: usize,
        parallel_keys: usize,
    ) -> Result<MembersPage> {
        let mut ids = Vec::with_capacity(limit.min(1 << 16));
        let mut it = self.member_ids(cursor);
        let mut more = false;
        for id in it.by_ref() {
            let id = id?;
            if ids.len() == limit {
                more = true;
                break;
            }
            ids.push(id);
        }
        let next_cursor = if more {
            ids.last().map(|&i| i as u64)
        } else {
            None
        };
        let mut keys = Vec::with_capacity(ids.len());
        if ids.len() < parallel_keys.max(1) {
            self.snap
                .for_each_key(ids.iter().copied(), |_, k| keys.push(k.to_owned()))?;
        } else {
            // Each key is a cache miss or two in the dictionary: an export of 100k keys spends
            // most of its time here, and the chunks come back in order.
            let chunk = ids.len().div_ceil(4 * rayon::current_num_threads()).max(1);
            let parts: Vec<Vec<Key>> = ids
                .par_chunks(chunk)
                .map(|part| {
                    let mut out = Vec::with_capacity(part.len());
                    self.snap
                        .for_each_key(part.iter().copied(), |_, k| out.push(k.to_owned()))?;
                    Ok(out)
                })
                .collect::<Result<_>>()?;
            for part in parts {
                keys.extend(part);
            }
        }
        Ok(MembersPage { keys, next_cursor })
    }

    /// Member ids after `cursor`, in order, evaluating one shard at a time.
    pub fn member_ids(&self, cursor: Option<u64>) -> MemberIds<'_, 's> {
        let start = cursor.map(|c| c + 1).unwrap_or(0);
        MemberIds {
            crowd: self,
            next_shard: (start >> crate::SHARD_BITS) as u32,
            start,
            buf: Vec::new(),
            pos: 0,
        }
    }

    /// The plan tree with estimated cardinalities only; nothing is evaluated (`actual` and
    /// `micros` are 0).
    pub fn plan(&self) -> ExplainNode {
        fn go(crowd: &Crowd<'_>, node: &Node<'_>) -> ExplainNode {
            ExplainNode {
                label: node.label(),
                estimated: node.estimate(crowd.snap.users() as u64),
                actual: 0,
                micros: 0,
                children: node.children().into_iter().map(|c| go(crowd, c)).collect(),
            }
        }
        go(self, &self.root)
    }

    /// Evaluates every node on every shard, with estimated and actual cardinalities and time.
    pub fn explain(&self) -> Result<ExplainNode> {
        fn go<'s>(crowd: &Crowd<'s>, node: &Node<'s>) -> Result<ExplainNode> {
            let t = Instant::now();
            let mut actual = 0;
            for s in 0..crowd.snap.shards() {
                actual += eval::eval(node, &crowd.shard(s))?.cardinality();
            }
            let micros = t.elapsed().as_micros() as u64;
            let children = node
                .children()
                .into_iter()
                .map(|c| go(crowd, c))
                .collect::<Result<_>>()?;
            Ok(ExplainNode {
                label: node.label(),
                estimated: node.estimate(crowd.snap.users() as u64),
                actual,
                micros,
                children,
            })
        }
        go(self, &self.root)
    }
}

/// Iterator over member ids, one shard evaluated at a time; see [`Crowd::member_ids`].
#[derive(Debug)]
pub struct MemberIds<'c, 's> {
    crowd: &'c Crowd<'s>,
    next_shard: u32,
    start: u64,
    buf: Vec<u32>,
    pos: usize,
}

impl Iterator for MemberIds<'_, '_> {
    type Item = Result<u32>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(&id) = self.buf.get(self.pos) {
                self.pos += 1;
                return Some(Ok(id));
            }
            if self.next_shard >= self.crowd.snap.shards() {
                return None;
            }
            let shard = self.next_shard;
            self.next_shard += 1;
            match self.crowd.shard_bitmap(shard) {
                Ok(mut b) => {
                    if self.start > 0 && self.start <= u32::MAX as u64 {
                        b.remove_range(..self.start as u32);
                    }
                    self.buf = b.to_vec();
                    self.pos = 0;
                }
                Err(e) => return Some(Err(e)),
            }
        }
    }
}
