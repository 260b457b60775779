//! The HTTP side under abuse: slow clients, floods past the connection cap, garbage and
//! oversized requests, and file-descriptor exhaustion. The daemon must keep answering probes,
//! never panic, and never spin.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};

use support::{wait_until, Daemon, RedisServer};

/// The slowest a probe may be beside slow or hostile connections. A starved probe waits for a
/// slot until those reach the 5 s header timeout, or is refused. Run alone, the thousand-slowloris
/// test's slowest probe takes 4-8 ms; beside other test binaries on two cores, 50-105 ms, for this
/// build and the one before it alike. So the bound is the one that matters to a prober: well
/// inside the kubelet's default 1 s timeout.
const PROBE_BOUND: Duration = Duration::from_millis(500);

/// Sends `payload` on a fresh connection and reads until the server closes it (bounded).
/// Returns the status of the first reply, if any came.
fn send(addr: SocketAddr, payload: &[u8]) -> (Option<u16>, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(8))).unwrap();
    let _ = stream.write_all(payload);
    let mut reply = Vec::new();
    let _ = stream.read_to_end(&mut reply);
    let status = String::from_utf8_lossy(&reply)
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok());
    (status, reply)
}

/// A read that returns 0 (or fails) means the server closed the connection.
fn closed_by_server(mut stream: &TcpStream, within: Duration) -> bool {
    stream.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) => {
                return !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                )
            }
        }
    }
}

fn timed_status(addr: SocketAddr, path: &str) -> (u16, Duration) {
    let sent = Instant::now();
    let status = support::get(addr, path).status;
    (status, sent.elapsed())
}

#[test]
fn slowloris_connections_are_cut_while_probes_stay_fast() {
    let redis = RedisServer::start();
    let daemon = Daemon::start(&["--redis-url", &redis.url()]);
    daemon.wait_for("/readyz", 200, Duration::from_secs(5));
    let opened = Instant::now();
    let slow: Vec<TcpStream> = (0..200)
        .map(|_| {
            let mut s = TcpStream::connect(daemon.addr).unwrap();
            s.write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                .unwrap();
            s
        })
        .collect();
    let mut slowest = Duration::ZERO;
    for _ in 0..50 {
        let (status, took) = timed_status(daemon.addr, "/readyz");
        assert_eq!(status, 200);
        slowest = slowest.max(took);
    }
    println!("slowest /readyz beside 200 slow connections: {slowest:?}");
    assert!(slowest < PROBE_BOUND, "{slowest:?}");
    for stream in &slow {
        assert!(
            closed_by_server(stream, Duration::from_secs(10)),
            "a slow connection was kept"
        );
    }
    let cut = opened.elapsed();
    println!("200 slow connections cut after {cut:?}");
    assert!(
        cut >= Duration::from_secs(4) && cut < Duration::from_secs(9),
        "{cut:?}"
    );
    assert_eq!(daemon.status("/readyz"), 200);
}

/// A connection to `addr` from `source` (another loopback address), waiting at most `within`
/// for the handshake when given.
fn connect_from(
    source: std::net::IpAddr,
    addr: SocketAddr,
    within: Option<Duration>,
) -> std::io::Result<TcpStream> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    socket.bind(&SocketAddr::new(source, 0).into())?;
    match within {
        Some(within) => socket.connect_timeout(&addr.into(), within)?,
        None => socket.connect(&addr.into())?,
    }
    Ok(socket.into())
}

/// A slowloris connection from `source` (another loopback address): half a request head, then
/// nothing.
fn slow_from(source: std::net::IpAddr, addr: SocketAddr) -> Option<TcpStream> {
    let mut stream = connect_from(source, addr, None).ok()?;
    stream.write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\n").ok()?;
    Some(stream)
}

#[test]
fn probes_from_another_address_win_over_a_thousand_slowloris_connections() {
    let redis = RedisServer::start();
    // The built binary at default flags, so its descriptors and memory are its own.
    let daemon = support::DaemonProcess::spawn(&["--redis-url", &redis.url()], &[]);
    let addr = daemon.addr;
    support::wait_for(addr, "/readyz", 200, Duration::from_secs(5));
    let (fds0, rss0) = support::fds_and_rss(daemon.child.id());
    // The attacker: 1,000 connections from 127.0.0.2, held, reopened as the server cuts them.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let attacker = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let source = std::net::IpAddr::from([127, 0, 0, 2]);
            let mut held: std::collections::VecDeque<TcpStream> = std::collections::VecDeque::new();
            let mut opened = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if let Some(stream) = slow_from(source, addr) {
                    stream.set_nonblocking(true).unwrap();
                    held.push_back(stream);
                    opened += 1;
                }
                // Keep the thousand newest; the ones the server closed are reopened above.
                let mut probe = [0u8; 1];
                held.retain_mut(|s| !matches!(s.read(&mut probe), Ok(0)));
                while held.len() > 1000 {
                    held.pop_front();
                }
            }
            (opened, held.len())
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    let mut slowest = Duration::ZERO;
    let mut answered = 0;
    for _ in 0..100 {
        let (status, took) = timed_status(addr, "/readyz");
        assert_eq!(status, 200);
        answered += 1;
        slowest = slowest.max(took);
        std::thread::sleep(Duration::from_millis(20));
    }
    let (fds1, rss1) = support::fds_and_rss(daemon.child.id());
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (opened, held) = attacker.join().unwrap();
    println!(
        "{answered} of 100 probes answered beside {opened} slowloris connections opened from 127.0.0.2 \
         ({held} still open at the end); slowest {slowest:?}; daemon fds {fds0} -> {fds1}, RSS {rss0} -> {rss1} KiB"
    );
    assert!(opened >= 1000, "the attacker opened only {opened}");
    assert!(slowest < PROBE_BOUND, "{slowest:?}");
    assert!(fds1 <= fds0 + 256 + 8, "descriptors: {fds0} -> {fds1}");
    assert!(rss1 <= rss0 + 8 * 1024, "RSS: {rss0} -> {rss1} KiB");
    assert!(
        daemon.log().contains("connection limit reached"),
        "{}",
        daemon.log()
    );
}

/// The kernel completes handshakes for the listener while the accept loop is busy; it holds
/// them in the listen backlog. A backlog of 128 (std's default) filled by a burst while the
/// daemon was descheduled drops the next SYN, and a probe's retry comes a whole second later
/// (one CI run: a probe took 1.03 s beside the slowloris above). Here the daemon is stopped
/// outright while a burst connects: every connection, then a probe, must still complete at once.
#[test]
fn a_burst_while_the_daemon_is_paused_waits_in_the_backlog_and_is_not_dropped() {
    let redis = RedisServer::start();
    let daemon = support::DaemonProcess::spawn(&["--redis-url", &redis.url()], &[]);
    support::wait_for(daemon.addr, "/readyz", 200, Duration::from_secs(5));
    let somaxconn: usize = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // The kernel caps the backlog at somaxconn (4096 on these machines).
    let burst = 1000.min(somaxconn - 16);
    daemon.signal("-STOP");
    let source = std::net::IpAddr::from([127, 0, 0, 2]);
    let mut slowest = Duration::ZERO;
    let held: Vec<TcpStream> = (0..burst)
        .map(|i| {
            let started = Instant::now();
            // A dropped SYN is retried after 1 s: a connection that takes that long was dropped.
            let connected = connect_from(source, daemon.addr, Some(Duration::from_millis(900)));
            slowest = slowest.max(started.elapsed());
            connected.unwrap_or_else(|e| panic!("connection {i} of {burst}: {e:?}"))
        })
        .collect();
    let probe = std::thread::spawn({
        let addr = daemon.addr;
        move || timed_status(addr, "/readyz")
    });
    std::thread::sleep(Duration::from_millis(300));
    daemon.signal("-CONT");
    let (status, took) = probe.join().unwrap();
    println!(
        "{burst} connections made while the daemon was stopped (slowest {slowest:?}); \
         the probe behind them answered {status} after {took:?} (300 ms of it stopped)"
    );
    assert_eq!(status, 200);
    assert!(took < Duration::from_millis(900), "{took:?}");
    drop(held);
}

#[test]
fn a_flood_past_the_connection_cap_is_shed_and_probes_recover() {
    let redis = RedisServer::start();
    let daemon = Daemon::start(&["--redis-url", &redis.url(), "--max-connections", "20"]);
    daemon.wait_for("/readyz", 200, Duration::from_secs(5));
    let flood: Vec<TcpStream> = (0..120)
        .map(|_| TcpStream::connect(daemon.addr).unwrap())
        .collect();
    let started = Instant::now();
    std::thread::sleep(Duration::from_millis(300));
    let shed = flood
        .iter()
        .filter(|s| closed_by_server(s, Duration::from_millis(10)))
        .count();
    println!(
        "{shed} of 120 flood connections closed at once, in {:?}",
        started.elapsed()
    );
    assert!(shed >= 100, "only {shed} shed: the cap is not enforced");
    drop(flood);
    // The held connections are gone: probes are served again at once.
    let recovered = wait_until(Duration::from_secs(2), "probes served after the flood", || {
        TcpStream::connect(daemon.addr).is_ok()
            && send(daemon.addr, b"GET /readyz HTTP/1.1\r\nConnection: close\r\n\r\n").0 == Some(200)
    });
    println!("probes recovered {recovered:?} after the flood ended");
}

#[test]
fn garbage_and_oversized_requests_get_a_4xx_or_a_close() {
    let redis = RedisServer::start();
    let daemon = Daemon::start(&["--redis-url", &redis.url()]);
    daemon.wait_for("/readyz", 200, Duration::from_secs(5));
    let long_line = [
        b"GET /".as_slice(),
        &vec![b'a'; 100_000],
        b" HTTP/1.1\r\nHost: x\r\n\r\n",
    ]
    .concat();
    let many_headers = [
        b"GET /readyz HTTP/1.1\r\n".as_slice(),
        &(0..5000)
            .flat_map(|i| format!("X-H{i}: v\r\n").into_bytes())
            .collect::<Vec<u8>>(),
        b"\r\n",
    ]
    .concat();
    let huge_value = [
        b"GET /readyz HTTP/1.1\r\nX-Big: ".as_slice(),
        &vec![b'v'; 64 * 1024],
        b"\r\n\r\n",
    ]
    .concat();
    let junk: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("binary junk", junk),
        ("100 KB request line", long_line),
        ("5000 headers", many_headers),
        ("64 KiB header value", huge_value),
        ("HTTP/9.9", b"GET /readyz HTTP/9.9\r\nHost: x\r\n\r\n".to_vec()),
        ("bad method", b"G@T /readyz HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
        (
            "header without colon",
            b"GET /readyz HTTP/1.1\r\nHost x\r\n\r\n".to_vec(),
        ),
        (
            "bad content-length",
            b"GET /readyz HTTP/1.1\r\nContent-Length: x\r\n\r\n".to_vec(),
        ),
        ("NUL in path", b"GET /ready\0z HTTP/1.1\r\n\r\n".to_vec()),
    ];
    for (name, payload) in cases {
        let started = Instant::now();
        let (status, reply) = send(daemon.addr, &payload);
        match status {
            Some(code) => assert!((400..500).contains(&code), "{name}: {code}"),
            None => assert!(reply.is_empty(), "{name}: not HTTP: {reply:?}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(7),
            "{name}: the connection was held"
        );
        println!("{name}: {status:?}");
    }
    // Pipelined requests are all answered, in order.
    let (_, reply) = send(
        daemon.addr,
        b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\nGET /nope HTTP/1.1\r\nHost: x\r\n\r\nGET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    let reply = String::from_utf8_lossy(&reply);
    let statuses: Vec<&str> = reply
        .match_indices("HTTP/1.1 ")
        .map(|(i, _)| &reply[i + 9..i + 12])
        .collect();
    assert_eq!(statuses, ["200", "404", "200"], "{reply}");
    // HTTP/1.0 is fine.
    assert_eq!(send(daemon.addr, b"GET /readyz HTTP/1.0\r\n\r\n").0, Some(200));
    assert_eq!(daemon.status("/readyz"), 200, "still serving after all of it");
}

/// CPU time (user + system) of a process, from /proc/<pid>/stat.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}

#[test]
fn running_out_of_file_descriptors_does_not_spin_the_accept_loop() {
    let redis = RedisServer::start();
    let mut command = support::command(&["--redis-url", &redis.url(), "--listen", "127.0.0.1:0"], &[]);
    // SAFETY: setrlimit is async-signal-safe; it only lowers this child's own limit.
    unsafe {
        command.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 32,
                rlim_max: 32,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    let mut child = command.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let sink = log.clone();
    std::thread::spawn(move || {
        let mut stderr = stderr;
        let mut buf = [0u8; 4096];
        while let Ok(n) = stderr.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    let mut addr = None;
    wait_until(Duration::from_secs(5), "the serving line", || {
        addr = log
            .lock()
            .unwrap()
            .split("listen=")
            .nth(1)
            .and_then(|r| r.split_whitespace().next()?.parse().ok());
        addr.is_some()
    });
    let addr: SocketAddr = addr.unwrap();
    support::wait_for(addr, "/readyz", 200, Duration::from_secs(5));

    // More connections than the daemon has descriptors left: accept() fails with EMFILE.
    let held: Vec<TcpStream> = (0..60).filter_map(|_| TcpStream::connect(addr).ok()).collect();
    std::thread::sleep(Duration::from_millis(300));
    let before = cpu_time(child.id());
    std::thread::sleep(Duration::from_secs(2));
    let spent = cpu_time(child.id()) - before;
    println!("CPU while out of descriptors: {spent:?} in 2 s");
    assert!(
        spent < Duration::from_millis(300),
        "the accept loop spins: {spent:?} of CPU in 2 s"
    );
    assert!(
        log.lock().unwrap().contains("accept failed"),
        "{}",
        log.lock().unwrap()
    );
    assert!(child.try_wait().unwrap().is_none(), "the daemon died");
    drop(held);
    wait_until(Duration::from_secs(10), "probes served again", || {
        TcpStream::connect(addr).is_ok() && support::get(addr, "/readyz").status == 200
    });
    let accept_warnings = log.lock().unwrap().matches("accept failed").count();
    assert!(
        accept_warnings <= 2,
        "accept errors flood the log: {accept_warnings}"
    );
    let _ = child.kill();
    let _ = child.wait();
}
