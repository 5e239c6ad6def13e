//! The Huffman code of HPACK (RFC 7541 §5.2, Appendix B).
//!
//! The code is canonical: codes are handed out in order of (length, symbol),
//! so the length of each symbol's code defines the whole code, and a decoder
//! needs no tree — per length, the first code and where its symbols start in
//! the symbols sorted by (length, symbol) are enough. Only decoding is
//! needed: the gateway's encoder never Huffman-codes (see the crate docs).

/// Code length in bits of each symbol 0..=255 and of EOS (256), from RFC 7541 Appendix B.
const CODE_LENGTHS: [u8; 257] = [
    13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, //
    28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28, //
    6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, //
    5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10, //
    13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, //
    7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6, //
    15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5, //
    6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28, //
    20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23, //
    24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, //
    22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, //
    21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23, //
    26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, //
    19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27, //
    20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23, //
    26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26, //
    30,
];

const EOS: u16 = 256;
const MAX_LEN: usize = 30;

/// The canonical code's decoding tables: for each length, its first code
/// and where its symbols start among the symbols in code order.
struct Canonical {
    /// First code of each length, left-aligned in 32 bits (so that codes of
    /// different lengths compare as numbers).
    first: [u32; MAX_LEN + 2],
    /// Index in `symbols` of each length's first code.
    offset: [u16; MAX_LEN + 1],
    symbols: [u16; 257],
}

const fn canonical() -> Canonical {
    let mut count = [0u16; MAX_LEN + 1];
    let mut i = 0;
    while i < 257 {
        count[CODE_LENGTHS[i] as usize] += 1;
        i += 1;
    }
    let mut offset = [0u16; MAX_LEN + 1];
    let mut first = [0u32; MAX_LEN + 2];
    let mut code: u64 = 0;
    let mut len = 1;
    let mut at = 0u16;
    while len <= MAX_LEN {
        offset[len] = at;
        first[len] = (code << (32 - len)) as u32;
        at += count[len];
        code = (code + count[len] as u64) << 1;
        len += 1;
    }
    // Past the longest code: every 32-bit window is below it.
    first[MAX_LEN + 1] = u32::MAX;
    let mut symbols = [0u16; 257];
    let mut next = offset;
    let mut s = 0;
    while s < 257 {
        let l = CODE_LENGTHS[s] as usize;
        symbols[next[l] as usize] = s as u16;
        next[l] += 1;
        s += 1;
    }
    Canonical { first, offset, symbols }
}

static CODE: Canonical = canonical();

/// Why a Huffman-coded string is not valid (a COMPRESSION_ERROR, RFC 7541 §5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HuffmanError {
    #[error("Huffman-coded string contains EOS")]
    Eos,
    #[error("Huffman-coded string ends in padding longer than 7 bits or not all ones")]
    Padding,
}

/// Decodes a Huffman-coded string onto the end of `out`.
pub fn decode(src: &[u8], out: &mut Vec<u8>) -> Result<(), HuffmanError> {
    // Bits not yet decoded, left-aligned in `window`; `bits` of them are valid.
    let mut window: u64 = 0;
    let mut bits: u32 = 0;
    let mut input = src.iter();
    out.reserve(src.len() * 8 / 5);
    loop {
        while bits <= 56 {
            match input.next() {
                Some(&b) => {
                    window |= u64::from(b) << (56 - bits);
                    bits += 8;
                }
                None => break,
            }
        }
        if bits == 0 {
            return Ok(());
        }
        let top = (window >> 32) as u32;
        // Codes of each length fill one interval of the left-aligned values,
        // the intervals in order of length: the code's length is the first
        // whose interval ends above the window. Bits past the input read as
        // zeros, which cannot make a code look shorter than it is.
        let mut len = 5;
        while len < MAX_LEN && top >= CODE.first[len + 1] {
            len += 1;
        }
        if len as u32 > bits {
            // What is left is shorter than any code that fits: padding (§5.2),
            // at most 7 bits, all ones (the most significant bits of EOS).
            let pad_mask = (!0u64) << (64 - bits);
            return if bits <= 7 && window & pad_mask == pad_mask { Ok(()) } else { Err(HuffmanError::Padding) };
        }
        let index = CODE.offset[len] as u32 + ((top - CODE.first[len]) >> (32 - len));
        let symbol = CODE.symbols[index as usize];
        if symbol == EOS {
            return Err(HuffmanError::Eos);
        }
        out.push(symbol as u8);
        window <<= len;
        bits -= len as u32;
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The encoder the gateway does not need, for round trips and for
    /// writing test blocks the way clients do.
    pub(crate) fn encode(src: &[u8]) -> Vec<u8> {
        let mut codes = [0u32; 257];
        let (mut code, mut prev) = (0u32, 0u8);
        let mut order: Vec<usize> = (0..257).collect();
        order.sort_by_key(|&s| (CODE_LENGTHS[s], s));
        for (k, &s) in order.iter().enumerate() {
            if k > 0 {
                code = (code + 1) << (CODE_LENGTHS[s] - prev);
            }
            prev = CODE_LENGTHS[s];
            codes[s] = code;
        }
        let (mut out, mut acc, mut n) = (Vec::new(), 0u64, 0u32);
        for &b in src {
            let len = u32::from(CODE_LENGTHS[b as usize]);
            acc = (acc << len) | u64::from(codes[b as usize]);
            n += len;
            while n >= 8 {
                out.push((acc >> (n - 8)) as u8);
                n -= 8;
            }
        }
        if n > 0 {
            out.push(((acc << (8 - n)) as u8) | (0xff >> n));
        }
        out
    }

    fn decoded(src: &[u8]) -> Result<Vec<u8>, HuffmanError> {
        let mut out = Vec::new();
        decode(src, &mut out).map(|()| out)
    }

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    #[test]
    fn the_examples_of_rfc_7541_appendix_c_decode() {
        for (coded, plain) in [
            ("f1e3 c2e5 f23a 6ba0 ab90 f4ff", "www.example.com"),
            ("a8eb 1064 9cbf", "no-cache"),
            ("25a8 49e9 5ba9 7d7f", "custom-key"),
            ("25a8 49e9 5bb8 e8b4 bf", "custom-value"),
            ("6402", "302"),
            ("aec3 771a 4b", "private"),
            ("d07a be94 1054 d444 a820 0595 040b 8166 e082 a62d 1bff", "Mon, 21 Oct 2013 20:13:21 GMT"),
            ("9d29 ad17 1863 c78f 0b97 c8e9 ae82 ae43 d3", "https://www.example.com"),
        ] {
            assert_eq!(decoded(&hex(coded)).unwrap(), plain.as_bytes(), "{plain}");
            assert_eq!(encode(plain.as_bytes()), hex(coded), "{plain}");
        }
    }

    #[test]
    fn every_octet_round_trips_alone_and_together() {
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(decoded(&encode(&all)).unwrap(), all);
        for b in 0..=255u8 {
            assert_eq!(decoded(&encode(&[b, b, b])).unwrap(), [b, b, b], "octet {b}");
        }
        assert_eq!(decoded(&[]).unwrap(), b"");
    }

    #[test]
    fn padding_must_be_short_and_all_ones() {
        // "a" is 00011: three bits of padding must be 111.
        assert_eq!(decoded(&[0b0001_1111]).unwrap(), b"a");
        assert_eq!(decoded(&[0b0001_1101]), Err(HuffmanError::Padding), "padding not all ones");
        // A whole octet of ones after a complete code is padding longer than 7 bits.
        assert_eq!(decoded(&[0b0001_1111, 0xff]), Err(HuffmanError::Padding));
    }

    #[test]
    fn eos_inside_a_string_is_refused() {
        // EOS is 30 ones: four octets of ones hold it.
        assert_eq!(decoded(&[0xff, 0xff, 0xff, 0xff]), Err(HuffmanError::Eos));
    }
}
