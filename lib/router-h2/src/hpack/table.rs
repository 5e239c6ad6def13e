//! The static table (RFC 7541 Appendix A) and the dynamic table (§2.3.2,
//! §4) as the decoder keeps them: entries already turned into the field
//! names and values the gateway forwards, so an indexed field costs nothing
//! to read again.

use std::{collections::VecDeque, sync::LazyLock};

use http::{HeaderName, HeaderValue};

/// A pseudo-header field (RFC 9113 §8.3, and `:protocol` of RFC 8441).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pseudo {
    Authority,
    Method,
    Path,
    Scheme,
    Status,
    Protocol,
}

impl Pseudo {
    fn from_bytes(name: &[u8]) -> Option<Self> {
        Some(match name {
            b":authority" => Self::Authority,
            b":method" => Self::Method,
            b":path" => Self::Path,
            b":scheme" => Self::Scheme,
            b":status" => Self::Status,
            b":protocol" => Self::Protocol,
            _ => return None,
        })
    }
}

/// A field name as decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Name {
    Pseudo(Pseudo),
    Field(HeaderName),
    /// Not a field name HTTP/2 allows (upper case, a character outside a
    /// token, an unknown pseudo-header): the request carrying it is
    /// malformed (RFC 9113 §8.2.1), but the entry still takes its room in the
    /// dynamic table, which must stay in step with the client's.
    Malformed,
}

impl Name {
    pub(super) fn from_bytes(name: &[u8]) -> Self {
        if name.first() == Some(&b':') {
            return Pseudo::from_bytes(name).map_or(Self::Malformed, Self::Pseudo);
        }
        HeaderName::from_lowercase(name).map_or(Self::Malformed, Self::Field)
    }
}

/// A field as the decoder hands it over and as the dynamic table holds it.
#[derive(Debug, Clone)]
pub struct Entry {
    pub name: Name,
    /// None when the value is not one HTTP/2 allows (NUL, CR, LF, other
    /// controls, or white space at either end; RFC 9113 §8.2.1).
    pub value: Option<HeaderValue>,
    /// Its name's length as sent, for the literals that reuse the name.
    name_len: usize,
    /// Its size for the dynamic table: both lengths as sent plus 32 (§4.1).
    size: usize,
}

impl Entry {
    pub(crate) fn new(name: &[u8], value: &[u8]) -> Self {
        Self::with_name(Name::from_bytes(name), name.len(), value)
    }

    /// An entry whose name is known already, `name_len` octets long.
    pub(super) fn with_name(name: Name, name_len: usize, value: &[u8]) -> Self {
        let size = name_len + value.len() + 32;
        let blank_end = matches!((value.first(), value.last()), (Some(a), Some(b)) if is_blank(*a) || is_blank(*b));
        let value = if value.is_empty() {
            Some(HeaderValue::from_static(""))
        } else if blank_end {
            None
        } else {
            HeaderValue::from_bytes(value).ok()
        };
        Self { name, value, name_len, size }
    }

    pub fn size(&self) -> usize {
        self.size
    }

    pub(super) fn name_len(&self) -> usize {
        self.name_len
    }
}

fn is_blank(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// The static table, RFC 7541 Appendix A; index 1 is the first row.
pub(super) const STATIC_FIELDS: [(&str, &str); 61] = [
    (":authority", ""),
    (":method", "GET"),
    (":method", "POST"),
    (":path", "/"),
    (":path", "/index.html"),
    (":scheme", "http"),
    (":scheme", "https"),
    (":status", "200"),
    (":status", "204"),
    (":status", "206"),
    (":status", "304"),
    (":status", "400"),
    (":status", "404"),
    (":status", "500"),
    ("accept-charset", ""),
    ("accept-encoding", "gzip, deflate"),
    ("accept-language", ""),
    ("accept-ranges", ""),
    ("accept", ""),
    ("access-control-allow-origin", ""),
    ("age", ""),
    ("allow", ""),
    ("authorization", ""),
    ("cache-control", ""),
    ("content-disposition", ""),
    ("content-encoding", ""),
    ("content-language", ""),
    ("content-length", ""),
    ("content-location", ""),
    ("content-range", ""),
    ("content-type", ""),
    ("cookie", ""),
    ("date", ""),
    ("etag", ""),
    ("expect", ""),
    ("expires", ""),
    ("from", ""),
    ("host", ""),
    ("if-match", ""),
    ("if-modified-since", ""),
    ("if-none-match", ""),
    ("if-range", ""),
    ("if-unmodified-since", ""),
    ("last-modified", ""),
    ("link", ""),
    ("location", ""),
    ("max-forwards", ""),
    ("proxy-authenticate", ""),
    ("proxy-authorization", ""),
    ("range", ""),
    ("referer", ""),
    ("refresh", ""),
    ("retry-after", ""),
    ("server", ""),
    ("set-cookie", ""),
    ("strict-transport-security", ""),
    ("transfer-encoding", ""),
    ("user-agent", ""),
    ("vary", ""),
    ("via", ""),
    ("www-authenticate", ""),
];

/// The static table's entries, made once.
static STATIC: LazyLock<Vec<Entry>> = LazyLock::new(|| STATIC_FIELDS.iter().map(|(n, v)| Entry::new(n.as_bytes(), v.as_bytes())).collect());

/// The dynamic table: newest entry first, evicted oldest first, its size
/// bounded by the last size the client set (§4.2, §4.3).
#[derive(Debug)]
pub(super) struct DynamicTable {
    entries: VecDeque<Entry>,
    size: usize,
    max_size: usize,
}

impl DynamicTable {
    pub(super) fn new(max_size: usize) -> Self {
        Self { entries: VecDeque::new(), size: 0, max_size }
    }

    /// The entry at a 1-based index of the combined index space (§2.3.3).
    pub(super) fn get(&self, index: usize) -> Option<&Entry> {
        match index {
            0 => None,
            1..=61 => STATIC.get(index - 1),
            _ => self.entries.get(index - 62),
        }
    }

    /// Adds an entry; an entry larger than the whole table empties it and is not added (§4.4).
    pub(super) fn insert(&mut self, entry: Entry) {
        if entry.size > self.max_size {
            self.entries.clear();
            self.size = 0;
            return;
        }
        self.evict_to(self.max_size - entry.size);
        self.size += entry.size;
        self.entries.push_front(entry);
    }

    pub(super) fn set_max_size(&mut self, max_size: usize) {
        self.max_size = max_size;
        self.evict_to(max_size);
    }

    fn evict_to(&mut self, size: usize) {
        while self.size > size {
            let Some(old) = self.entries.pop_back() else { break };
            self.size -= old.size;
        }
    }

    #[cfg(test)]
    pub(super) fn size(&self) -> usize {
        self.size
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }
}
