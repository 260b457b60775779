//! Network faults on loopback: a proxy that stops forwarding (a black hole).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

/// A TCP proxy in front of Redis that can be frozen: it then stops forwarding in both
/// directions but keeps every connection open, like a blackholed network path.
pub struct FreezableProxy {
    pub addr: SocketAddr,
    frozen: Arc<std::sync::atomic::AtomicBool>,
}

impl FreezableProxy {
    pub fn start(target: SocketAddr) -> Self {
        use std::sync::atomic::{AtomicBool, Ordering};
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let frozen = Arc::new(AtomicBool::new(false));
        let flag = frozen.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().map_while(Result::ok) {
                let Ok(upstream) = TcpStream::connect(target) else {
                    continue;
                };
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), upstream.try_clone().unwrap()),
                    (upstream, client),
                ] {
                    let frozen = flag.clone();
                    std::thread::spawn(move || {
                        from.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
                        let mut buf = [0u8; 16 * 1024];
                        loop {
                            if frozen.load(Ordering::SeqCst) {
                                std::thread::sleep(Duration::from_millis(10));
                                continue;
                            }
                            match from.read(&mut buf) {
                                Ok(0) => break,
                                Ok(n) => {
                                    if to.write_all(&buf[..n]).is_err() {
                                        break;
                                    }
                                }
                                Err(e)
                                    if matches!(
                                        e.kind(),
                                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                                    ) => {}
                                Err(_) => break,
                            }
                        }
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        Self { addr, frozen }
    }

    pub fn freeze(&self, frozen: bool) {
        self.frozen.store(frozen, std::sync::atomic::Ordering::SeqCst);
    }
}
