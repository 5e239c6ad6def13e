//! Galactic's identifiers on the wire.
//!
//! A VPC's identifier is 12 hex digits and an attachment's 4; Galactic prints
//! them in base62 (alphabet `0-9a-zA-Z`, most significant digit first) inside
//! EndpointSlice labels and the names of VRF devices. These functions must
//! agree with Galactic bit for bit, hence the test vectors from its docs.

/// The base62 alphabet Galactic uses.
const ALPHABET: &[u8; 62] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

/// Width the VPC part of a VRF device name is zero-padded to.
const VRF_VPC_WIDTH: usize = 9;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentifierError {
    #[error("identifier {0:?} is not hexadecimal")]
    NotHex(String),
    #[error("identifier {0:?} is empty or longer than 16 hex digits")]
    Length(String),
}

/// The base62 form of a hex identifier: `0a1b2c3d4e5f` → `39D3dguP`.
pub fn base62(hex: &str) -> Result<String, IdentifierError> {
    if hex.is_empty() || hex.len() > 16 {
        return Err(IdentifierError::Length(hex.to_owned()));
    }
    let mut n = u64::from_str_radix(hex, 16).map_err(|_| IdentifierError::NotHex(hex.to_owned()))?;
    if n == 0 {
        return Ok("0".to_owned());
    }
    let mut digits = Vec::with_capacity(11);
    while n > 0 {
        digits.push(ALPHABET[(n % 62) as usize]);
        n /= 62;
    }
    digits.reverse();
    Ok(digits.into_iter().map(char::from).collect())
}

/// The VRF device of a VPC: `G` + base62(identifier) zero-padded to 9 + `V`
/// (`0a1b2c3d4e5f` → `G039D3dguPV`). Always 11 bytes, within IFNAMSIZ.
pub fn vrf_device_name(vpc_identifier: &str) -> Result<String, IdentifierError> {
    Ok(format!("G{:0>width$}V", base62(vpc_identifier)?, width = VRF_VPC_WIDTH))
}

/// The `galactic.datum.net/tenant-id` label value of a VPC and attachment:
/// `<vpc base62>-<attachment base62>`.
pub fn tenant_id(vpc_identifier: &str, attachment_identifier: &str) -> Result<String, IdentifierError> {
    Ok(format!("{}-{}", base62(vpc_identifier)?, base62(attachment_identifier)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base62_matches_galactic_vectors() {
        assert_eq!(base62("0a1b2c3d4e5f").unwrap(), "39D3dguP");
        assert_eq!(base62("1f2e").unwrap(), "24K");
        assert_eq!(base62("0000").unwrap(), "0");
        assert_eq!(base62("ffffffffffff").unwrap(), "1hVwxnaA7");
    }

    #[test]
    fn vrf_device_name_matches_galactic_vector() {
        assert_eq!(vrf_device_name("0a1b2c3d4e5f").unwrap(), "G039D3dguPV");
        // The largest 12-digit identifier still fits the padding width.
        assert_eq!(vrf_device_name("ffffffffffff").unwrap().len(), 11);
    }

    #[test]
    fn tenant_id_joins_both_parts() {
        assert_eq!(tenant_id("0a1b2c3d4e5f", "1f2e").unwrap(), "39D3dguP-24K");
    }

    #[test]
    fn rejects_non_hex_and_bad_lengths() {
        assert_eq!(base62("xyz"), Err(IdentifierError::NotHex("xyz".into())));
        assert!(matches!(base62(""), Err(IdentifierError::Length(_))));
        assert!(matches!(base62("00000000000000000"), Err(IdentifierError::Length(_))));
    }
}
