//! Galactic discovery: how a VPCService's endpoints follow from Galactic's
//! VPCs and VPCAttachments.
//!
//! Pure functions only — the same code runs in service-discovery (against
//! the API server's objects) and in the gateway's standalone mode (against
//! objects read from files), so both resolve a service identically.
#![forbid(unsafe_code)]

mod address;
mod resolve;
mod selector;

pub use address::{AddressError, interface_ip};
pub use resolve::{Resolution, ResolveProblem, attachment_locality, family_allows, resolve_endpoints};
pub use selector::{SelectorError, selector_matches};
