//! Network faults on loopback: a proxy that stops forwarding (a black hole), or cuts every
//! connection it carries (an idle timeout, a conntrack flush) while it keeps accepting new ones.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A TCP proxy in front of Redis that can be frozen: it then stops forwarding in both
/// directions but keeps every connection open, like a blackholed network path. It can also
/// reset every connection it carries.
pub struct FreezableProxy {
    pub addr: SocketAddr,
    frozen: Arc<std::sync::atomic::AtomicBool>,
    /// The client side of every connection carried so far.
    clients: Arc<Mutex<Vec<TcpStream>>>,
}

impl FreezableProxy {
    pub fn start(target: SocketAddr) -> Self {
        use std::sync::atomic::{AtomicBool, Ordering};
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let frozen = Arc::new(AtomicBool::new(false));
        let flag = frozen.clone();
        let clients = Arc::new(Mutex::new(Vec::new()));
        let carried = clients.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().map_while(Result::ok) {
                let Ok(upstream) = TcpStream::connect(target) else {
                    continue;
                };
                carried.lock().unwrap().push(client.try_clone().unwrap());
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
        Self {
            addr,
            frozen,
            clients,
        }
    }

    /// Resets every connection carried so far (RST to the client); new ones are still taken.
    /// Returns how many were cut.
    pub fn cut(&self) -> usize {
        let mut clients = self.clients.lock().unwrap();
        for client in clients.iter() {
            let _ = socket2::SockRef::from(client).set_linger(Some(Duration::ZERO));
            let _ = client.shutdown(std::net::Shutdown::Both);
        }
        let cut = clients.len();
        clients.clear();
        cut
    }

    pub fn freeze(&self, frozen: bool) {
        self.frozen.store(frozen, std::sync::atomic::Ordering::SeqCst);
    }
}
