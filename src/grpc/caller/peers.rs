//! The peers an identity header is believed from: ranges of addresses
//! (CIDR), matched against the TCP peer of the connection a call came on.
//! A sidecar proxy connects to the gateway from the pod's own loopback
//! interface, so the default is the loopback ranges; a client that reaches
//! the listener any other way cannot name itself.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// The default of `--caller-identity-header-trusted-peers`: where a
/// sidecar proxy in the same pod connects from.
pub(crate) const DEFAULT_TRUSTED_PEERS: &str = "127.0.0.0/8,::1/128";

/// A range of addresses: a network and the length of its prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Whether `addr` is in the range. An IPv4-mapped IPv6 address
    /// (`::ffff:127.0.0.1`, as a dual-stack socket reports an IPv4 peer) is
    /// its IPv4 address.
    pub(super) fn contains(&self, addr: IpAddr) -> bool {
        match (self.network, addr.to_canonical()) {
            (IpAddr::V4(network), IpAddr::V4(addr)) => {
                (u32::from(network) ^ u32::from(addr)) & v4_mask(self.prefix) == 0
            }
            (IpAddr::V6(network), IpAddr::V6(addr)) => {
                (u128::from(network) ^ u128::from(addr)) & v6_mask(self.prefix) == 0
            }
            _ => false,
        }
    }
}

fn v4_mask(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

fn v6_mask(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

impl FromStr for Cidr {
    type Err = String;

    /// `10.0.0.0/8`, `fd00::/8`; a bare address is the one host. An
    /// IPv4-mapped range (`::ffff:10.0.0.0/104`) is read as its IPv4 range,
    /// since peers are compared as IPv4. A range with bits set past its
    /// prefix (`10.1.2.3/8`) is refused: it is most likely a typing slip,
    /// and which range was meant is not for the gateway to guess.
    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| {
            format!("{s:?} is not an address or a CIDR range (e.g. 10.0.0.0/8, fd00::/8)")
        })?;
        let longest: u8 = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => longest,
            Some(digits) => digits
                .parse::<u8>()
                .ok()
                .filter(|p| digits.bytes().all(|b| b.is_ascii_digit()) && *p <= longest)
                .ok_or_else(|| format!("{s:?}: the prefix length must be 0 to {longest}"))?,
        };
        let (network, prefix) = match addr {
            IpAddr::V6(v6) if prefix >= 96 => match v6.to_ipv4_mapped() {
                Some(v4) => (IpAddr::V4(v4), prefix - 96),
                None => (addr, prefix),
            },
            _ => (addr, prefix),
        };
        let masked = match network {
            IpAddr::V4(v4) => IpAddr::V4(Ipv4Addr::from(u32::from(v4) & v4_mask(prefix))),
            IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & v6_mask(prefix))),
        };
        if masked != network {
            return Err(format!(
                "{s:?} has bits set past its prefix length (the range would be {masked}/{prefix})"
            ));
        }
        Ok(Self { network, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// The peers whose identity header is believed: a list of ranges, none
/// empty.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustedPeers(Vec<Cidr>);

impl TrustedPeers {
    /// Whether a peer at `addr` is one of them.
    pub fn contains(&self, addr: IpAddr) -> bool {
        self.0.iter().any(|range| range.contains(addr))
    }
}

impl Default for TrustedPeers {
    /// The loopback ranges ([`DEFAULT_TRUSTED_PEERS`]).
    fn default() -> Self {
        Self(vec![
            Cidr {
                network: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 0)),
                prefix: 8,
            },
            Cidr {
                network: IpAddr::V6(Ipv6Addr::LOCALHOST),
                prefix: 128,
            },
        ])
    }
}

impl FromStr for TrustedPeers {
    type Err = String;

    /// Comma-separated ranges, spaces around them ignored. An empty list
    /// is refused: it would make the header useless without saying so.
    fn from_str(s: &str) -> Result<Self, String> {
        if s.trim().is_empty() {
            return Err(
                "names no peer: the header would be ignored from everyone (leave the flag out \
                 for the loopback ranges, where a sidecar connects from)"
                    .to_owned(),
            );
        }
        s.split(',')
            .map(|range| range.trim().parse())
            .collect::<Result<_, _>>()
            .map(Self)
    }
}

impl fmt::Display for TrustedPeers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, range) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{range}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn cidr(s: &str) -> Cidr {
        s.parse().unwrap()
    }

    #[test]
    fn ranges_hold_their_addresses_and_no_others() {
        let ten = cidr("10.0.0.0/8");
        assert!(ten.contains(ip("10.0.0.0")) && ten.contains(ip("10.255.255.255")));
        assert!(!ten.contains(ip("11.0.0.0")) && !ten.contains(ip("9.255.255.255")));
        assert!(!ten.contains(ip("::ffff:11.0.0.1")));
        let odd = cidr("192.168.1.128/25");
        assert!(odd.contains(ip("192.168.1.200")) && !odd.contains(ip("192.168.1.127")));
        let host = cidr("192.168.0.1");
        assert_eq!(host.to_string(), "192.168.0.1/32");
        assert!(host.contains(ip("192.168.0.1")) && !host.contains(ip("192.168.0.2")));
        let everything = cidr("0.0.0.0/0");
        assert!(everything.contains(ip("203.0.113.9")) && !everything.contains(ip("::1")));
        let ula = cidr("fd00::/8");
        assert!(ula.contains(ip("fd12:3456::1")) && !ula.contains(ip("fe80::1")));
        assert!(!ula.contains(ip("10.0.0.1")));
        assert!(cidr("::/0").contains(ip("2001:db8::1")));
        assert_eq!(cidr("::1").to_string(), "::1/128");
    }

    #[test]
    fn ipv4_mapped_addresses_are_their_ipv4_address() {
        let peers = TrustedPeers::default();
        assert!(peers.contains(ip("127.0.0.1")));
        assert!(peers.contains(ip("127.9.8.7")));
        assert!(peers.contains(ip("::1")));
        assert!(peers.contains(ip("::ffff:127.0.0.1")));
        assert!(!peers.contains(ip("::ffff:10.0.0.1")));
        assert!(!peers.contains(ip("10.0.0.1")));
        assert!(!peers.contains(ip("::2")));
        // A mapped range is its IPv4 range.
        let mapped = cidr("::ffff:10.0.0.0/104");
        assert_eq!(mapped, cidr("10.0.0.0/8"));
        assert!(mapped.contains(ip("10.1.2.3")) && mapped.contains(ip("::ffff:10.1.2.3")));
    }

    #[test]
    fn the_default_is_the_documented_one() {
        assert_eq!(
            DEFAULT_TRUSTED_PEERS.parse::<TrustedPeers>(),
            Ok(TrustedPeers::default())
        );
        assert_eq!(TrustedPeers::default().to_string(), DEFAULT_TRUSTED_PEERS);
    }

    #[test]
    fn bad_ranges_are_refused_with_what_was_written() {
        let list: TrustedPeers = " 10.0.0.0/8 , 192.168.0.1,fd00::/8 ".parse().unwrap();
        assert_eq!(list.to_string(), "10.0.0.0/8,192.168.0.1/32,fd00::/8");
        for (bad, says) in [
            ("", "names no peer"),
            (" ", "names no peer"),
            ("10.0.0.0/8,", "\"\" is not an address"),
            ("localhost", "\"localhost\" is not an address"),
            ("10.0.0.0/33", "0 to 32"),
            ("::/129", "0 to 128"),
            ("10.0.0.0/", "0 to 32"),
            ("10.0.0.0/+8", "0 to 32"),
            ("10.0.0.0/8/8", "0 to 32"),
            ("10.1.2.3/8", "the range would be 10.0.0.0/8"),
            ("fd00::1/8", "the range would be fd00::/8"),
            ("10.0.0.0/8;127.0.0.1", "0 to 32"),
        ] {
            let err = bad.parse::<TrustedPeers>().unwrap_err();
            assert!(err.contains(says), "{bad:?}: {err}");
        }
    }
}
