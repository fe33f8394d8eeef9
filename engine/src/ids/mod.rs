//! The id dictionary: external user keys to dense `u32` ids, and back.
//!
//! Ids are assigned in arrival order starting at 0, so the ids of a table are always exactly
//! `0..n` and bitmaps over them stay dense and small. A table's keys are all strings or all
//! `u64` ([`KeyKind`]).
//!
//! In memory, keys live in one flat store (a `Vec<u64>`, or one byte arena plus end offsets for
//! strings) and a [`hashbrown::HashTable`] holds only the `u32` ids, hashing and comparing through
//! the store. Memory per key is therefore the key itself plus about 14 bytes (8 for the reverse
//! offset or the u64 key, ~5.7 for the table slot at its load factor).
//!
//! On disk, keys are appended as *chunks* (see [`chunk`]): each bulk load that introduces new keys
//! writes one chunk holding the contiguous id range it assigned.

pub(crate) mod chunk;

use std::fmt;

use hashbrown::HashTable;

use crate::error::{Error, Result};

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

#[inline]
fn hash_u64(mut k: u64) -> u64 {
    // murmur3's fmix64: a full-avalanche mixer, enough for integer keys.
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^ (k >> 33)
}

#[inline]
fn hash_key(key: KeyRef<'_>) -> u64 {
    match key {
        KeyRef::Str(s) => xxhash_rust::xxh3::xxh3_64(s.as_bytes()),
        KeyRef::U64(v) => hash_u64(v),
    }
}

#[derive(Debug, Clone)]
enum Store {
    U64(Vec<u64>),
    Str { bytes: Vec<u8>, ends: Vec<u64> },
}

/// Keys of ids `first..first + len`, with a hash index from key to id.
#[derive(Clone)]
pub(crate) struct IdDictionary {
    first: u32,
    store: Store,
    index: HashTable<u32>,
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
            KeyKind::Str => Store::Str {
                bytes: Vec::new(),
                ends: Vec::new(),
            },
            KeyKind::U64 => Store::U64(Vec::new()),
        };
        Self {
            first,
            store,
            index: HashTable::new(),
        }
    }

    pub(crate) fn kind(&self) -> KeyKind {
        match self.store {
            Store::U64(_) => KeyKind::U64,
            Store::Str { .. } => KeyKind::Str,
        }
    }

    /// Number of keys held.
    pub(crate) fn len(&self) -> u32 {
        match &self.store {
            Store::U64(v) => v.len() as u32,
            Store::Str { ends, .. } => ends.len() as u32,
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
        Self::key_at(&self.store, i)
    }

    #[inline]
    fn key_at(store: &Store, i: usize) -> Option<KeyRef<'_>> {
        match store {
            Store::U64(v) => v.get(i).map(|k| KeyRef::U64(*k)),
            Store::Str { bytes, ends } => {
                let end = *ends.get(i)? as usize;
                let start = if i == 0 { 0 } else { ends[i - 1] as usize };
                // The arena only ever receives whole `&str`s, so every key range is valid UTF-8.
                std::str::from_utf8(&bytes[start..end])
                    .ok()
                    .map(KeyRef::Str)
            }
        }
    }

    /// The id of `key`, if present.
    #[inline]
    pub(crate) fn get(&self, key: KeyRef<'_>) -> Option<u32> {
        let h = hash_key(key);
        let store = &self.store;
        let first = self.first;
        self.index
            .find(h, |&id| {
                Self::key_at(store, (id - first) as usize) == Some(key)
            })
            .copied()
    }

    /// Looks up many keys at once; `out[i]` is the id of `keys[i]`.
    pub(crate) fn get_many<'k>(
        &self,
        keys: impl IntoIterator<Item = KeyRef<'k>>,
        out: &mut Vec<Option<u32>>,
    ) {
        out.clear();
        out.extend(keys.into_iter().map(|k| self.get(k)));
    }

    /// Appends `key` (which must be absent and of the dictionary's kind) and returns its id.
    pub(crate) fn push(&mut self, key: KeyRef<'_>) -> Result<u32> {
        if key.kind() != self.kind() {
            return Err(Error::InvalidArgument(format!(
                "key `{key}` is a {} but the table's keys are {}",
                key.kind().name(),
                self.kind().name()
            )));
        }
        let id = self.end();
        if id == u32::MAX {
            return Err(Error::LimitExceeded(
                "a table holds at most 4,294,967,295 users".into(),
            ));
        }
        match (&mut self.store, key) {
            (Store::U64(v), KeyRef::U64(k)) => v.push(k),
            (Store::Str { bytes, ends }, KeyRef::Str(s)) => {
                bytes.extend_from_slice(s.as_bytes());
                ends.push(bytes.len() as u64);
            }
            _ => unreachable!("kind checked above"),
        }
        let store = &self.store;
        let first = self.first;
        self.index.insert_unique(hash_key(key), id, |&id| {
            hash_key(Self::key_at(store, (id - first) as usize).expect("indexed ids are stored"))
        });
        Ok(id)
    }

    /// Returns the id of `key`, assigning the next one if it is new.
    pub(crate) fn get_or_push(&mut self, key: KeyRef<'_>) -> Result<u32> {
        match self.get(key) {
            Some(id) => Ok(id),
            None => self.push(key),
        }
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
        self.index.reserve(other.len() as usize, |_| 0);
        for i in 0..other.len() as usize {
            let key = Self::key_at(&other.store, i).expect("in range");
            self.push(key)?;
        }
        Ok(())
    }

    /// Approximate heap bytes used.
    pub(crate) fn heap_bytes(&self) -> usize {
        let store = match &self.store {
            Store::U64(v) => v.capacity() * 8,
            Store::Str { bytes, ends } => bytes.capacity() + ends.capacity() * 8,
        };
        store + self.index.capacity() * (std::mem::size_of::<u32>() + 1)
    }
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
