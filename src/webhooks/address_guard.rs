//! Which addresses outbound requests to customers may reach: never loopback, private,
//! link-local, reserved or multicast ones (nor IPv6 forms that embed such an IPv4 address),
//! unless configuration allows them. Checked on every address a name resolves to and on every
//! IP literal, on the first URL and on each redirect hop.

use ipnet::IpNet;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::sync::Arc;

use super::client::WebhookError;

/// The rule: private addresses are refused unless all are allowed or one of `allowed` holds it.
#[derive(Debug, Clone, Default)]
pub struct AddressGuard {
    allow_all_private: bool,
    allowed: Vec<IpNet>,
}

impl AddressGuard {
    pub fn new(allow_all_private: bool, allowed: Vec<IpNet>) -> AddressGuard {
        AddressGuard { allow_all_private, allowed }
    }

    /// Whether names must go through the filtering resolver at all.
    pub fn filters(&self) -> bool {
        !self.allow_all_private
    }

    pub fn permits(&self, ip: IpAddr) -> bool {
        self.allow_all_private || !is_private(ip) || self.allowed.iter().any(|net| net.contains(&canonical(ip)))
    }

    /// Checks a URL before it is requested (the first one and each redirect's): http(s) only,
    /// and an IP-literal host must be permitted (names are checked when resolved).
    pub fn check_url(&self, url: &url::Url) -> Result<(), WebhookError> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(WebhookError::BadUrl(format!("{} is not http(s)", url.scheme())));
        }
        let literal = match url.host() {
            Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
            Some(url::Host::Domain(_)) => None,
            None => return Err(WebhookError::BadUrl(format!("{url} has no host"))),
        };
        match literal {
            Some(ip) if !self.permits(ip) => Err(WebhookError::PrivateAddress(ip.to_string())),
            _ => Ok(()),
        }
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is, so `127.0.0.1/32` also allows
/// `::ffff:127.0.0.1`.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Loopback, private, link-local, shared (CGNAT), reserved, benchmarking, documentation,
/// broadcast and multicast addresses, and IPv6 addresses that embed one of them.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_private_v4(v4),
        IpAddr::V6(v6) => is_private_v6(v6),
    }
}

fn is_private_v4(v4: Ipv4Addr) -> bool {
    let [a, b, c, _] = v4.octets();
    v4.is_loopback()
        || v4.is_private()
        || v4.is_link_local()
        || v4.is_unspecified()
        || v4.is_multicast()
        || v4.is_documentation()
        || a == 0 // "this network", 0.0.0.0/8
        || a == 100 && (64..128).contains(&b) // shared address space (carrier-grade NAT), 100.64.0.0/10
        || a == 192 && b == 0 && c == 0 // IETF protocol assignments, 192.0.0.0/24
        || a == 198 && (b & 0xfe) == 18 // benchmarking, 198.18.0.0/15
        || a >= 240 // reserved 240.0.0.0/4, broadcast included
}

fn is_private_v6(v6: Ipv6Addr) -> bool {
    let s = v6.segments();
    v6.is_loopback()
        || v6.is_unspecified()
        || v6.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00 // unique local, fc00::/7
        || (s[0] & 0xffc0) == 0xfe80 // link-local, fe80::/10
        || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated), fec0::/10
        || s[0] == 0x2001 && s[1] == 0x0db8 // documentation, 2001:db8::/32
        || s[0] == 0x0064 && s[1] == 0xff9b && s[2] == 0x0001 // local-use NAT64, 64:ff9b:1::/48
        || embedded_v4(v6).is_some_and(is_private_v4)
}

/// The IPv4 address carried inside an IPv6 one: IPv4-mapped `::ffff:a.b.c.d`, IPv4-compatible
/// `::a.b.c.d`, NAT64 `64:ff9b::a.b.c.d`, 6to4 `2002:aabb:ccdd::`, Teredo's client address.
fn embedded_v4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = v6.segments();
    let v4 = |hi: u16, lo: u16| Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
    if let Some(mapped) = v6.to_ipv4_mapped() {
        return Some(mapped);
    }
    match s {
        [0, 0, 0, 0, 0, 0, hi, lo] => Some(v4(hi, lo)),
        [0x0064, 0xff9b, 0, 0, 0, 0, hi, lo] => Some(v4(hi, lo)),
        [0x2002, hi, lo, ..] => Some(v4(hi, lo)),
        // Teredo (2001:0::/32) carries the client's address with every bit flipped.
        [0x2001, 0, _, _, _, _, hi, lo] => Some(v4(!hi, !lo)),
        _ => None,
    }
}

/// Resolves names and drops the addresses the guard refuses, so a public-looking name that
/// points inside (or `localhost`) is refused too.
pub struct GuardedResolver(pub Arc<AddressGuard>);

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let guard = self.0.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let addrs: Vec<SocketAddr> = tokio::task::spawn_blocking(move || (host.as_str(), 0).to_socket_addrs().map(|a| a.collect()))
                .await
                .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)??;
            let permitted: Vec<SocketAddr> = addrs.into_iter().filter(|a| guard.permits(a.ip())).collect();
            if permitted.is_empty() {
                return Err(Box::new(WebhookError::PrivateAddress(name.as_str().to_string())) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(permitted.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn private(s: &str) -> bool {
        is_private(s.parse().unwrap())
    }

    #[test]
    fn refuses_every_inside_or_reserved_range() {
        for ip in [
            "127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "0.0.0.0", "0.1.2.3", "100.64.0.1",
            "192.0.0.8", "198.18.0.1", "198.19.255.255", "240.0.0.1", "255.255.255.255", "224.0.0.1", "239.1.2.3",
            "192.0.2.1", "::1", "::", "fc00::1", "fd12::1", "fe80::1", "fec0::1", "ff02::1", "2001:db8::1",
            "::ffff:127.0.0.1", "::ffff:169.254.169.254", "::127.0.0.1", "::10.0.0.1", "64:ff9b::a9fe:a9fe",
            "64:ff9b::7f00:1", "64:ff9b:1::1", "2002:7f00:1::", "2002:a9fe:a9fe::1", "2001:0:4136:e378:8000:63bf:80ff:fffe",
        ] {
            assert!(private(ip), "{ip} should be refused");
        }
    }

    #[test]
    fn lets_public_addresses_through() {
        for ip in ["8.8.8.8", "1.1.1.1", "198.20.0.1", "100.128.0.1", "2606:4700::1111", "64:ff9b::808:808", "2002:808:808::1", "::ffff:8.8.8.8"] {
            assert!(!private(ip), "{ip} should be allowed");
        }
    }

    #[test]
    fn configured_networks_are_allowed_in_any_form() {
        let guard = AddressGuard::new(false, vec!["127.0.0.1/32".parse().unwrap()]);
        assert!(guard.permits("127.0.0.1".parse().unwrap()));
        assert!(guard.permits("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!guard.permits("127.0.0.2".parse().unwrap()));
        assert!(!guard.permits("169.254.169.254".parse().unwrap()));
        assert!(AddressGuard::new(true, vec![]).permits("10.0.0.1".parse().unwrap()));
    }
}
