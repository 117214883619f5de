//! Which addresses a webhook may reach. Private, link-local, metadata, multicast and
//! reserved ranges never; loopback only where the local server was started with
//! `--allow-loopback-webhooks`. IPv4 written inside IPv6 (mapped, NAT64) is judged as the
//! IPv4 address it carries.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// What a sender allows besides public addresses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AddressPolicy {
    /// Loopback addresses (127/8, ::1), and plain `http` to them: a local server started
    /// with `--allow-loopback-webhooks`. Never on AWS.
    pub allow_loopback: bool,
}

/// Why `ip` may not be reached under `policy`, or `None` if it may.
pub fn forbidden(ip: IpAddr, policy: AddressPolicy) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4, policy),
        IpAddr::V6(v6) => forbidden_v6(v6, policy),
    }
}

fn forbidden_v4(ip: Ipv4Addr, policy: AddressPolicy) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    if ip.is_loopback() {
        return (!policy.allow_loopback).then_some("a loopback address");
    }
    let why = match (a, b, c) {
        (169, 254, _) => "a link-local address (this includes the instance metadata service)",
        (10, _, _) => "a private address (10.0.0.0/8)",
        (172, 16..=31, _) => "a private address (172.16.0.0/12)",
        (192, 168, _) => "a private address (192.168.0.0/16)",
        (100, 64..=127, _) => "a shared address (100.64.0.0/10)",
        (0, _, _) => "an unspecified address (0.0.0.0/8)",
        (192, 0, 0) => "an IETF protocol address (192.0.0.0/24)",
        (198, 18..=19, _) => "a benchmarking address (198.18.0.0/15)",
        (224..=239, _, _) => "a multicast address",
        (240..=255, _, _) => "a reserved address",
        _ => return None,
    };
    Some(why)
}

fn forbidden_v6(ip: Ipv6Addr, policy: AddressPolicy) -> Option<&'static str> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return forbidden_v4(v4, policy);
    }
    let segments = ip.segments();
    // NAT64 (64:ff9b::/96) reaches the IPv4 address in its last 32 bits.
    if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        let [.., hi, lo] = segments;
        return forbidden_v4(
            Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo)),
            policy,
        );
    }
    if ip.is_loopback() {
        return (!policy.allow_loopback).then_some("a loopback address");
    }
    let why = match segments[0] {
        _ if ip.is_unspecified() => "an unspecified address",
        0xfc00..=0xfdff => {
            "a unique local address (fc00::/7, the metadata service's fd00:ec2::254 among them)"
        }
        0xfe80..=0xfebf => "a link-local address (fe80::/10)",
        0xff00..=0xffff => "a multicast address",
        // IPv4-compatible (::a.b.c.d, deprecated) and the discard prefix.
        0 if segments[1..6] == [0, 0, 0, 0, 0] => "an IPv4-compatible address",
        0x100 if segments[1..4] == [0, 0, 0] => "a discard address (100::/64)",
        _ => return None,
    };
    Some(why)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no(text: &str) -> bool {
        forbidden(text.parse().expect("an address"), AddressPolicy::default()).is_some()
    }

    #[test]
    fn metadata_private_and_link_local_addresses_are_refused() {
        for ip in [
            "169.254.169.254",
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "127.0.0.1",
            "0.0.0.0",
            "100.64.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fd00::1",
            "fd00:ec2::254",
            "fe80::1",
            "::ffff:169.254.169.254",
            "::ffff:10.1.2.3",
            "64:ff9b::a9fe:a9fe",
            "::a9fe:a9fe",
        ] {
            assert!(no(ip), "{ip} must be refused");
        }
        for ip in [
            "93.184.216.34",
            "172.32.0.1",
            "1.1.1.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(!no(ip), "{ip} is public");
        }
    }

    #[test]
    fn loopback_only_with_the_local_flag() {
        let local = AddressPolicy {
            allow_loopback: true,
        };
        assert_eq!(forbidden("127.0.0.1".parse().expect("ip"), local), None);
        assert_eq!(forbidden("::1".parse().expect("ip"), local), None);
        assert!(forbidden("169.254.169.254".parse().expect("ip"), local).is_some());
        assert!(forbidden("10.0.0.1".parse().expect("ip"), local).is_some());
    }
}
