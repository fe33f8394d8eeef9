//! The id dictionary: external user keys to dense `u32` ids, and back.
//!
//! Ids are assigned in arrival order starting at 0, so the ids of a table are always exactly
//! `0..n` and bitmaps over them stay dense and small. A table's keys are all strings or all
//! `u64` ([`KeyKind`]).
//!
//! In memory, keys live in one flat store in id order ([`store`]: a `Vec<u64>`, or one UTF-8
//! arena plus `u32` end offsets for strings) and an open-addressing [`index`] of `u32` slots holds
//! only positions in that store, each with a few bits of its key's hash; a lookup always confirms
//! its key against the store. Memory per key is therefore the key itself, 4 bytes of offset
//! (strings) and 5.3 to 8 bytes of slot (load 1/2 to 3/4), plus the stores' growth slack (they
//! grow by a quarter): 9.3 to 16 bytes more than the key for 11-byte strings.
//!
//! [`IdDictionary::get_many`] looks keys up in batches whose cache misses overlap (see
//! [`prefetch`]): a lookup takes three dependent misses (slot, offsets, key bytes), which a
//! batch pays once for all its keys.
//!
//! On disk, keys are appended as *chunks* (see [`chunk`]): each bulk load that introduces new keys
//! writes one chunk holding the contiguous id range it assigned.

pub(crate) mod chunk;
mod index;
pub(crate) mod prefetch;
mod store;
mod words;

use std::fmt;

use crate::error::{Error, Result};
use index::Index;
use store::{Arena, KeyStore, SCAN, push_gently, reserve_gently};
pub(crate) use words::KeyWords;

/// The type of a table's external keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyKind {
    /// UTF-8 strings (device ids, account names, ...).
    Str,
    /// Unsigned 64-bit integers.
    U64,
}

impl KeyKind {
    pub(crate) fn to_u8(self) -> u8 {
        match self {
            KeyKind::Str => 1,
            KeyKind::U64 => 2,
        }
    }
    pub(crate) fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(KeyKind::Str),
            2 => Some(KeyKind::U64),
            _ => None,
        }
    }
    /// The lower-case name used in messages and by the server.
    pub fn name(self) -> &'static str {
        match self {
            KeyKind::Str => "string",
            KeyKind::U64 => "u64",
        }
    }
}

/// An owned external key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Key {
    /// A string key.
    Str(String),
    /// An integer key.
    U64(u64),
}

/// A borrowed external key, for lookups without allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyRef<'a> {
    /// A string key.
    Str(&'a str),
    /// An integer key.
    U64(u64),
}

impl Key {
    /// Borrows this key.
    pub fn as_ref(&self) -> KeyRef<'_> {
        match self {
            Key::Str(s) => KeyRef::Str(s),
            Key::U64(v) => KeyRef::U64(*v),
        }
    }
}

impl KeyRef<'_> {
    /// Copies this key.
    pub fn to_owned(self) -> Key {
        match self {
            KeyRef::Str(s) => Key::Str(s.to_owned()),
            KeyRef::U64(v) => Key::U64(v),
        }
    }
    fn kind(self) -> KeyKind {
        match self {
            KeyRef::Str(_) => KeyKind::Str,
            KeyRef::U64(_) => KeyKind::U64,
        }
    }
}

impl<'a> From<&'a str> for KeyRef<'a> {
    fn from(s: &'a str) -> Self {
        KeyRef::Str(s)
    }
}
impl From<u64> for KeyRef<'_> {
    fn from(v: u64) -> Self {
        KeyRef::U64(v)
    }
}
impl<'a> From<&'a Key> for KeyRef<'a> {
    fn from(k: &'a Key) -> Self {
        k.as_ref()
    }
}
impl From<&str> for Key {
    fn from(s: &str) -> Self {
        Key::Str(s.to_owned())
    }
}
impl From<String> for Key {
    fn from(s: String) -> Self {
        Key::Str(s)
    }
}
impl From<u64> for Key {
    fn from(v: u64) -> Self {
        Key::U64(v)
    }
}

impl fmt::Display for KeyRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyRef::Str(s) => f.write_str(s),
            KeyRef::U64(v) => write!(f, "{v}"),
        }
    }
}
impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.as_ref().fmt(f)
    }
}

#[derive(Clone)]
enum Store {
    U64(Vec<u64>),
    Str(Arena),
}

/// Keys looked up together by [`IdDictionary::get_many`]: each stage of a batch issues the
/// prefetches of all its keys before the next stage reads them, so their misses overlap.
const BATCH: usize = 16;

/// Keys of ids `first..first + len`, with a hash index from key to id.
#[derive(Clone)]
pub(crate) struct IdDictionary {
    first: u32,
    store: Store,
    index: Index,
    /// `u64` keys: no key held is larger (`None`: none is held). A key above it is absent
    /// without a probe, which makes the common increasing user numbers cheap to look up and
    /// to append.
    bound: Option<u64>,
    /// Whether `u64` keys above every key held may be appended without indexing them
    /// ([`IdDictionary::deferring_index`]).
    defer: bool,
    /// The number of last keys not in the index (only when deferring): `u64` keys, strictly
    /// increasing and above every indexed key, so a lookup finds them by binary search.
    tail: usize,
}

impl fmt::Debug for IdDictionary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdDictionary")
            .field("first", &self.first)
            .field("len", &self.len())
            .finish()
    }
}

impl IdDictionary {
    /// An empty dictionary whose first key will get id `first`.
    pub(crate) fn new(kind: KeyKind, first: u32) -> Self {
        let store = match kind {
            KeyKind::Str => Store::Str(Arena::default()),
            KeyKind::U64 => Store::U64(Vec::new()),
        };
        Self {
            first,
            store,
            index: Index::default(),
            bound: None,
            defer: false,
            tail: 0,
        }
    }

    /// This dictionary, indexing `u64` keys that arrive in increasing order only when a
    /// lookup or an append out of order needs it: a load of new users numbered in order then
    /// never hashes them (the table's dictionary indexes them when the load commits).
    pub(crate) fn deferring_index(mut self) -> Self {
        self.defer = true;
        self
    }

    /// Where `k` would be among the unindexed last keys: `Some(id or None)` if it is not
    /// below the first of them (so not in the index either), `None` to look in the index.
    #[inline]
    fn in_tail(&self, k: u64) -> Option<Option<u32>> {
        let Store::U64(v) = &self.store else {
            return None;
        };
        let tail = &v[v.len() - self.tail..];
        if tail.first().is_none_or(|&f| k < f) {
            return None;
        }
        let at = v.len() - self.tail;
        Some(
            tail.binary_search(&k)
                .ok()
                .map(|i| self.first + (at + i) as u32),
        )
    }

    /// Indexes the unindexed last keys.
    fn settle(&mut self) {
        if self.tail == 0 {
            return;
        }
        if let Store::U64(v) = &self.store {
            let range = v.len() - self.tail..v.len();
            index_range(&mut self.index, v, range);
        }
        self.tail = 0;
    }

    /// Whether every key of `keys` is above every key held (so none is held): `u64` keys above
    /// the largest, strings above the last while the strings came in increasing order.
    pub(crate) fn all_beyond(&self, keys: &[KeyRef<'_>]) -> bool {
        match &self.store {
            Store::Str(a) => keys
                .iter()
                .all(|&k| matches!(k, KeyRef::Str(s) if a.above_all(s))),
            Store::U64(_) => keys.iter().all(|&k| self.beyond(k)),
        }
    }

    /// Appends `keys` if they are strictly increasing keys above every key held: `u64` keys
    /// when this dictionary defers indexing ([`IdDictionary::deferring_index`]), strings
    /// (indexed at once, without a search: they are new). `Ok(false)`, with nothing appended,
    /// otherwise.
    pub(crate) fn append_increasing(&mut self, keys: &[KeyRef<'_>]) -> Result<bool> {
        if u64::from(self.end()) + keys.len() as u64 > u64::from(u32::MAX) {
            return Err(Error::LimitExceeded(
                "a table holds at most 4,294,967,295 users".into(),
            ));
        }
        if self.append_deferred(keys) {
            return Ok(true);
        }
        let Store::Str(a) = &mut self.store else {
            return Ok(false);
        };
        let increasing = keys.windows(2).all(|w| match w {
            [KeyRef::Str(x), KeyRef::Str(y)] => x < y,
            _ => false,
        });
        match keys.first() {
            Some(KeyRef::Str(first)) if increasing && a.above_all(first) => {}
            _ => return Ok(false),
        }
        let at = a.len();
        for k in keys {
            if let KeyRef::Str(s) = k {
                a.push(s);
            }
        }
        index_range(&mut self.index, a, at..a.len());
        Ok(true)
    }

    /// Appends `keys` without indexing them if deferring and they are strictly increasing
    /// `u64` keys above every key held; `false` (nothing done) otherwise.
    fn append_deferred(&mut self, keys: &[KeyRef<'_>]) -> bool {
        if !self.defer {
            return false;
        }
        let mut above = self.bound;
        for k in keys {
            match *k {
                KeyRef::U64(k) if above.is_none_or(|b| k > b) => above = Some(k),
                _ => return false,
            }
        }
        let Store::U64(v) = &mut self.store else {
            return false;
        };
        reserve_gently(v, keys.len());
        v.extend(keys.iter().filter_map(|k| <Vec<u64>>::probe(*k)));
        self.tail += keys.len();
        self.bound = above;
        true
    }

    /// Whether `key` is a `u64` key above every key held (and so certainly absent).
    #[inline]
    fn beyond(&self, key: KeyRef<'_>) -> bool {
        matches!(key, KeyRef::U64(k) if self.bound.is_none_or(|b| k > b))
    }

    fn raise_bound(&mut self, k: u64) {
        self.bound = Some(self.bound.map_or(k, |b| b.max(k)));
    }

    pub(crate) fn kind(&self) -> KeyKind {
        match self.store {
            Store::U64(_) => KeyKind::U64,
            Store::Str(_) => KeyKind::Str,
        }
    }

    /// Number of keys held.
    pub(crate) fn len(&self) -> u32 {
        match &self.store {
            Store::U64(v) => v.len() as u32,
            Store::Str(a) => a.len() as u32,
        }
    }

    /// The id one past the last assigned.
    pub(crate) fn end(&self) -> u32 {
        self.first + self.len()
    }

    pub(crate) fn first(&self) -> u32 {
        self.first
    }

    /// The key of `id`, if this dictionary holds it.
    pub(crate) fn key(&self, id: u32) -> Option<KeyRef<'_>> {
        let i = id.checked_sub(self.first)? as usize;
        match &self.store {
            Store::U64(v) => v.get(i).map(|&k| KeyRef::U64(k)),
            Store::Str(a) => a.get(i).map(KeyRef::Str),
        }
    }

    /// Calls `f` with the key of each id of `ids` (ids without a key are skipped), with the
    /// cache misses of a batch overlapped: the offsets of the key 32 ahead and the bytes of the
    /// key 16 ahead are prefetched, so an export of scattered ids costs about one memory round
    /// trip per 16 keys instead of two per key. Prefetching the text reads the offsets, which
    /// must have arrived by then: 16 keys (a few hundred nanoseconds) leave them time to.
    pub(crate) fn for_each_key_of(&self, ids: &[u32], mut f: impl FnMut(u32, KeyRef<'_>)) {
        const OFFSETS_AHEAD: usize = 32;
        const TEXT_AHEAD: usize = 16;
        let index = |id: u32| id.checked_sub(self.first).map(|i| i as usize);
        for (j, &id) in ids.iter().enumerate() {
            match &self.store {
                Store::U64(v) => {
                    if let Some(i) = ids.get(j + OFFSETS_AHEAD).and_then(|&a| index(a)) {
                        prefetch::prefetch(v, i);
                    }
                }
                Store::Str(a) => {
                    if let Some(i) = ids.get(j + OFFSETS_AHEAD).and_then(|&a| index(a)) {
                        a.prefetch_offsets(i);
                    }
                    if let Some(i) = ids.get(j + TEXT_AHEAD).and_then(|&a| index(a)) {
                        a.prefetch_text(i);
                    }
                }
            }
            if let Some(k) = self.key(id) {
                f(id, k);
            }
        }
    }

    /// The id of `key`, if present.
    #[inline]
    pub(crate) fn get(&self, key: KeyRef<'_>) -> Option<u32> {
        if self.beyond(key) && self.kind() == KeyKind::U64 {
            return None;
        }
        if let KeyRef::U64(k) = key
            && let Some(found) = self.in_tail(k)
        {
            return found;
        }
        match &self.store {
            Store::U64(v) => self.get_in(v, key),
            Store::Str(a) => self.get_in(a, key),
        }
    }

    #[inline]
    fn get_in<S: KeyStore>(&self, store: &S, key: KeyRef<'_>) -> Option<u32> {
        let probe = S::probe(key)?;
        let i = self
            .index
            .find(S::hash(probe), |i| store.matches(i, probe))?;
        Some(self.first + i)
    }

    /// Looks up many keys at once; `out[i]` is the id of `keys[i]`.
    ///
    /// Keys go through in batches of [`BATCH`], as a pipeline of four stages over the batch:
    /// hash every key and prefetch its home slot; find each first tag match and prefetch its
    /// store entry; prefetch the key bytes (strings); compare, probing on for the rare key
    /// whose candidate was another key.
    pub(crate) fn get_many<'k>(
        &self,
        keys: impl IntoIterator<Item = KeyRef<'k>>,
        out: &mut Vec<Option<u32>>,
    ) {
        self.get_many_with(keys, out, None);
    }

    /// [`IdDictionary::get_many`], keys that come in id order followed through `words` (this
    /// dictionary's, from [`IdDictionary::key_words`]) instead of through the key bytes.
    pub(crate) fn get_many_with<'k>(
        &self,
        keys: impl IntoIterator<Item = KeyRef<'k>>,
        out: &mut Vec<Option<u32>>,
        words: Option<&KeyWords>,
    ) {
        out.clear();
        match &self.store {
            Store::U64(v) => self.get_many_in(v, keys.into_iter(), out, None),
            Store::Str(a) => self.get_many_in(a, keys.into_iter(), out, words),
        }
    }

    /// The keys as numbers ([`KeyWords`]), when they are strings that allow it: worth building
    /// (one pass over the keys, 8 bytes per key) before looking up many keys in id order.
    pub(crate) fn key_words(&self) -> Option<KeyWords> {
        match &self.store {
            Store::Str(a) => KeyWords::build(a),
            Store::U64(_) => None,
        }
    }

    fn get_many_in<'k, S: KeyStore>(
        &self,
        store: &S,
        mut keys: impl Iterator<Item = KeyRef<'k>>,
        out: &mut Vec<Option<u32>>,
        words: Option<&KeyWords>,
    ) {
        let span = match words {
            Some(_) => 2 * words::WORD_GAP,
            None => FOLLOW_SPAN,
        };
        let mut step = words::Step::By8;
        out.reserve(keys.size_hint().0);
        let mut batch = [KeyRef::U64(0); BATCH];
        // The position of the last key found, where the next one is looked for first, when the
        // last batch's keys came in id order and close together.
        let mut last: Option<u32> = None;
        let mut follow_next = false;
        loop {
            let mut n = 0;
            while n < BATCH {
                let Some(key) = keys.next() else { break };
                batch[n] = key;
                n += 1;
            }
            let done = out.len();
            if follow_next {
                self.follow_batch(store, &batch[..n], last, out, words.map(|w| (w, step)));
            } else {
                self.lookup_batch(store, &batch[..n], out, words);
            }
            let found = &out[done..];
            last = found.last().copied().flatten().map(|id| id - self.first);
            follow_next = close_in_order(found, span);
            if let (true, [Some(a), .., Some(b)]) = (follow_next, found) {
                step = words::Step::for_gap((b - a) / (found.len() as u32 - 1));
            }
            if n < BATCH {
                return;
            }
        }
    }

    /// Appends the ids of `keys` (at most [`BATCH`]) to `out`, each looked for first a short way
    /// after the position of the key before it (`last` for the first): keys that come in the
    /// order of their ids (a file sorted by user, as bulk loads usually are, into a table whose
    /// keys were first loaded in that order) are then found by a few comparisons with keys in
    /// cache, not by hashing. From the first key not found that way, the rest of the batch goes
    /// through the pipelined index lookup ([`IdDictionary::lookup_batch`]). So following only
    /// ever saves work: a match it finds is an exact key match (keys are unique), and the index
    /// decides every other key.
    fn follow_batch<S: KeyStore>(
        &self,
        store: &S,
        keys: &[KeyRef<'_>],
        last: Option<u32>,
        out: &mut Vec<Option<u32>>,
        words: Option<(&KeyWords, words::Step)>,
    ) {
        let mut at = last;
        for (j, &key) in keys.iter().enumerate() {
            let found = at.and_then(|from| match (words, key) {
                (Some((words, step)), KeyRef::Str(s)) => words.follow(from, s.as_bytes(), step),
                _ => S::probe(key).and_then(|p| follow(store, from, p)),
            });
            match found {
                Some(i) => {
                    out.push(Some(self.first + i));
                    at = Some(i);
                }
                None => return self.lookup_batch(store, &keys[j..], out, words.map(|w| w.0)),
            }
        }
    }

    /// Appends the ids of `keys` (at most [`BATCH`]) to `out`. A candidate `words` covers is
    /// compared by its number (one cache miss) instead of its offsets and bytes (two).
    #[inline]
    fn lookup_batch<S: KeyStore>(
        &self,
        store: &S,
        keys: &[KeyRef<'_>],
        out: &mut Vec<Option<u32>>,
        words: Option<&KeyWords>,
    ) {
        let index = &self.index;
        // Per key: its probe while it may still be present, its hash, and the slot and
        // position of its current candidate.
        let mut probes = [None; BATCH];
        let mut hashes = [0u64; BATCH];
        let mut at = [(0usize, 0u32); BATCH];
        let n = keys.len().min(BATCH);
        // Keys decided without the index: above every key, or among the unindexed ones.
        let mut decided = [None; BATCH];
        for j in 0..n {
            if let (KeyRef::U64(k), true) = (keys[j], self.tail > 0)
                && !self.beyond(keys[j])
            {
                decided[j] = self.in_tail(k);
            }
            if let Some(p) = S::probe(keys[j])
                && !self.beyond(keys[j])
                && decided[j].is_none()
            {
                let h = S::hash(p);
                probes[j] = Some(p);
                hashes[j] = h;
                at[j].0 = index.home(h);
                index.prefetch_slot(at[j].0);
            }
        }
        // The keys' numbers, where `words` holds numbers (`None` in `numbers[j]`: key `j`
        // cannot be among the keys `words` covers).
        let mut numbers = [None; BATCH];
        if let Some(words) = words {
            for j in 0..n {
                if let KeyRef::Str(k) = keys[j] {
                    numbers[j] = words.number(k.as_bytes());
                }
            }
        }
        let numbered = |i: u32| words.is_some_and(|w| w.covers(i));
        for j in 0..n {
            if probes[j].is_some() {
                match index.candidate(hashes[j], at[j].0) {
                    Some(c) => {
                        at[j] = c;
                        match words {
                            Some(w) if numbered(c.1) => w.prefetch(c.1),
                            _ => store.prefetch_entry(c.1),
                        }
                    }
                    None => probes[j] = None,
                }
            }
        }
        for j in 0..n {
            if probes[j].is_some() && !numbered(at[j].1) {
                store.prefetch_key(at[j].1);
            }
        }
        for j in 0..n {
            let found = probes[j].and_then(|p| {
                let is_key = |i: u32| match words {
                    Some(w) if w.covers(i) => numbers[j].is_some_and(|x| w.number_at(i) == x),
                    _ => store.matches(i, p),
                };
                let (pos, i) = at[j];
                if is_key(i) {
                    Some(i)
                } else {
                    index.find_after(hashes[j], pos, is_key)
                }
            });
            out.push(decided[j].unwrap_or(found.map(|i| self.first + i)));
        }
    }

    /// Appends `key` (which must be absent and of the dictionary's kind) and returns its id.
    pub(crate) fn push(&mut self, key: KeyRef<'_>) -> Result<u32> {
        let id = self.end();
        if id == u32::MAX && key.kind() == self.kind() {
            return Err(Error::LimitExceeded(
                "a table holds at most 4,294,967,295 users".into(),
            ));
        }
        if self.append_deferred(&[key]) {
            return Ok(id);
        }
        self.settle();
        let at = self.len() as usize;
        match (&mut self.store, key) {
            (Store::U64(v), KeyRef::U64(k)) => {
                push_gently(v, k);
                index_range(&mut self.index, v, at..at + 1);
                self.raise_bound(k);
            }
            (Store::Str(a), KeyRef::Str(s)) => {
                a.push(s);
                index_range(&mut self.index, a, at..at + 1);
            }
            _ => return Err(self.kind_mismatch(key)),
        }
        Ok(id)
    }

    fn kind_mismatch(&self, key: KeyRef<'_>) -> Error {
        Error::InvalidArgument(format!(
            "key `{key}` is a {} but the table's keys are {}",
            key.kind().name(),
            self.kind().name()
        ))
    }

    /// Appends `keys`, all of which must be new, in order. If one is already present, or
    /// repeats an earlier one, appends nothing and returns `Ok(Err(j))` for the first such
    /// `keys[j]`. Much faster than `get` then `push` per key: the lookups of a batch of keys
    /// overlap their cache misses.
    pub(crate) fn extend_new(
        &mut self,
        keys: &[KeyRef<'_>],
    ) -> Result<std::result::Result<(), usize>> {
        if let Some(k) = keys.iter().find(|k| k.kind() != self.kind()) {
            return Err(self.kind_mismatch(*k));
        }
        if u64::from(self.end()) + keys.len() as u64 > u64::from(u32::MAX) {
            return Err(Error::LimitExceeded(
                "a table holds at most 4,294,967,295 users".into(),
            ));
        }
        if self.append_deferred(keys) {
            return Ok(Ok(()));
        }
        self.settle();
        let at = self.len() as usize;
        let new = at..at + keys.len();
        let index = &mut self.index;
        let found = match &mut self.store {
            Store::U64(v) => {
                reserve_gently(v, keys.len());
                v.extend(keys.iter().filter_map(|k| <Vec<u64>>::probe(*k)));
                index.reserve(new.end, at, |i| v.hash_at(i));
                // A key above every key before it (held, or earlier in `keys`) needs no
                // search: it is new.
                let mut above = self.bound;
                let r = index.insert_range_new(
                    new,
                    |i| v.hash_at(i),
                    |i, j| v.get(i as usize) == v.get(j),
                    |j| {
                        let k = v[j];
                        let new = above.is_none_or(|b| k > b);
                        above = Some(above.map_or(k, |b| b.max(k)));
                        new
                    },
                );
                if r.is_err() {
                    v.truncate(at);
                    index.reindex(at, |i| v.hash_at(i));
                } else if let Some(max) = v[at..].iter().max() {
                    self.bound = Some(self.bound.map_or(*max, |b| b.max(*max)));
                }
                r
            }
            Store::Str(a) => {
                for k in keys {
                    if let KeyRef::Str(s) = k {
                        a.push(s);
                    }
                }
                index.reserve(new.end, at, |i| a.hash_at(i));
                let r = index.insert_range_new(
                    new,
                    |i| a.hash_at(i),
                    |i, j| a.bytes(i as usize) == a.bytes(j),
                    |_| false,
                );
                if r.is_err() {
                    a.truncate(at);
                    index.reindex(at, |i| a.hash_at(i));
                }
                r
            }
        };
        Ok(found.map_err(|j| j - at))
    }

    /// Returns the id of `key`, assigning the next one if it is new.
    pub(crate) fn get_or_push(&mut self, key: KeyRef<'_>) -> Result<u32> {
        match self.get(key) {
            Some(id) => Ok(id),
            None => self.push(key),
        }
    }

    /// Makes room for `keys` more keys of `bytes` bytes in all (strings), so that a bulk load
    /// of that many new users grows the store and its index once, not step by step (each step
    /// copies the store and hashes every key again). The index grows only when nothing is left
    /// unindexed.
    #[cfg(any(feature = "import", test))]
    pub(crate) fn reserve(&mut self, keys: usize, bytes: usize) {
        let len = self.len() as usize;
        let index = (self.tail == 0).then_some(&mut self.index);
        match &mut self.store {
            Store::U64(v) => {
                let _ = v.try_reserve_exact(keys);
                if let Some(index) = index {
                    index.reserve(len + keys, len, |i| v.hash_at(i));
                }
            }
            Store::Str(a) => {
                a.reserve(keys, bytes);
                if let Some(index) = index {
                    index.reserve(len + keys, len, |i| a.hash_at(i));
                }
            }
        }
    }

    /// [`IdDictionary::append`], taking `other`'s store and index when this dictionary holds
    /// no key yet: the first load of a table then moves its users' keys in instead of copying
    /// and hashing every one of them again.
    pub(crate) fn append_owned(&mut self, mut other: IdDictionary) -> Result<()> {
        if self.len() == 0 && other.first == self.first && other.kind() == self.kind() {
            other.settle();
            other.defer = self.defer;
            *self = other;
            return Ok(());
        }
        self.append(&other)
    }

    /// Appends every key of `other`, whose ids must start where this dictionary ends.
    pub(crate) fn append(&mut self, other: &IdDictionary) -> Result<()> {
        if other.first != self.end() {
            return Err(Error::Internal(format!(
                "dictionary append at {} onto end {}",
                other.first,
                self.end()
            )));
        }
        self.settle();
        let at = self.len() as usize;
        let added = other.len() as usize;
        match (&mut self.store, &other.store) {
            (_, _) if added == 0 => {}
            (Store::U64(v), Store::U64(w)) => {
                reserve_gently(v, added);
                v.extend_from_slice(w);
                index_range(&mut self.index, v, at..at + added);
                if let Some(b) = other.bound {
                    self.raise_bound(b);
                }
            }
            (Store::Str(a), Store::Str(b)) => {
                a.reserve(added, b.text_len());
                for i in 0..added {
                    if let Some(key) = b.get(i) {
                        a.push(key);
                    }
                }
                index_range(&mut self.index, a, at..at + added);
            }
            _ => {
                let key = other.key(other.first).unwrap_or(KeyRef::U64(0));
                return Err(self.kind_mismatch(key));
            }
        }
        Ok(())
    }

    /// The spare capacity of the key store (see [`crate::prefault::spare`]).
    #[cfg(feature = "import")]
    pub(crate) fn spare(&self) -> Vec<(usize, usize)> {
        match &self.store {
            Store::U64(v) => vec![crate::prefault::spare(v)],
            Store::Str(a) => a.spare(),
        }
    }

    /// Bytes of the keys held (8 per integer key).
    pub(crate) fn key_bytes(&self) -> usize {
        match &self.store {
            Store::U64(v) => v.len() * std::mem::size_of::<u64>(),
            Store::Str(a) => a.text_len(),
        }
    }

    /// Approximate heap bytes used.
    pub(crate) fn heap_bytes(&self) -> usize {
        let store = match &self.store {
            Store::U64(v) => v.capacity() * std::mem::size_of::<u64>(),
            Store::Str(a) => a.heap_bytes(),
        };
        store + self.index.heap_bytes()
    }
}

/// Indexes the keys at `range`, the last positions of `store`, growing the index if needed.
fn index_range<S: KeyStore>(index: &mut Index, store: &S, range: std::ops::Range<usize>) {
    index.reserve(range.end, range.start, |i| store.hash_at(i));
    index.insert_range(range, |i| store.hash_at(i));
}

/// Whether `ids` (one batch's) were all found, in increasing order, on average at most
/// `follow_span / 2` apart ([`FOLLOW_SPAN`], or twice [`words::WORD_GAP`] with key words):
/// then the next batch probably follows them ([`IdDictionary::follow_batch`]). Random keys,
/// and keys in order but far apart (where following would mostly fail), go to the index
/// directly.
fn close_in_order(ids: &[Option<u32>], follow_span: u32) -> bool {
    let (Some(Some(first)), Some(Some(last))) = (ids.first(), ids.last()) else {
        return false;
    };
    let span = u64::from(follow_span / 2) * ids.len() as u64;
    last.checked_sub(*first)
        .is_some_and(|d| u64::from(d) <= span)
        && ids
            .windows(2)
            .all(|w| matches!(w, [Some(a), Some(b)] if a < b))
}

/// Positions after `from` a key is followed over ([`IdDictionary::follow_batch`]) before the
/// index decides instead: 6 doublings and a binary search, at most ~12 comparisons.
const FOLLOW_SPAN: u32 = 64;

/// Times [`follow`] compares the next [`SCAN`] keys at once before it searches.
const SCAN_CHUNKS: u32 = 8;

/// The position of `probe` if it is within [`FOLLOW_SPAN`] positions after `from` in a stretch
/// of the store whose keys increase: gallops forward by doubling steps to the first key not
/// below it, then binary-searches the last step. Only an exact match is returned, so a store
/// that is not in order there costs a wasted search, never a wrong answer.
///
/// The keys right after `from` are first compared [`SCAN`] at a time, up to [`SCAN_CHUNKS`]
/// times ([`KeyStore::count_below`]): a key among them (the usual case in a dense run) is
/// found without the mispredicted branches of a search.
#[inline]
fn follow<S: KeyStore>(store: &S, from: u32, probe: S::Probe<'_>) -> Option<u32> {
    use std::cmp::Ordering::{Equal, Greater, Less};
    let mut next = from.checked_add(1)?;
    for _ in 0..SCAN_CHUNKS {
        match store.count_below(next, probe) {
            Some(below) if below < SCAN => {
                let p = next + below;
                return store.matches(p, probe).then_some(p);
            }
            // Every one of them is below: on to the next ones.
            Some(_) => next += SCAN,
            // Not comparable at once here (keys of other lengths, near the end).
            None => break,
        }
    }
    let from = next - 1;
    let mut lo = from.checked_add(1)?;
    let mut step = 1u32;
    let hi = loop {
        let p = from.checked_add(step)?;
        match store.cmp_at(p, probe) {
            Some(Equal) => return Some(p),
            Some(Less) if step < FOLLOW_SPAN => {
                lo = p + 1;
                step *= 2;
            }
            Some(Less) => return None,
            // Past the end: the end bounds the search.
            Some(Greater) | None => break p,
        }
    };
    let mut hi = hi;
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        match store.cmp_at(mid, probe) {
            Some(Equal) => return Some(mid),
            Some(Less) => lo = mid + 1,
            // Past the end counts as above every key.
            Some(Greater) | None => hi = mid,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    #[test]
    fn ids_are_dense_in_arrival_order() {
        let mut d = IdDictionary::new(KeyKind::Str, 0);
        assert_eq!(d.get_or_push("b".into()).unwrap(), 0);
        assert_eq!(d.get_or_push("a".into()).unwrap(), 1);
        assert_eq!(d.get_or_push("b".into()).unwrap(), 0);
        assert_eq!(d.key(1), Some(KeyRef::Str("a")));
        assert_eq!(d.key(2), None);
        assert!(
            d.push(KeyRef::U64(3)).is_err(),
            "kind mismatch must be refused"
        );
    }

    #[test]
    fn appended_dictionaries_continue_the_id_range() {
        let mut a = IdDictionary::new(KeyKind::U64, 0);
        a.push(KeyRef::U64(10)).unwrap();
        let mut b = IdDictionary::new(KeyKind::U64, a.end());
        b.push(KeyRef::U64(20)).unwrap();
        a.append(&b).unwrap();
        assert_eq!(a.get(KeyRef::U64(20)), Some(1));
        assert!(a.append(&b).is_err(), "ranges must be contiguous");
    }

    #[test]
    fn memory_per_key_is_the_key_plus_at_most_16_bytes() {
        let n = 200_000u32;
        let mut d = IdDictionary::new(KeyKind::Str, 0);
        for i in 0..n {
            d.push(KeyRef::Str(&format!("u{i:010}"))).unwrap();
        }
        let per_key = d.heap_bytes() as f64 / f64::from(n);
        assert!(per_key <= 11.0 + 16.0, "{per_key} bytes per key");
        let mut u = IdDictionary::new(KeyKind::U64, 0);
        for i in 0..u64::from(n) {
            u.push(KeyRef::U64(i * 7)).unwrap();
        }
        let per_key = u.heap_bytes() as f64 / f64::from(n);
        assert!(per_key <= 8.0 + 12.0, "{per_key} bytes per key");
    }

    #[test]
    fn lookups_of_the_other_kind_or_in_empty_dictionaries_miss() {
        let empty = IdDictionary::new(KeyKind::Str, 7);
        let mut out = vec![Some(1)];
        empty.get_many([KeyRef::Str(""), KeyRef::U64(0)], &mut out);
        assert_eq!(out, [None, None]);
        assert_eq!(empty.get(KeyRef::Str("")), None);
        let mut d = IdDictionary::new(KeyKind::U64, 0);
        d.push(KeyRef::U64(0)).unwrap();
        d.get_many([KeyRef::U64(0), KeyRef::Str("0")], &mut out);
        assert_eq!(out, [Some(0), None]);
        let mut s = IdDictionary::new(KeyKind::Str, 1);
        s.push(KeyRef::Str("x")).unwrap();
        assert!(d.append(&s).is_err(), "kinds must agree");
        let mut t = IdDictionary::new(KeyKind::Str, 1);
        t.append(&IdDictionary::new(KeyKind::U64, 1)).unwrap();
        assert_eq!(t.len(), 0);
    }

    /// Two keys whose hashes share home slot and tag in a fresh dictionary: the second one's
    /// lookups meet the first as a candidate and must compare keys and probe on.
    #[test]
    fn a_candidate_with_the_same_tag_is_compared_and_passed() {
        for kind in [KeyKind::Str, KeyKind::U64] {
            let key = |n: u64| match kind {
                KeyKind::Str => Key::Str(format!("k{n}")),
                KeyKind::U64 => Key::U64(n),
            };
            let hash = |k: &Key| match k {
                Key::Str(s) => store::hash_bytes(s.as_bytes()),
                Key::U64(v) => store::hash_u64(*v),
            };
            let mut d = IdDictionary::new(kind, 10);
            d.push(key(u64::MAX).as_ref()).unwrap();
            let mut seen: HashMap<(u32, u64), Key> = HashMap::new();
            let (a, b) = (0..1_000_000u64)
                .find_map(|n| {
                    let k = key(n);
                    let h = hash(&k);
                    // Bucket by the bits that decide home and tag at 16 slots, then confirm.
                    let bucket = ((h >> 60) as u32, h & 0xffff_ffe0);
                    match seen.insert(bucket, k.clone()) {
                        Some(prev) if d.index.collide(hash(&prev), h) => Some((prev, k)),
                        _ => None,
                    }
                })
                .expect("a colliding pair among a million keys");
            d.push(a.as_ref()).unwrap();
            d.push(b.as_ref()).unwrap();
            let model = HashMap::from([(key(u64::MAX), 10), (a.clone(), 11), (b.clone(), 12)]);
            check_lookups(&d, &model, &[b.clone(), a.clone(), b, key(u64::MAX - 1), a]).unwrap();
        }
    }

    /// Looks every query up with `get` and with `get_many`, against the model.
    fn check_lookups(
        d: &IdDictionary,
        model: &HashMap<Key, u32>,
        queries: &[Key],
    ) -> std::result::Result<(), TestCaseError> {
        let mut out = vec![Some(u32::MAX); 3];
        d.get_many(queries.iter().map(Key::as_ref), &mut out);
        prop_assert_eq!(out.len(), queries.len());
        for (q, got) in queries.iter().zip(&out) {
            let want = model.get(q).copied();
            prop_assert_eq!(*got, want, "get_many({})", q);
            prop_assert_eq!(d.get(q.as_ref()), want, "get({})", q);
        }
        if let Some(words) = d.key_words() {
            d.get_many_with(queries.iter().map(Key::as_ref), &mut out, Some(&words));
            prop_assert_eq!(out.len(), queries.len());
            for (q, got) in queries.iter().zip(&out) {
                prop_assert_eq!(*got, model.get(q).copied(), "get_many_with({})", q);
            }
        }
        Ok(())
    }

    fn str_key() -> impl Strategy<Value = Key> {
        "[a-e]{0,5}".prop_map(Key::Str)
    }

    fn any_key() -> impl Strategy<Value = Key> {
        prop_oneof![
            4 => str_key(),
            1 => (0u64..2000).prop_map(Key::U64),
            1 => any::<u64>().prop_map(Key::U64),
        ]
    }

    proptest! {
        #![proptest_config(crate::testutil::proptest_config(48))]
        /// The keys of any list of ids (sorted or not, repeated, below the first id, past the
        /// end, shorter or longer than the prefetch distances) are those `key` gives, in order.
        #[test]
        fn keys_of_many_ids_match_key_by_key(
            kind in prop_oneof![Just(KeyKind::Str), Just(KeyKind::U64)],
            first in prop_oneof![Just(0u32), 1u32..50],
            n in 0u32..600,
            ids in proptest::collection::vec(0u32..700, 0..300),
            sort in any::<bool>(),
        ) {
            let mut d = IdDictionary::new(kind, first);
            for i in 0..n {
                let key = match kind {
                    KeyKind::Str => Key::Str(format!("k{}", "x".repeat((i % 40) as usize) + &i.to_string())),
                    KeyKind::U64 => Key::U64(u64::from(i) * 7919),
                };
                d.push(key.as_ref()).unwrap();
            }
            let mut ids = ids;
            if sort {
                ids.sort_unstable();
            }
            let expected: Vec<(u32, Key)> = ids
                .iter()
                .filter_map(|&id| d.key(id).map(|k| (id, k.to_owned())))
                .collect();
            let mut got = Vec::new();
            d.for_each_key_of(&ids, |id, k| got.push((id, k.to_owned())));
            prop_assert_eq!(got, expected);
        }
    }

    proptest! {
        #![proptest_config(crate::testutil::proptest_config(48))]
        /// Grows through many rehashes (from 16 slots to thousands) and checks single and batched
        /// lookups (hits, misses, duplicates, the other kind, any batch length) after each load,
        /// and the reverse map at the end.
        #[test]
        fn batched_lookups_match_a_hashmap_model(
            kind in prop_oneof![Just(KeyKind::Str), Just(KeyKind::U64)],
            first in prop_oneof![Just(0u32), 1u32..100],
            loads in proptest::collection::vec(
                (proptest::collection::vec(any_key(), 0..800), proptest::collection::vec(any_key(), 0..70)),
                1..6,
            ),
        ) {
            let mut d = IdDictionary::new(kind, first);
            let mut model: HashMap<Key, u32> = HashMap::new();
            let mut by_id = Vec::new();
            for (keys, queries) in &loads {
                for k in keys {
                    let k = match (kind, k) {
                        (KeyKind::U64, Key::Str(s)) => Key::U64(s.len() as u64 * 1000 + s.bytes().map(u64::from).sum::<u64>()),
                        (KeyKind::Str, Key::U64(v)) => Key::Str(v.to_string()),
                        _ => k.clone(),
                    };
                    let next = first + model.len() as u32;
                    let id = *model.entry(k.clone()).or_insert_with(|| {
                        by_id.push(k.clone());
                        next
                    });
                    prop_assert_eq!(d.get_or_push(k.as_ref()).unwrap(), id);
                }
                let mut queries = queries.clone();
                // Present keys, some twice, among the random ones.
                queries.extend(by_id.iter().rev().take(40).cloned());
                queries.extend(by_id.iter().step_by(7).take(20).cloned());
                check_lookups(&d, &model, &queries)?;
            }
            prop_assert_eq!(d.len() as usize, model.len());
            prop_assert_eq!(d.end(), first + model.len() as u32);
            for (i, k) in by_id.iter().enumerate() {
                prop_assert_eq!(d.key(first + i as u32), Some(k.as_ref()));
            }
            prop_assert_eq!(d.key(d.end()), None);
            check_lookups(&d, &model, &by_id)?;
        }

        /// A load's own dictionary (indexing deferred or not, room reserved for fewer, as many
        /// or more keys than come, or none) appended by move into a table's dictionary, empty
        /// (which takes its store and index) or not: every key keeps its id, absent keys stay
        /// absent, and keys pushed afterwards (growing the moved store and index) are found too.
        #[test]
        fn reserved_and_moved_dictionaries_match_a_hashmap_model(
            kind in prop_oneof![Just(KeyKind::Str), Just(KeyKind::U64)],
            first in prop_oneof![Just(0u32), 1u32..100],
            table_keys in 0u64..300,
            own_keys in 0u64..900,
            defer in any::<bool>(),
            reserve in proptest::option::of((0usize..2000, 0usize..20_000)),
            after in 0u64..300,
            queries in proptest::collection::vec(0u64..2000, 0..100),
        ) {
            // Increasing numbers (so that a deferring dictionary defers), and their strings.
            let key = |i: u64| match kind {
                KeyKind::Str => Key::Str(format!("user-{i:05}")),
                KeyKind::U64 => Key::U64(i * 3),
            };
            let mut table = IdDictionary::new(kind, first);
            let mut model: HashMap<Key, u32> = HashMap::new();
            let add = |d: &mut IdDictionary, i: u64, model: &mut HashMap<Key, u32>| {
                let k = key(i);
                let id = d.push(k.as_ref()).unwrap();
                model.insert(k, id);
            };
            for i in 0..table_keys {
                add(&mut table, i, &mut model);
            }
            let mut own = IdDictionary::new(kind, table.end());
            if defer {
                own = own.deferring_index();
            }
            if let Some((keys, bytes)) = reserve {
                own.reserve(keys, bytes);
            }
            for i in table_keys..table_keys + own_keys {
                add(&mut own, i, &mut model);
            }
            table.append_owned(own).unwrap();
            prop_assert_eq!(table.end(), first + model.len() as u32);
            for i in 0..after {
                add(&mut table, table_keys + own_keys + i, &mut model);
            }
            let mut all: Vec<Key> = model.keys().cloned().collect();
            all.extend(queries.iter().map(|&q| key(q)));
            check_lookups(&table, &model, &all)?;
            for (k, &id) in &model {
                prop_assert_eq!(table.key(id), Some(k.as_ref()));
            }
        }

        /// In a stretch of increasing keys, `follow` finds every key within [`FOLLOW_SPAN`]
        /// positions after `from` (not just a correct answer, which the index would give too:
        /// the position itself, without the index) and no absent key, whatever the key shape.
        #[test]
        fn follow_finds_keys_ahead_in_an_increasing_stretch(
            kind in prop_oneof![Just(KeyKind::Str), Just(KeyKind::U64)],
            width in prop_oneof![Just(7usize), Just(12), Just(15), Just(17)],
            n in 1u32..200,
            from in 0u32..200,
        ) {
            // Even numbers are the keys; odd ones are absent.
            let key = |v: u32| match kind {
                KeyKind::Str => Key::Str(format!("u{v:0width$}")),
                KeyKind::U64 => Key::U64(u64::from(v)),
            };
            let mut d = IdDictionary::new(kind, 0);
            for v in 0..n {
                d.push(key(v * 2).as_ref()).unwrap();
            }
            let from = from % n;
            let follow_key = |k: Key| match (&d.store, k) {
                (Store::Str(a), Key::Str(s)) => follow(a, from, s.as_bytes()),
                (Store::U64(v), Key::U64(x)) => follow(v, from, x),
                _ => None,
            };
            for gap in 1..FOLLOW_SPAN {
                let want = (from + gap < n).then_some(from + gap);
                prop_assert_eq!(follow_key(key((from + gap) * 2)), want, "gap {}", gap);
                prop_assert_eq!(follow_key(key((from + gap) * 2 + 1)), None, "gap {}", gap);
            }
        }

        /// Keys looked up in the order of their ids (runs with small and large gaps, absent keys
        /// between them, repeats, a few restarts; keys of one length or not), in a dictionary
        /// whose keys were loaded mostly but not entirely in order: the lookups that follow the
        /// previous key ([`IdDictionary::follow_batch`]) give exactly the model's ids, at every
        /// batch alignment.
        #[test]
        fn lookups_in_key_order_match_a_hashmap_model(
            kind in prop_oneof![Just(KeyKind::Str), Just(KeyKind::U64)],
            first in prop_oneof![Just(0u32), 1u32..100],
            n in 0usize..900,
            swaps in proptest::collection::vec((0usize..900, 0usize..900), 0..6),
            steps in proptest::collection::vec(
                (prop_oneof![6 => 0usize..6, 1 => 0usize..150], 0u8..40),
                0..400,
            ),
            width in prop_oneof![Just(7usize), Just(15), Just(17)],
            mixed in any::<bool>(),
        ) {
            // Strings of 8, 16 or 18 bytes (the last too long for comparing 8 keys at once),
            // some of another length when mixed.
            let key = |v: usize| match kind {
                KeyKind::Str if mixed && v.is_multiple_of(7) => Key::Str(format!("u{v:011}")),
                KeyKind::Str => Key::Str(format!("u{v:0width$}")),
                KeyKind::U64 => Key::U64(v as u64),
            };
            // Every third key, so the ones between are absent.
            let mut by_id: Vec<Key> = (0..n).map(|i| key(i * 3)).collect();
            for &(a, b) in &swaps {
                if a < n && b < n {
                    by_id.swap(a, b);
                }
            }
            let mut d = IdDictionary::new(kind, first);
            let mut model = HashMap::new();
            for (i, k) in by_id.iter().enumerate() {
                d.push(k.as_ref()).unwrap();
                model.insert(k.clone(), first + i as u32);
            }
            let mut queries = Vec::new();
            let mut pos = 0;
            for &(gap, what) in &steps {
                pos += gap;
                if pos >= n {
                    pos = gap % (n.max(1));
                }
                match what {
                    0 => queries.push(key(pos * 3 + 1)),
                    1 => queries.push(key(usize::MAX / 8)),
                    _ => {}
                }
                if let Some(k) = by_id.get(pos) {
                    queries.push(k.clone());
                    if what == 2 {
                        queries.push(k.clone());
                    }
                }
            }
            // Key words exist exactly for increasing string keys of one length: then
            // `check_lookups` also follows through them.
            let numbered = kind == KeyKind::Str
                && !mixed
                && n > 0
                && by_id.windows(2).all(|w| w[0] < w[1]);
            prop_assert_eq!(d.key_words().is_some(), numbered);
            check_lookups(&d, &model, &queries)?;
            check_lookups(&d, &model, &by_id)?;
        }

        /// Strings appended as increasing (no lookups) only while they are: above the last key
        /// of a dictionary whose keys came in order, strictly increasing among themselves.
        #[test]
        fn increasing_strings_are_appended_only_while_they_are_new(
            held in proptest::collection::vec(0u32..60, 0..12),
            batches in proptest::collection::vec(proptest::collection::vec(0u32..60, 0..8), 1..6),
            sorted in any::<bool>(),
        ) {
            // Sorted batches (repeats kept) are mostly increasing, and above the last key.
            let mut batches = batches;
            if sorted {
                batches.iter_mut().for_each(|b| b.sort_unstable());
            }
            let key = |v: u32| format!("k{v:02}");
            let mut d = IdDictionary::new(KeyKind::Str, 0);
            let mut model: HashMap<String, u32> = HashMap::new();
            for &v in &held {
                let id = d.get_or_push(KeyRef::Str(&key(v))).unwrap();
                model.entry(key(v)).or_insert(id);
            }
            for batch in &batches {
                let keys: Vec<String> = batch.iter().map(|&v| key(v)).collect();
                let refs: Vec<KeyRef<'_>> = keys.iter().map(|k| KeyRef::Str(k)).collect();
                let new = keys.iter().all(|k| !model.contains_key(k))
                    && keys.windows(2).all(|w| w[0] < w[1]);
                let beyond = d.all_beyond(&refs);
                prop_assert!(!beyond || keys.iter().all(|k| !model.contains_key(k)), "{:?}", keys);
                let first = d.end();
                if beyond && d.append_increasing(&refs).unwrap() {
                    prop_assert!(new, "appended {:?}", keys);
                    for (j, k) in keys.iter().enumerate() {
                        model.insert(k.clone(), first + j as u32);
                    }
                } else {
                    for k in &keys {
                        let id = d.get_or_push(KeyRef::Str(k)).unwrap();
                        model.entry(k.clone()).or_insert(id);
                    }
                }
                for (k, &id) in &model {
                    prop_assert_eq!(d.get(KeyRef::Str(k)), Some(id), "{}", k);
                }
                prop_assert_eq!(d.len() as usize, model.len());
            }
        }

        /// Key words built before the dictionary grew (new keys of other lengths and out of
        /// order) still find the keys they cover, and the lookups of the keys they do not
        /// cover go to the index.
        #[test]
        fn key_words_stay_right_as_the_dictionary_grows(
            n in 1usize..600,
            later in proptest::collection::vec(0usize..5000, 0..200),
            queries in proptest::collection::vec(0usize..5000, 0..400),
            sorted in any::<bool>(),
        ) {
            let key = |v: usize| if v.is_multiple_of(5) { format!("k{v}") } else { format!("u{v:06}") };
            let mut d = IdDictionary::new(KeyKind::Str, 0);
            let mut model = HashMap::new();
            for v in 0..n {
                let k = format!("u{:06}", v * 2);
                model.insert(Key::Str(k.clone()), d.push(KeyRef::Str(&k)).unwrap());
            }
            let words = d.key_words();
            prop_assert!(words.is_some());
            for &v in &later {
                let k = key(v);
                let id = d.get_or_push(KeyRef::Str(&k)).unwrap();
                model.entry(Key::Str(k)).or_insert(id);
            }
            let mut queries: Vec<Key> = queries.iter().map(|&v| Key::Str(key(v))).collect();
            if sorted {
                queries.sort();
            }
            let mut out = Vec::new();
            d.get_many_with(queries.iter().map(Key::as_ref), &mut out, words.as_ref());
            for (q, got) in queries.iter().zip(&out) {
                prop_assert_eq!(*got, model.get(q).copied(), "{}", q);
            }
        }

        /// `extend_new` appends a batch of new keys, or refuses the first key already present
        /// or repeated and leaves the dictionary as it was.
        #[test]
        fn extend_new_matches_a_hashmap_model(
            kind in prop_oneof![Just(KeyKind::Str), Just(KeyKind::U64)],
            batches in proptest::collection::vec(proptest::collection::vec(0u64..3000, 0..300), 1..12),
            defer in any::<bool>(),
        ) {
            let key = |v: u64| match kind {
                KeyKind::U64 => Key::U64(v),
                KeyKind::Str => Key::Str(format!("k{v}")),
            };
            let mut d = IdDictionary::new(kind, 3);
            if defer {
                d = d.deferring_index();
            }
            let mut model: HashMap<Key, u32> = HashMap::new();
            for batch in &batches {
                let keys: Vec<Key> = batch.iter().map(|&v| key(v)).collect();
                let refs: Vec<KeyRef<'_>> = keys.iter().map(Key::as_ref).collect();
                let mut seen = std::collections::HashSet::new();
                let first_dup = keys.iter().position(|k| model.contains_key(k) || !seen.insert(k));
                let before = d.len();
                let got = d.extend_new(&refs).unwrap();
                match first_dup {
                    Some(j) => {
                        prop_assert_eq!(got, Err(j));
                        prop_assert_eq!(d.len(), before);
                    }
                    None => {
                        prop_assert_eq!(got, Ok(()));
                        for k in keys {
                            let id = 3 + model.len() as u32;
                            model.insert(k, id);
                        }
                    }
                }
                let mut queries: Vec<Key> = model.keys().cloned().collect();
                queries.extend(batch.iter().map(|&v| key(v + 1)));
                check_lookups(&d, &model, &queries)?;
            }
            for (k, &id) in &model {
                prop_assert_eq!(d.key(id), Some(k.as_ref()));
            }
            prop_assert_eq!(d.key(d.end()), None);
            let other = match kind {
                KeyKind::U64 => KeyRef::Str("x"),
                KeyKind::Str => KeyRef::U64(1),
            };
            prop_assert!(d.extend_new(&[other]).is_err());
        }

        /// Mostly increasing `u64` keys (the case the bound of the largest key spares searches
        /// for), with steps back, repeats and appends: the same ids as a model.
        #[test]
        fn increasing_u64_keys_match_a_hashmap_model(
            runs in proptest::collection::vec(
                (0u64..5000, 0usize..200, 1u64..4, 0u8..4),
                1..16,
            ),
            defer in any::<bool>(),
        ) {
            let mut d = IdDictionary::new(KeyKind::U64, 0);
            if defer {
                d = d.deferring_index();
            }
            let mut model: HashMap<Key, u32> = HashMap::new();
            let mut top = 0u64;
            for (jump, len, step, how) in runs {
                // Ahead of every key so far, or from somewhere before (repeats likely).
                let start = if how == 3 { jump % (top + 1) } else { top + jump };
                let keys: Vec<Key> = (0..len as u64).map(|i| Key::U64(start + i * step)).collect();
                let refs: Vec<KeyRef<'_>> = keys.iter().map(Key::as_ref).collect();
                match how {
                    0 => {
                        for k in &keys {
                            let n = model.len() as u32;
                            let id = *model.entry(k.clone()).or_insert(n);
                            prop_assert_eq!(d.get_or_push(k.as_ref()).unwrap(), id);
                        }
                    }
                    1 => {
                        let mut add = IdDictionary::new(KeyKind::U64, d.end());
                        for k in &keys {
                            if !model.contains_key(k) && add.get(k.as_ref()).is_none() {
                                let id = add.push(k.as_ref()).unwrap();
                                model.insert(k.clone(), id);
                            }
                        }
                        d.append(&add).unwrap();
                    }
                    _ => {
                        let first_dup = keys.iter().position(|k| model.contains_key(k));
                        let got = d.extend_new(&refs).unwrap();
                        match first_dup {
                            Some(j) => prop_assert_eq!(got, Err(j)),
                            None => {
                                prop_assert_eq!(got, Ok(()));
                                for k in &keys {
                                    let id = model.len() as u32;
                                    model.insert(k.clone(), id);
                                }
                            }
                        }
                    }
                }
                top = top.max(start + len as u64 * step);
                for (k, &id) in &model {
                    prop_assert_eq!(d.key(id), Some(k.as_ref()));
                }
                let mut queries: Vec<Key> = model.keys().cloned().collect();
                queries.extend((0..8).map(|i| Key::U64(top + i)));
                queries.extend(keys.iter().map(|k| match k {
                    Key::U64(v) => Key::U64(v + 1),
                    other => other.clone(),
                }));
                check_lookups(&d, &model, &queries)?;
            }
        }

        /// Appending dictionaries (as loads commit) is the same as pushing their keys.
        #[test]
        fn appends_match_a_hashmap_model(
            parts in proptest::collection::vec(proptest::collection::btree_set(str_key(), 0..400), 1..8),
            queries in proptest::collection::vec(str_key(), 0..100),
        ) {
            let mut d = IdDictionary::new(KeyKind::Str, 0);
            let mut model: HashMap<Key, u32> = HashMap::new();
            for part in &parts {
                let mut add = IdDictionary::new(KeyKind::Str, d.end());
                for k in part {
                    if !model.contains_key(k) {
                        let id = add.push(k.as_ref()).unwrap();
                        model.insert(k.clone(), id);
                    }
                }
                d.append(&add).unwrap();
                prop_assert_eq!(d.len() as usize, model.len());
            }
            let mut all: Vec<Key> = model.keys().cloned().collect();
            all.extend(queries);
            check_lookups(&d, &model, &all)?;
        }
    }

    proptest! {
        #![proptest_config(crate::testutil::proptest_config(64))]
        #[test]
        fn matches_a_hashmap_model(keys in proptest::collection::vec("[a-c]{0,4}", 0..300), ints in proptest::collection::vec(0u64..50, 0..300)) {
            let mut d = IdDictionary::new(KeyKind::Str, 0);
            let mut model: HashMap<String, u32> = HashMap::new();
            for k in &keys {
                let next = model.len() as u32;
                let id = *model.entry(k.clone()).or_insert(next);
                prop_assert_eq!(d.get_or_push(KeyRef::Str(k)).unwrap(), id);
            }
            for (k, id) in &model {
                prop_assert_eq!(d.get(KeyRef::Str(k)), Some(*id));
                prop_assert_eq!(d.key(*id), Some(KeyRef::Str(k)));
            }
            let mut u = IdDictionary::new(KeyKind::U64, 5);
            let mut um: HashMap<u64, u32> = HashMap::new();
            for k in &ints {
                let next = 5 + um.len() as u32;
                let id = *um.entry(*k).or_insert(next);
                prop_assert_eq!(u.get_or_push(KeyRef::U64(*k)).unwrap(), id);
            }
            prop_assert_eq!(u.len() as usize, um.len());
            for k in 50..60u64 {
                prop_assert_eq!(u.get(KeyRef::U64(k)), None);
            }
        }
    }
}
