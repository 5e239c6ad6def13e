//! Decoding a request's header block (RFC 7541 §6) with the connection's
//! dynamic table. Any error here is a COMPRESSION_ERROR for the whole
//! connection (RFC 9113 §4.3): the table can no longer be trusted to match
//! the client's. A field HTTP/2 does not allow is not an error here: it is
//! handed over as malformed, so that the stream alone is refused.

use super::{
    huffman::{self, HuffmanError},
    table::{DynamicTable, Entry},
};

/// Why a header block cannot be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("header block ends inside a field")]
    Truncated,
    #[error("integer in header block exceeds its bound")]
    IntegerOverflow,
    #[error("header block refers to index {0}, which does not exist")]
    NoSuchIndex(usize),
    #[error("dynamic table size update to {0} exceeds the limit the gateway set")]
    TableSizeOverLimit(usize),
    #[error("dynamic table size update after the first field of a block")]
    LateTableSizeUpdate,
    #[error(transparent)]
    Huffman(#[from] HuffmanError),
}

/// The decoding side of a connection's HPACK context.
#[derive(Debug)]
pub struct Decoder {
    table: DynamicTable,
    /// SETTINGS_HEADER_TABLE_SIZE as the gateway announced it: the most a
    /// client's size update may ask for.
    limit: usize,
    /// Huffman-decoded name and value, reused across fields.
    name: Vec<u8>,
    value: Vec<u8>,
}

impl Decoder {
    /// A decoder for a connection whose SETTINGS_HEADER_TABLE_SIZE is `limit`.
    pub fn new(limit: usize) -> Self {
        Self { table: DynamicTable::new(limit), limit, name: Vec::new(), value: Vec::new() }
    }

    /// Decodes one complete header block (HEADERS and its CONTINUATIONs),
    /// handing each field to `field` with whether it was sent never-indexed.
    pub fn decode(&mut self, mut block: &[u8], mut field: impl FnMut(&Entry, bool)) -> Result<(), DecodeError> {
        let mut first = true;
        while let Some(&octet) = block.first() {
            if octet & 0x80 != 0 {
                // Indexed field (§6.1).
                let index = integer(&mut block, 7)?;
                field(self.table.get(index).ok_or(DecodeError::NoSuchIndex(index))?, false);
            } else if octet & 0xe0 == 0x20 {
                // Dynamic table size update (§6.3): only before the block's first field.
                if !first {
                    return Err(DecodeError::LateTableSizeUpdate);
                }
                let size = integer(&mut block, 5)?;
                if size > self.limit {
                    return Err(DecodeError::TableSizeOverLimit(size));
                }
                self.table.set_max_size(size);
                continue;
            } else {
                // Literals (§6.2): with incremental indexing (01), never indexed (0001), without indexing (0000).
                let (prefix, indexing, sensitive) = match octet {
                    _ if octet & 0xc0 == 0x40 => (6, true, false),
                    _ if octet & 0xf0 == 0x10 => (4, false, true),
                    _ => (4, false, false),
                };
                let index = integer(&mut block, prefix)?;
                let entry = if index == 0 {
                    let name = string(&mut block, &mut self.name)?;
                    let value = string(&mut block, &mut self.value)?;
                    Entry::new(name, value)
                } else {
                    let named = self.table.get(index).ok_or(DecodeError::NoSuchIndex(index))?;
                    let (name, name_len) = (named.name.clone(), named.name_len());
                    Entry::with_name(name, name_len, string(&mut block, &mut self.value)?)
                };
                field(&entry, sensitive);
                if indexing {
                    self.table.insert(entry);
                }
            }
            first = false;
        }
        Ok(())
    }
}

/// An integer with an `n`-bit prefix (§5.1). Values are bounded well above
/// anything a header block can mean (2^28), so no sum can overflow.
fn integer(block: &mut &[u8], n: u8) -> Result<usize, DecodeError> {
    let (&first, mut rest) = block.split_first().ok_or(DecodeError::Truncated)?;
    let max = (1usize << n) - 1;
    let mut value = usize::from(first) & max;
    if value == max {
        let mut shift = 0;
        loop {
            let (&b, tail) = rest.split_first().ok_or(DecodeError::Truncated)?;
            rest = tail;
            if shift > 21 {
                return Err(DecodeError::IntegerOverflow);
            }
            value += usize::from(b & 0x7f) << shift;
            shift += 7;
            if b & 0x80 == 0 {
                break;
            }
        }
    }
    *block = rest;
    Ok(value)
}

/// A string literal (§5.2): its octets, Huffman-decoded into `scratch` when coded.
fn string<'r, 'b: 'r, 's: 'r>(block: &mut &'b [u8], scratch: &'s mut Vec<u8>) -> Result<&'r [u8], DecodeError> {
    let huffman = block.first().ok_or(DecodeError::Truncated)? & 0x80 != 0;
    let len = integer(block, 7)?;
    if len > block.len() {
        return Err(DecodeError::Truncated);
    }
    let (raw, rest) = block.split_at(len);
    *block = rest;
    if !huffman {
        return Ok(raw);
    }
    scratch.clear();
    huffman::decode(raw, scratch)?;
    Ok(scratch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hpack::{Name, Pseudo, huffman};

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    /// The fields of a block as (name, value, never-indexed) strings; malformed parts as "!".
    fn fields(decoder: &mut Decoder, block: &[u8]) -> Result<Vec<(String, String, bool)>, DecodeError> {
        let mut out = Vec::new();
        decoder.decode(block, |e, sensitive| {
            let name = match &e.name {
                Name::Pseudo(p) => format!(":{}", format!("{p:?}").to_lowercase()),
                Name::Field(n) => n.to_string(),
                Name::Malformed => "!".into(),
            };
            let value = e.value.as_ref().map_or("!".into(), |v| String::from_utf8(v.as_bytes().to_vec()).unwrap());
            out.push((name, value, sensitive));
        })?;
        Ok(out)
    }

    fn plain(list: &[(&str, &str)]) -> Vec<(String, String, bool)> {
        list.iter().map(|(n, v)| (n.to_string(), v.to_string(), false)).collect()
    }

    #[test]
    fn the_request_examples_of_rfc_7541_c3_and_c4_decode_with_their_table() {
        // C.3 without Huffman coding, C.4 the same requests with it: same fields, same table.
        for blocks in [
            [
                "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
                "8286 84be 5808 6e6f 2d63 6163 6865",
                "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
            ],
            [
                "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
                "8286 84be 5886 a8eb 1064 9cbf",
                "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
            ],
        ] {
            let mut d = Decoder::new(4096);
            let base = [(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "www.example.com")];
            assert_eq!(fields(&mut d, &hex(blocks[0])).unwrap(), plain(&base));
            assert_eq!((d.table.len(), d.table.size()), (1, 57));
            let mut second = base.to_vec();
            second.push(("cache-control", "no-cache"));
            assert_eq!(fields(&mut d, &hex(blocks[1])).unwrap(), plain(&second));
            assert_eq!((d.table.len(), d.table.size()), (2, 110));
            let third = [
                (":method", "GET"),
                (":scheme", "https"),
                (":path", "/index.html"),
                (":authority", "www.example.com"),
                ("custom-key", "custom-value"),
            ];
            assert_eq!(fields(&mut d, &hex(blocks[2])).unwrap(), plain(&third));
            assert_eq!((d.table.len(), d.table.size()), (3, 164));
        }
    }

    #[test]
    fn the_response_examples_of_rfc_7541_c5_evict_the_oldest_entries() {
        let mut d = Decoder::new(256);
        let date = "Mon, 21 Oct 2013 20:13:21 GMT";
        let loc = "https://www.example.com";
        let first = "4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3120 474d 546e \
                     1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70 6c65 2e63 6f6d";
        assert_eq!(
            fields(&mut d, &hex(first)).unwrap(),
            plain(&[(":status", "302"), ("cache-control", "private"), ("date", date), ("location", loc)])
        );
        assert_eq!((d.table.len(), d.table.size()), (4, 222));
        assert_eq!(
            fields(&mut d, &hex("4803 3330 37c1 c0bf")).unwrap(),
            plain(&[(":status", "307"), ("cache-control", "private"), ("date", date), ("location", loc)])
        );
        assert_eq!((d.table.len(), d.table.size()), (4, 222), ":status 302 was evicted for :status 307");
        let third = "88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d 54c0 5a04 677a 6970 7738 666f \
                     6f3d 4153 444a 4b48 514b 425a 584f 5157 454f 5049 5541 5851 5745 4f49 553b 206d 6178 2d61 6765 3d33 3630 303b \
                     2076 6572 7369 6f6e 3d31";
        assert_eq!(
            fields(&mut d, &hex(third)).unwrap(),
            plain(&[
                (":status", "200"),
                ("cache-control", "private"),
                ("date", "Mon, 21 Oct 2013 20:13:22 GMT"),
                ("location", loc),
                ("content-encoding", "gzip"),
                ("set-cookie", "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1"),
            ])
        );
        assert_eq!((d.table.len(), d.table.size()), (3, 215));
    }

    #[test]
    fn a_never_indexed_literal_is_marked_and_stays_out_of_the_table() {
        let mut d = Decoder::new(4096);
        // C.2.3: never-indexed literal `password: secret`.
        let got = fields(&mut d, &hex("1008 7061 7373 776f 7264 0673 6563 7265 74")).unwrap();
        assert_eq!(got, vec![("password".into(), "secret".into(), true)]);
        assert_eq!(d.table.len(), 0);
    }

    #[test]
    fn fields_http2_forbids_are_handed_over_as_malformed_and_still_take_their_room() {
        let mut d = Decoder::new(4096);
        let mut block = vec![0x40, 4];
        block.extend_from_slice(b"X-Up");
        block.extend_from_slice(&[2, b'o', b'k']);
        block.extend_from_slice(&[0x40, 5]);
        block.extend_from_slice(b":nope");
        block.extend_from_slice(&[1, b'v']);
        block.extend_from_slice(&[0x00, 1, b'a', 3, b' ', b'x', b'y']);
        block.extend_from_slice(&[0x00, 1, b'b', 2, b'x', b'\n']);
        let got = fields(&mut d, &block).unwrap();
        assert_eq!(got.iter().map(|f| (f.0.as_str(), f.1.as_str())).collect::<Vec<_>>(), [("!", "ok"), ("!", "v"), ("a", "!"), ("b", "!")]);
        assert_eq!(d.table.size(), (4 + 2 + 32) + (5 + 1 + 32), "malformed entries are counted as sent");
        // The next block can refer to them: the table stays in step with the client's.
        assert_eq!(fields(&mut d, &[0xbf]).unwrap()[0].1, "ok");
    }

    #[test]
    fn table_size_updates_are_bounded_and_only_come_first() {
        let mut d = Decoder::new(4096);
        fields(&mut d, &hex("8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d")).unwrap();
        // 0x20: size 0 empties the table; then back to 4096 (0x3f e1 1f).
        assert!(fields(&mut d, &[0x20, 0x3f, 0xe1, 0x1f, 0x82]).is_ok());
        assert_eq!(d.table.len(), 0);
        assert_eq!(fields(&mut d, &[0x3f, 0xe2, 0x1f]), Err(DecodeError::TableSizeOverLimit(4097)));
        assert_eq!(fields(&mut d, &[0x82, 0x20]), Err(DecodeError::LateTableSizeUpdate));
    }

    #[test]
    fn broken_blocks_are_errors_not_panics() {
        let mut d = Decoder::new(4096);
        assert_eq!(fields(&mut d, &[0x80]), Err(DecodeError::NoSuchIndex(0)));
        assert_eq!(fields(&mut d, &[0xbe]), Err(DecodeError::NoSuchIndex(62)), "empty dynamic table");
        assert_eq!(fields(&mut d, &[0x41, 0x05, b'a']), Err(DecodeError::Truncated));
        assert_eq!(fields(&mut d, &[0xff]), Err(DecodeError::Truncated));
        assert_eq!(fields(&mut d, &[0xff, 0xff, 0xff, 0xff, 0xff, 0x01]), Err(DecodeError::IntegerOverflow));
        assert_eq!(fields(&mut d, &[0x01, 0x81, 0xff]), Err(DecodeError::Huffman(huffman::HuffmanError::Padding)));
        // Every prefix of a valid block either decodes or fails cleanly.
        let block = hex("8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf");
        for cut in 0..block.len() {
            let _ = fields(&mut Decoder::new(4096), &block[..cut]);
        }
    }

    #[test]
    fn huffman_coded_literals_decode_like_plain_ones() {
        let mut d = Decoder::new(4096);
        let value = b"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36";
        let coded = huffman::tests::encode(value);
        let mut block = vec![0x0f, 0x2b]; // user-agent (58), without indexing
        block.push(0x80 | coded.len() as u8);
        block.extend_from_slice(&coded);
        let got = fields(&mut d, &block).unwrap();
        assert_eq!(got[0].1.as_bytes(), value);
        assert!(matches!(Name::from_bytes(b":path"), Name::Pseudo(Pseudo::Path)));
    }
}
