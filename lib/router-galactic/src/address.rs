use std::net::IpAddr;

/// Why an interface address could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("interface address {0:?} is neither an IP nor an IP/prefix")]
pub struct AddressError(pub String);

/// The endpoint IP of an attachment interface address. Galactic writes them
/// in CIDR form (`10.1.1.1/24`, `2001:10:1:1::1/64`): the host part is the
/// interface's own address, the prefix only says which network it is on.
pub fn interface_ip(address: &str) -> Result<IpAddr, AddressError> {
    let address = address.trim();
    if let Ok(net) = address.parse::<ipnet::IpNet>() {
        return Ok(net.addr());
    }
    address.parse::<IpAddr>().map_err(|_| AddressError(address.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_the_host_part_of_cidr_addresses() {
        assert_eq!(interface_ip("10.1.1.1/24").unwrap().to_string(), "10.1.1.1");
        assert_eq!(interface_ip("2001:10:1:1::1/64").unwrap().to_string(), "2001:10:1:1::1");
        assert_eq!(interface_ip("127.0.0.11").unwrap().to_string(), "127.0.0.11");
    }

    #[test]
    fn rejects_garbage() {
        assert!(interface_ip("10.1.1/24").is_err());
        assert!(interface_ip("galactic0").is_err());
    }
}
