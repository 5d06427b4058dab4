//! [`IpNet`]: CIDR networks for `--trusted-proxy`.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// An IP network in CIDR notation (`10.0.0.0/8`, `2001:db8::/32`); a bare address is a /32
/// or a /128. Parsed from `--trusted-proxy`.
///
/// Host bits must be zero ("10.0.0.1/8" is refused): such a value is more likely a typo than
/// a deliberate network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct IpNet {
    network: IpAddr,
    prefix_len: u8,
}

/// Why a string is not an [`IpNet`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IpNetError(String);

impl fmt::Display for IpNetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for IpNetError {}

impl IpNet {
    /// The network `network/prefix_len`.
    ///
    /// # Errors
    ///
    /// A prefix longer than the address (32 or 128 bits), or host bits set in `network`.
    pub(crate) fn new(network: IpAddr, prefix_len: u8) -> Result<Self, IpNetError> {
        let max = match network {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        };
        if prefix_len > max {
            return Err(IpNetError(format!(
                "prefix /{prefix_len} is longer than {max} bits"
            )));
        }
        let net = Self {
            network,
            prefix_len,
        };
        let masked = net.masked_network();
        if masked != network {
            return Err(IpNetError(format!(
                "{network}/{prefix_len} has host bits set; the network is {masked}/{prefix_len}"
            )));
        }
        Ok(net)
    }

    /// Whether `ip` is in this network. IPv4-mapped IPv6 addresses count as the IPv4 address
    /// they map, both ways: "10.0.0.0/8" contains `::ffff:10.1.2.3`, and "`::ffff:0:0/96`"
    /// contains every IPv4 address.
    #[must_use]
    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip.to_canonical()) {
            (IpAddr::V4(network), IpAddr::V4(ip)) => {
                u32::from(ip) & v4_mask(self.prefix_len) == u32::from(network)
            }
            (IpAddr::V6(network), IpAddr::V6(ip)) => {
                u128::from(ip) & v6_mask(self.prefix_len) == u128::from(network)
            }
            (IpAddr::V6(network), IpAddr::V4(ip)) => {
                u128::from(ip.to_ipv6_mapped()) & v6_mask(self.prefix_len) == u128::from(network)
            }
            (IpAddr::V4(_), IpAddr::V6(_)) => false,
        }
    }

    /// The network address.
    #[must_use]
    #[cfg(test)]
    pub(crate) fn network(&self) -> IpAddr {
        self.network
    }

    /// The prefix length in bits.
    #[must_use]
    #[cfg(test)]
    pub(crate) fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    fn masked_network(&self) -> IpAddr {
        match self.network {
            IpAddr::V4(v4) => IpAddr::V4(Ipv4Addr::from(u32::from(v4) & v4_mask(self.prefix_len))),
            IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & v6_mask(self.prefix_len))),
        }
    }
}

/// The netmask of a /`prefix_len` (at most 32) as an integer.
fn v4_mask(prefix_len: u8) -> u32 {
    u32::MAX
        .checked_shl(32 - u32::from(prefix_len))
        .unwrap_or(0)
}

/// The netmask of a /`prefix_len` (at most 128) as an integer.
fn v6_mask(prefix_len: u8) -> u128 {
    u128::MAX
        .checked_shl(128 - u32::from(prefix_len))
        .unwrap_or(0)
}

impl FromStr for IpNet {
    type Err = IpNetError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr = address.parse().map_err(|_| {
            IpNetError(format!(
                "'{text}' is not an IP address or network like 10.0.0.0/8 or 2001:db8::/32"
            ))
        })?;
        let prefix_len = match prefix {
            None => match network {
                IpAddr::V4(_) => 32,
                IpAddr::V6(_) => 128,
            },
            // u8::from_str takes a leading '+'; a prefix length is digits only.
            Some(digits)
                if !digits.is_empty()
                    && digits.len() <= 3
                    && digits.bytes().all(|b| b.is_ascii_digit()) =>
            {
                digits
                    .parse()
                    .map_err(|_| IpNetError(format!("'{text}': bad prefix length")))?
            }
            Some(_) => return Err(IpNetError(format!("'{text}': bad prefix length"))),
        };
        Self::new(network, prefix_len)
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix_len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn net(text: &str) -> IpNet {
        text.parse().unwrap()
    }

    #[test]
    fn cidr_parsing() {
        assert_eq!(net("10.0.0.0/8").to_string(), "10.0.0.0/8");
        assert_eq!(net("192.0.2.1").to_string(), "192.0.2.1/32");
        assert_eq!(net("::1").to_string(), "::1/128");
        assert_eq!(net("::1/128"), net("::1"));
        assert_eq!(net("2001:db8::/32").prefix_len(), 32);
        assert_eq!(net("0.0.0.0/0").network(), ip("0.0.0.0"));
        for bad in [
            "",
            "abc",
            "10.0.0.0/",
            "/8",
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/+8",
            "10.0.0.0/-1",
            "10.0.0.0/8/8",
            "10.0.0.0/ 8",
            "10.0.0.1/8",
            "2001:db8::1/32",
        ] {
            assert!(bad.parse::<IpNet>().is_err(), "{bad:?} parsed");
        }
        let error = "10.0.0.1/8".parse::<IpNet>().unwrap_err().to_string();
        assert!(error.contains("10.0.0.0/8"), "{error}");
    }

    #[test]
    fn cidr_membership() {
        let ten = net("10.0.0.0/8");
        assert!(ten.contains(ip("10.0.0.0")));
        assert!(ten.contains(ip("10.255.255.255")));
        assert!(!ten.contains(ip("11.0.0.0")));
        assert!(ten.contains(ip("::ffff:10.1.2.3")));
        assert!(!ten.contains(ip("::1")));
        assert!(net("0.0.0.0/0").contains(ip("203.0.113.9")));
        assert!(!net("0.0.0.0/0").contains(ip("2001:db8::1")));
        let host = net("192.0.2.1");
        assert!(host.contains(ip("192.0.2.1")));
        assert!(!host.contains(ip("192.0.2.2")));
        let doc = net("2001:db8::/32");
        assert!(doc.contains(ip("2001:db8:ffff::1")));
        assert!(!doc.contains(ip("2001:db9::1")));
        assert!(net("::/0").contains(ip("2001:db8::1")));
        assert!(net("::1/128").contains(ip("::1")));
        assert!(net("::ffff:0:0/96").contains(ip("192.0.2.1")));
    }
}
