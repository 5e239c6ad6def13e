//! A response head's fields as the gateway's HTTP/1.1 client parsed them:
//! where each name and value sits in the head's bytes, nothing more. The
//! gateway's HTTP/1.1 server writes them to the client from there, so a
//! response that no filter touches never has a header map built, hashed,
//! walked and dropped (2.5k of the 26.6k instructions of a small proxied
//! request, callgrind; docs/performance.md). Whatever needs a map (hyper's
//! HTTP/2 server, a response header modifier, CORS) gets one with
//! [`FieldLines::move_into`].

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};

/// One field: offsets into the head's bytes (a head is at most 64 KiB).
#[derive(Debug, Clone, Copy)]
struct Span {
    name: u16,
    name_len: u16,
    value: u16,
    value_len: u16,
}

/// Fields kept as slices of the head they were parsed from, in their order
/// and with the upstream's spelling of their names (HTTP/1.1 names are
/// case-insensitive; lookups here are too).
///
/// A pointer wide: the lines travel with the response through every stage
/// of the request path, and each stage's future holds them across its
/// awaits, so their size is paid in every copy of those futures.
#[derive(Debug, Default)]
pub struct FieldLines(Option<Box<Lines>>);

#[derive(Debug)]
struct Lines {
    head: Bytes,
    spans: Vec<Span>,
}

impl FieldLines {
    /// Room for `fields` fields of `head`, which every name and value pushed
    /// must be a slice of; `head` is at most 64 KiB long.
    pub fn with_capacity(head: Bytes, fields: usize) -> Self {
        assert!(head.len() <= usize::from(u16::MAX) + 1, "a head longer than 64 KiB");
        Self(Some(Box::new(Lines { head, spans: Vec::with_capacity(fields) })))
    }

    /// Adds a field whose name and value are slices of the head.
    pub fn push(&mut self, name: &[u8], value: &[u8]) {
        let lines = self.0.as_mut().expect("lines made with a head");
        let offset = |part: &[u8]| {
            let at = (part.as_ptr() as usize).wrapping_sub(lines.head.as_ptr() as usize);
            assert!(at.checked_add(part.len()).is_some_and(|end| end <= lines.head.len()), "a field outside its head");
            // Within a head of at most 64 KiB, a field ends at most at its last byte.
            (at as u16, part.len() as u16)
        };
        let ((name, name_len), (value, value_len)) = (offset(name), offset(value));
        lines.spans.push(Span { name, name_len, value, value_len });
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |l| l.spans.len())
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Each field's name and value, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.0.iter().flat_map(|l| l.spans.iter().map(|s| (l.slice(s.name, s.name_len), l.slice(s.value, s.value_len))))
    }

    /// The first value of the field named `name` (any case).
    pub fn get(&self, name: &[u8]) -> Option<&[u8]> {
        self.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v)
    }

    /// Appends every field to `map`, values sharing the head's bytes; no lines are left.
    pub fn move_into(&mut self, map: &mut HeaderMap) {
        let Some(lines) = self.0.take() else { return };
        map.reserve(lines.spans.len());
        for s in &lines.spans {
            let (name, value) = (lines.slice(s.name, s.name_len), lines.slice(s.value, s.value_len));
            // The parser accepted only token names and values without control
            // characters but tab, which is what these accept: nothing is skipped.
            if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name), HeaderValue::from_maybe_shared(lines.head.slice_ref(value))) {
                map.append(name, value);
            }
        }
    }
}

impl Lines {
    fn slice(&self, at: u16, len: u16) -> &[u8] {
        &self.head[usize::from(at)..usize::from(at) + usize::from(len)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(head: &'static [u8], fields: &[(&str, &str)]) -> FieldLines {
        let head = Bytes::from_static(head);
        let mut lines = FieldLines::with_capacity(head.clone(), fields.len());
        for (name, value) in fields {
            let n = head.windows(name.len()).position(|w| w == name.as_bytes()).unwrap();
            let v = head.windows(value.len()).position(|w| w == value.as_bytes()).unwrap();
            lines.push(&head[n..n + name.len()], &head[v..v + value.len()]);
        }
        lines
    }

    #[test]
    fn fields_keep_their_order_and_spelling_and_are_found_in_any_case() {
        let l = lines(b"HTTP/1.1 200 OK\r\nServer: up\r\nX-A: 1\r\nx-a: 2\r\n\r\n", &[("Server", "up"), ("X-A", "1"), ("x-a", "2")]);
        let got: Vec<_> =
            l.iter().map(|(n, v)| (String::from_utf8_lossy(n).into_owned(), String::from_utf8_lossy(v).into_owned())).collect();
        assert_eq!(got, [("Server".into(), "up".into()), ("X-A".into(), "1".into()), ("x-a".into(), "2".into())]);
        assert_eq!(l.get(b"x-A"), Some(&b"1"[..]), "the first of repeated fields");
        assert_eq!(l.get(b"SERVER"), Some(&b"up"[..]));
        assert_eq!(l.get(b"date"), None);
        assert_eq!(l.len(), 3);
    }

    #[test]
    fn moved_into_a_map_the_fields_keep_every_value_and_leave_no_lines() {
        let mut l = lines(b"HTTP/1.1 200 OK\r\nServer: up\r\nX-A: 1\r\nx-a: 2\r\n\r\n", &[("Server", "up"), ("X-A", "1"), ("x-a", "2")]);
        let mut map = HeaderMap::new();
        map.insert("x-gateway", HeaderValue::from_static("kept"));
        l.move_into(&mut map);
        assert!(l.is_empty());
        assert_eq!(map["server"], "up");
        assert_eq!(map.get_all("x-a").iter().collect::<Vec<_>>(), ["1", "2"]);
        assert_eq!(map["x-gateway"], "kept");
    }

    #[test]
    #[should_panic(expected = "a field outside its head")]
    fn a_field_from_elsewhere_is_refused() {
        let mut l = FieldLines::with_capacity(Bytes::from_static(b"HTTP/1.1 200 OK\r\n\r\n"), 1);
        l.push(b"elsewhere", b"x");
    }
}
