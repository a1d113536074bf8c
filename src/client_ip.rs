//! Who the client is, by address: the peer, or — when the peer is a trusted proxy — the last
//! `X-Forwarded-For` hop that is not itself a trusted proxy (API.md, "Starting it"). Shared by
//! the stream limiter and the sign-in throttle.

use std::net::IpAddr;

use actix_web::HttpRequest;

/// The client address: the peer, or — when the peer is a trusted proxy — the last
/// `X-Forwarded-For` address that is not itself a trusted proxy. An unparsable entry stops the
/// walk (nothing left of it can be believed) and the peer is used.
pub fn client_ip<'a>(
    peer: IpAddr,
    forwarded_for: impl Iterator<Item = &'a str>,
    trusted: &[IpAddr],
) -> IpAddr {
    let peer = canonical(peer);
    if !trusted.iter().any(|t| canonical(*t) == peer) {
        return peer;
    }
    let hops: Vec<&str> = forwarded_for.flat_map(|h| h.split(',')).collect();
    for hop in hops.iter().rev() {
        let Ok(ip) = hop.trim().parse::<IpAddr>() else { return peer };
        let ip = canonical(ip);
        if !trusted.iter().any(|t| canonical(*t) == ip) {
            return ip;
        }
    }
    peer
}

/// IPv4-mapped IPv6 addresses count as the IPv4 address they carry.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The client address of `req` (see [`client_ip`]).
pub fn of_request(req: &HttpRequest, trusted: &[IpAddr]) -> IpAddr {
    // Without a peer address (only in unit-test requests) everyone is 0.0.0.0.
    let peer = req.peer_addr().map_or(IpAddr::from([0, 0, 0, 0]), |a| a.ip());
    let xff = req.headers().get_all("x-forwarded-for").filter_map(|v| v.to_str().ok());
    client_ip(peer, xff, trusted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("a test address")
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted = [ip("127.0.0.1"), ip("10.0.0.1")];
        let xff = ["1.1.1.1, 2.2.2.2"];
        assert_eq!(client_ip(ip("9.9.9.9"), xff.into_iter(), &trusted), ip("9.9.9.9"));
        assert_eq!(client_ip(ip("127.0.0.1"), xff.into_iter(), &trusted), ip("2.2.2.2"));
        // Trusted hops on the right are skipped; the client cannot pick its own address.
        let chain = ["6.6.6.6, 3.3.3.3", "10.0.0.1"];
        assert_eq!(client_ip(ip("127.0.0.1"), chain.into_iter(), &trusted), ip("3.3.3.3"));
        assert_eq!(client_ip(ip("127.0.0.1"), ["junk"].into_iter(), &trusted), ip("127.0.0.1"));
        assert_eq!(client_ip(ip("127.0.0.1"), [].into_iter(), &trusted), ip("127.0.0.1"));
        assert_eq!(client_ip(ip("::ffff:127.0.0.1"), xff.into_iter(), &trusted), ip("2.2.2.2"));
    }
}
