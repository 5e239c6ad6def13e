//! Flow-control windows (RFC 9113 §5.2, §6.9).

use crate::error::Reason;

/// The largest window (2^31 - 1, §6.9.1).
pub const MAX_WINDOW: i64 = (1 << 31) - 1;

/// A send window: what the client allows the gateway to send. It can go
/// below zero when the client lowers SETTINGS_INITIAL_WINDOW_SIZE (§6.9.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendWindow(i64);

impl SendWindow {
    pub fn new(size: u32) -> Self {
        Self(i64::from(size))
    }

    /// Bytes that may be sent now.
    pub fn available(self) -> usize {
        usize::try_from(self.0).unwrap_or(0)
    }

    pub fn spend(&mut self, n: usize) {
        self.0 -= n as i64;
    }

    /// A WINDOW_UPDATE or a change of the initial size; past 2^31-1 is a FLOW_CONTROL_ERROR.
    pub fn grow(&mut self, by: i64) -> Result<(), Reason> {
        let grown = self.0 + by;
        if grown > MAX_WINDOW {
            return Err(Reason::FLOW_CONTROL_ERROR);
        }
        self.0 = grown;
        Ok(())
    }
}

/// A receive window: what the client may still send, and what the gateway
/// has consumed but not yet given back. It is given back in one
/// WINDOW_UPDATE once half the window is waiting, not per DATA frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecvWindow {
    size: u32,
    open: u32,
    consumed: u32,
}

impl RecvWindow {
    /// A window the client sees as `open` now, to be kept at `size`.
    pub fn new(size: u32, open: u32) -> Self {
        Self { size, open, consumed: 0 }
    }

    /// Received `n` bytes: more than the window is a FLOW_CONTROL_ERROR.
    pub fn receive(&mut self, n: usize) -> Result<(), Reason> {
        let n = u32::try_from(n).map_err(|_| Reason::FLOW_CONTROL_ERROR)?;
        self.open = self.open.checked_sub(n).ok_or(Reason::FLOW_CONTROL_ERROR)?;
        Ok(())
    }

    /// The application consumed `n` bytes; the increment to announce, if it is time.
    pub fn release(&mut self, n: usize) -> Option<u32> {
        self.consumed = self.consumed.saturating_add(u32::try_from(n).unwrap_or(u32::MAX));
        let target = self.size.saturating_sub(self.open);
        let give = self.consumed.min(target);
        if give == 0 || give < self.size / 2 {
            return None;
        }
        self.consumed -= give;
        self.open += give;
        Some(give)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_receive_window_refuses_overruns_and_updates_in_halves() {
        let mut w = RecvWindow::new(100, 100);
        w.receive(60).unwrap();
        assert_eq!(w.release(30), None, "less than half the window waiting");
        assert_eq!(w.release(30), Some(60));
        w.receive(100).unwrap();
        assert_eq!(w.receive(1), Err(Reason::FLOW_CONTROL_ERROR));
        assert_eq!(w.release(100), Some(100));
    }

    #[test]
    fn a_send_window_may_go_negative_but_not_past_the_maximum() {
        let mut w = SendWindow::new(10);
        w.spend(10);
        w.grow(-5).unwrap();
        assert_eq!(w.available(), 0);
        w.grow(20).unwrap();
        assert_eq!(w.available(), 15);
        assert_eq!(w.grow(MAX_WINDOW), Err(Reason::FLOW_CONTROL_ERROR));
    }
}
