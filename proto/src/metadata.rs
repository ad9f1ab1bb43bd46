//! Request metadata: string pairs that travel with a call.

/// String key/value pairs propagated from caller to handler.
///
/// Service Weaver carries a Go `map[string]string`; a key appears at most once
/// and order carries no meaning. weft keeps the entries sorted by key, which
/// makes encoding deterministic and lookups a binary search.
///
/// ```
/// use weft_proto::Metadata;
/// let mut md = Metadata::new();
/// md.insert("tenant", "acme");
/// md.insert("tenant", "globex");
/// assert_eq!(md.get("tenant"), Some("globex"));
/// assert_eq!(md.len(), 1);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default, Hash)]
pub struct Metadata {
    entries: Vec<(String, String)>,
}

impl Metadata {
    /// An empty set of metadata.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `key` to `value`, replacing any earlier value.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<String>) {
        let key = key.into();
        let value = value.into();
        match self.entries.binary_search_by(|(k, _)| k.as_str().cmp(&key)) {
            Ok(i) => self.entries[i].1 = value,
            Err(i) => self.entries.insert(i, (key, value)),
        }
    }

    /// The value for `key`, if any.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .binary_search_by(|(k, _)| k.as_str().cmp(key))
            .ok()
            .map(|i| self.entries[i].1.as_str())
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Entries in key order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &str)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Builds metadata from pairs in wire order; a later duplicate key wins,
    /// as it would when Go fills a map. Sorting once keeps this O(n log n)
    /// however hostile the input.
    pub(crate) fn from_wire_pairs(mut entries: Vec<(String, String)>) -> Self {
        // Reversed, a stable sort puts the last of each run of equal keys
        // on the wire first, and `dedup_by` keeps the first: the one Go
        // would have kept. In place, and shrunk: no second copy, and no
        // room kept for the duplicates dropped.
        entries.reverse();
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        entries.dedup_by(|later, kept| later.0 == kept.0);
        entries.shrink_to_fit();
        Metadata { entries }
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Metadata {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut md = Metadata::new();
        for (k, v) in iter {
            md.insert(k, v);
        }
        md
    }
}
