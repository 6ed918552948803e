//! Listening sockets: SO_REUSEPORT so each worker accepts on its own socket, and nobody else's.
//!
//! SO_REUSEPORT lets any process of the same user join a port's group, and the kernel then
//! splits connections between the two configurations. Reuse must stay between certgate's own
//! workers, so a group is bound in three steps:
//!
//! 1. a probe bind without SO_REUSEPORT fails with "address in use" if anything listens on the
//!    address (or an overlapping wildcard), reuse-port group or not, as nginx's bind fails;
//! 2. the probe is closed and the workers' sockets are bound with SO_REUSEPORT;
//! 3. the kernel's table of listening sockets must list no socket on the address but ours:
//!    this closes the window between 1 and 2 when two processes start at the same instant.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;

use socket2::{Domain, Protocol, Socket, Type};

/// Accept queue length; the kernel caps it at net.core.somaxconn.
const BACKLOG: i32 = 4096;

/// Binds `count` listening sockets on `addr` sharing one SO_REUSEPORT group that no other
/// process belongs to.
///
/// # Errors
/// `AddrInUse` when another process listens on `addr` (or joined while this one bound); any
/// other error of socket, bind or listen.
pub fn bind_group(addr: SocketAddr, count: usize) -> io::Result<Vec<std::net::TcpListener>> {
    let mut addr = addr;
    if addr.port() != 0 {
        drop(socket(addr, false)?);
    }
    let mut group = Vec::with_capacity(count);
    for _ in 0..count {
        let s = socket(addr, true)?;
        s.listen(BACKLOG)?;
        let s = std::net::TcpListener::from(s);
        // Port 0: the kernel chose one for the first socket; the others join it.
        addr = s.local_addr()?;
        group.push(s);
    }
    alone(addr, &group)?;
    Ok(group)
}

/// Completes a group taken over from a running certgate (`run --upgrade`) to `count` sockets:
/// extra sockets join the inherited SO_REUSEPORT group (no probe: the address is ours), and
/// the inherited ones are kept whatever their number, so nothing queued in them is lost.
///
/// # Errors
/// `AddrInUse` when a process other than the two certgates listens on `addr`; any error of
/// socket, bind or listen.
pub fn join_group(
    addr: SocketAddr,
    mut group: Vec<std::net::TcpListener>,
    count: usize,
) -> io::Result<Vec<std::net::TcpListener>> {
    while group.len() < count {
        let s = socket(addr, true)?;
        s.listen(BACKLOG)?;
        group.push(std::net::TcpListener::from(s));
    }
    alone(addr, &group)?;
    Ok(group)
}

/// Fails with `AddrInUse` when a socket other than `group` listens on `addr`.
fn alone(addr: SocketAddr, group: &[std::net::TcpListener]) -> io::Result<()> {
    let ours: Vec<u64> = group.iter().map(inode).collect::<io::Result<_>>()?;
    match listening_inodes(addr) {
        Some(table) if table.iter().any(|i| !ours.contains(i)) => Err(in_use()),
        _ => Ok(()),
    }
}

/// A socket bound to `addr`: with SO_REUSEPORT for the workers, without for the probe.
fn socket(addr: SocketAddr, reuse_port: bool) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // SO_REUSEADDR only lets a restart bind while old connections linger in TIME_WAIT; it never
    // lets two sockets listen on one address.
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(reuse_port)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into()).map_err(|e| {
        if e.kind() == io::ErrorKind::AddrInUse {
            in_use()
        } else {
            e
        }
    })?;
    Ok(socket)
}

fn in_use() -> io::Error {
    io::Error::new(
        io::ErrorKind::AddrInUse,
        "address in use: another process listens on it (stop it, or choose another address)",
    )
}

fn inode(listener: &std::net::TcpListener) -> io::Result<u64> {
    // SAFETY: fstat on a descriptor we own, into a zeroed stat the kernel fills.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(listener.as_raw_fd(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st.st_ino)
}

/// The inodes of every socket listening on exactly `addr`, from /proc/net/tcp or tcp6; `None`
/// when the table cannot be read (no /proc): the probe bind then stands alone.
fn listening_inodes(addr: SocketAddr) -> Option<Vec<u64>> {
    let table = match addr {
        SocketAddr::V4(_) => "/proc/net/tcp",
        SocketAddr::V6(_) => "/proc/net/tcp6",
    };
    let text = std::fs::read_to_string(table).ok()?;
    Some(parse_listening(&text, addr))
}

/// Parses a /proc/net/tcp{,6} table: `sl local_address rem_address st ... uid timeout inode`,
/// addresses as hex of the in-memory (network order) bytes read as native 32-bit words, the
/// port in plain hex; state 0A is LISTEN.
fn parse_listening(text: &str, addr: SocketAddr) -> Vec<u64> {
    let want = proc_address(addr);
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            (f.len() > 9 && f[3] == "0A" && f[1].eq_ignore_ascii_case(&want))
                .then(|| f[9].parse().ok())
                .flatten()
        })
        .collect()
}

/// `addr` spelled as the kernel prints it in /proc/net/tcp{,6}.
fn proc_address(addr: SocketAddr) -> String {
    let octets: Vec<u8> = match addr.ip() {
        IpAddr::V4(ip) => ip.octets().to_vec(),
        IpAddr::V6(ip) => ip.octets().to_vec(),
    };
    let mut s = String::with_capacity(octets.len() * 2 + 5);
    for word in octets.chunks(4) {
        let n = u32::from_ne_bytes([word[0], word[1], word[2], word[3]]);
        s.push_str(&format!("{n:08X}"));
    }
    s.push_str(&format!(":{:04X}", addr.port()));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_group_on_an_address_is_refused() {
        let first = bind_group("127.0.0.1:0".parse().unwrap(), 1).unwrap();
        let addr = first[0].local_addr().unwrap();
        let err = bind_group(addr, 2).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");
        assert!(err.to_string().contains("address in use"), "{err}");
        // A plain SO_REUSEPORT socket of another program would join the group; the table
        // check sees such a stranger.
        alone(addr, &first).unwrap();
        let stranger = socket(addr, true).unwrap();
        stranger.listen(8).unwrap();
        let err = alone(addr, &first).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");
        drop(first);
        let err = bind_group(addr, 1).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");
    }

    #[test]
    fn group_binds_and_lists_only_itself() {
        let group = bind_group("127.0.0.1:0".parse().unwrap(), 1).unwrap();
        let addr = group[0].local_addr().unwrap();
        drop(group);
        let group = bind_group(addr, 3).unwrap();
        let table = listening_inodes(addr).unwrap();
        assert_eq!(table.len(), 3);
        for l in &group {
            assert!(table.contains(&inode(l).unwrap()));
        }
        let v6 = bind_group("[::1]:0".parse().unwrap(), 2);
        if let Ok(v6) = v6 {
            let addr6 = v6[0].local_addr().unwrap();
            assert_eq!(v6[1].local_addr().unwrap(), addr6);
            assert_eq!(listening_inodes(addr6).unwrap().len(), 2);
            assert_eq!(
                bind_group(addr6, 1).unwrap_err().kind(),
                io::ErrorKind::AddrInUse
            );
        }
    }

    #[test]
    fn joined_group_keeps_the_inherited_sockets() {
        let old = bind_group("127.0.0.1:0".parse().unwrap(), 2).unwrap();
        let addr = old[0].local_addr().unwrap();
        let inherited: Vec<_> = old.iter().map(|l| l.try_clone().unwrap()).collect();
        let inodes: Vec<u64> = old.iter().map(|l| inode(l).unwrap()).collect();
        let group = join_group(addr, inherited, 3).unwrap();
        assert_eq!(group.len(), 3);
        assert_eq!(inode(&group[0]).unwrap(), inodes[0]);
        assert_eq!(inode(&group[1]).unwrap(), inodes[1]);
        assert_eq!(listening_inodes(addr).unwrap().len(), 3);
        // Fewer wanted than inherited: all are kept.
        drop(group);
        let inherited: Vec<_> = old.iter().map(|l| l.try_clone().unwrap()).collect();
        assert_eq!(join_group(addr, inherited, 1).unwrap().len(), 2);
    }

    #[test]
    fn proc_spelling() {
        assert_eq!(
            proc_address("127.0.0.1:8443".parse().unwrap()),
            if cfg!(target_endian = "little") {
                "0100007F:20FB"
            } else {
                "7F000001:20FB"
            }
        );
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:20FB 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0\n   1: 0100007F:20FB 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 4343 1\n";
        if cfg!(target_endian = "little") {
            assert_eq!(
                parse_listening(table, "127.0.0.1:8443".parse().unwrap()),
                vec![4242]
            );
        }
    }
}
