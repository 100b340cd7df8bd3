//! Checks that a started peer listens on loopback only (/proc/net/tcp{,6}).

/// Local addresses of LISTEN sockets on `port` that are not loopback, from
/// the text of /proc/net/tcp or /proc/net/tcp6 (hex `ADDR:PORT` columns).
pub fn non_loopback_listeners(table: &str, port: u16) -> Vec<String> {
    const LISTEN: &str = "0A";
    // 127.0.0.0/8 is stored little-endian per 32-bit word: the last byte is 7F.
    let loopback_v4 = |a: &str| a.len() == 8 && a.ends_with("7F");
    let loopback_v6 = |a: &str| {
        a == "00000000000000000000000001000000"
            // ::ffff:127.x.y.z
            || (a.len() == 32 && a.starts_with("0000000000000000FFFF0000") && a.ends_with("7F"))
    };
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (local, state) = (f.get(1)?, f.get(3)?);
            let (addr, p) = local.split_once(':')?;
            let p = u16::from_str_radix(p, 16).ok()?;
            (p == port && *state == LISTEN && !loopback_v4(addr) && !loopback_v6(addr))
                .then(|| addr.to_string())
        })
        .collect()
}

/// Fails when anything listens on `port` beyond loopback.
pub fn ensure_loopback_only(name: &str, port: u16) -> anyhow::Result<()> {
    let mut bad = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        if let Ok(text) = std::fs::read_to_string(table) {
            bad.extend(non_loopback_listeners(&text, port));
        }
    }
    if !bad.is_empty() {
        anyhow::bail!("{name} listens on port {port} beyond loopback (hex addresses {bad:?})");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0
   1: 00000000:1F91 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1 0 100 0 0 10 0
   2: 0100007F:1F91 0100007F:C000 01 00000000:00000000 00:00000000 00000000     0        0 3 1 0 100 0 0 10 0
";
    const TCP6: &str =
        "  sl  local_address                         remote_address                        st
   0: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A
   1: 00000000000000000000000000000000:1F92 00000000000000000000000000000000:0000 0A
";

    #[test]
    fn finds_wildcard_listeners_only() {
        assert!(non_loopback_listeners(TCP, 0x1F90).is_empty());
        assert_eq!(non_loopback_listeners(TCP, 0x1F91), vec!["00000000"]);
        assert!(non_loopback_listeners(TCP6, 0x1F90).is_empty());
        assert_eq!(non_loopback_listeners(TCP6, 0x1F92).len(), 1);
        assert!(non_loopback_listeners(TCP, 9).is_empty());
    }
}
