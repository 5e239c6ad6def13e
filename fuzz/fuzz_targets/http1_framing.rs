//! The HTTP/1.1 framing scanner on any bytes a client can send, cut into
//! reads at any points: it must never panic, and where it notes an ambiguous
//! head must not depend on how the bytes were cut. Input: one byte saying
//! where to cut, then the connection's bytes.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use router_proxy::http::framing::{FramingNotes, RequestHeads};

fuzz_target!(|data: &[u8]| {
    let Some((&cut, bytes)) = data.split_first() else { return };
    let noted = |pieces: &mut dyn Iterator<Item = &[u8]>| {
        let notes = Arc::new(FramingNotes::default());
        let mut heads = RequestHeads::new(notes.clone());
        pieces.for_each(|p| heads.feed(p));
        notes.ambiguous_head()
    };
    let whole = noted(&mut std::iter::once(bytes));
    let step = usize::from(cut).max(1);
    assert_eq!(noted(&mut bytes.chunks(step)), whole, "cut every {step} bytes");
});
