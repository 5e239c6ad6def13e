//! The `Date` field both servers add to a response that has none (RFC 9110
//! §6.6.1), formatted once a second per thread rather than per response.

use std::{
    cell::RefCell,
    time::{SystemTime, UNIX_EPOCH},
};

thread_local!(static DATE: RefCell<CachedDate> = const { RefCell::new(CachedDate { second: u64::MAX, text: Vec::new() }) });

struct CachedDate {
    second: u64,
    text: Vec<u8>,
}

/// Calls `f` with the current `Date` value.
pub fn now(f: impl FnOnce(&[u8])) {
    DATE.with(|date| {
        let mut date = date.borrow_mut();
        let now = SystemTime::now();
        let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if second != date.second {
            date.second = second;
            date.text = httpdate::fmt_http_date(now).into_bytes();
        }
        f(&date.text);
    });
}
