//! The bytes a connection has to write: frames encoded into one buffer,
//! with large DATA payloads kept as the buffers they came in (no copy), for
//! one vectored write.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

/// Payloads shorter than this are copied next to their frame head: one
/// buffer to write costs less than a separate slice for a few bytes.
const COPY_BELOW: usize = 1024;

#[derive(Debug, Default)]
pub struct Output {
    /// Whole buffers, oldest first, ahead of `open`.
    done: VecDeque<Bytes>,
    /// The buffer frames are being encoded into.
    pub(crate) open: BytesMut,
    len: usize,
}

impl Output {
    /// Bytes waiting to be written.
    pub fn len(&self) -> usize {
        self.len + self.open.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A payload after the frame head just encoded.
    pub(crate) fn payload(&mut self, bytes: Bytes) {
        if bytes.len() < COPY_BELOW {
            self.open.extend_from_slice(&bytes);
            return;
        }
        if !self.open.is_empty() {
            let head = self.open.split().freeze();
            self.len += head.len();
            self.done.push_back(head);
        }
        self.len += bytes.len();
        self.done.push_back(bytes);
    }

    /// Moves everything there is to write onto the end of `into`.
    pub fn take(&mut self, into: &mut VecDeque<Bytes>) {
        into.extend(self.done.drain(..));
        if !self.open.is_empty() {
            into.push_back(self.open.split().freeze());
        }
        self.len = 0;
    }
}
