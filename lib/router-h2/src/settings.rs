//! SETTINGS (RFC 9113 §6.5): the values a client announces, checked and
//! applied, and the identifiers of those the gateway announces.

use bytes::Bytes;

use crate::{
    error::{ProtocolError, Reason},
    frame::{MAX_MAX_FRAME_SIZE, MIN_MAX_FRAME_SIZE},
    window::MAX_WINDOW,
};

pub const ENABLE_PUSH: u16 = 0x2;
pub const MAX_CONCURRENT_STREAMS: u16 = 0x3;
pub const INITIAL_WINDOW_SIZE: u16 = 0x4;
pub const MAX_FRAME_SIZE: u16 = 0x5;
pub const MAX_HEADER_LIST_SIZE: u16 = 0x6;

/// What the client announced that binds the gateway: how large a frame
/// it takes and each new stream's send window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerSettings {
    pub max_frame_size: u32,
    pub initial_window_size: u32,
}

impl Default for PeerSettings {
    fn default() -> Self {
        Self { max_frame_size: MIN_MAX_FRAME_SIZE, initial_window_size: 65_535 }
    }
}

impl PeerSettings {
    /// Applies one SETTINGS frame's values in order (§6.5.3); unknown
    /// identifiers are ignored (§6.5.2). Values the gateway has no use for
    /// (the client's table size, concurrency, header list size) are only checked.
    pub fn apply(&mut self, payload: &Bytes) -> Result<(), ProtocolError> {
        for pair in payload.chunks_exact(6) {
            let id = u16::from_be_bytes([pair[0], pair[1]]);
            let value = u32::from_be_bytes([pair[2], pair[3], pair[4], pair[5]]);
            match id {
                ENABLE_PUSH if value > 1 => return Err(ProtocolError::connection(Reason::PROTOCOL_ERROR, "ENABLE_PUSH not 0 or 1")),
                INITIAL_WINDOW_SIZE if value > MAX_WINDOW as u32 => {
                    return Err(ProtocolError::connection(Reason::FLOW_CONTROL_ERROR, "INITIAL_WINDOW_SIZE above 2^31-1"));
                }
                INITIAL_WINDOW_SIZE => self.initial_window_size = value,
                MAX_FRAME_SIZE if !(MIN_MAX_FRAME_SIZE..=MAX_MAX_FRAME_SIZE).contains(&value) => {
                    return Err(ProtocolError::connection(Reason::PROTOCOL_ERROR, "MAX_FRAME_SIZE out of range"));
                }
                MAX_FRAME_SIZE => self.max_frame_size = value,
                _ => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(pairs: &[(u16, u32)]) -> Bytes {
        pairs.iter().flat_map(|(id, v)| id.to_be_bytes().into_iter().chain(v.to_be_bytes())).collect::<Vec<u8>>().into()
    }

    #[test]
    fn values_apply_in_order_and_unknown_ones_are_ignored() {
        let mut s = PeerSettings::default();
        s.apply(&payload(&[(INITIAL_WINDOW_SIZE, 10), (0x99, 7), (INITIAL_WINDOW_SIZE, 20), (MAX_FRAME_SIZE, 32_768), (ENABLE_PUSH, 0)]))
            .unwrap();
        assert_eq!(s, PeerSettings { max_frame_size: 32_768, initial_window_size: 20 });
    }

    #[test]
    fn out_of_range_values_are_connection_errors() {
        let mut s = PeerSettings::default();
        for (pair, reason) in [
            ((ENABLE_PUSH, 2), Reason::PROTOCOL_ERROR),
            ((INITIAL_WINDOW_SIZE, 1 << 31), Reason::FLOW_CONTROL_ERROR),
            ((MAX_FRAME_SIZE, 16_383), Reason::PROTOCOL_ERROR),
            ((MAX_FRAME_SIZE, 1 << 24), Reason::PROTOCOL_ERROR),
        ] {
            assert_eq!(s.apply(&payload(&[pair])).unwrap_err().reason, reason, "{pair:?}");
        }
        assert_eq!(s, PeerSettings::default(), "nothing applied");
    }
}
