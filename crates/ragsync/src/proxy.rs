//! A TCP proxy on loopback, in front of a node, for tests and benchmarks: its link can be cut
//! (every connection it carries is closed and new ones are refused: a partition between real
//! processes) and healed, and it can delay every byte by a fixed time each way (a long link).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;

pub struct Proxy {
    /// Where to reach the node through the proxy (`http://127.0.0.1:PORT`).
    pub url: String,
    cut: Arc<AtomicBool>,
    closed: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// A proxy to the node at `target` (`http://host:port`), adding `delay` to each direction.
    pub async fn start(target: &str, delay: Duration) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let target = target.trim_start_matches("http://").to_string();
        let cut = Arc::new(AtomicBool::new(false));
        let closed = Arc::new(Notify::new());
        let (c, n) = (cut.clone(), closed.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((inbound, _)) = listener.accept().await else {
                    return;
                };
                if c.load(Ordering::SeqCst) {
                    continue; // refused: dropped at once
                }
                let (target, n, c) = (target.clone(), n.clone(), c.clone());
                tokio::spawn(async move {
                    // Registered before connecting: a cut while this connection is still
                    // being made closes it too.
                    let closed = n.notified();
                    tokio::pin!(closed);
                    closed.as_mut().enable();
                    let Ok(outbound) = TcpStream::connect(&target).await else {
                        return;
                    };
                    if c.load(Ordering::SeqCst) {
                        return;
                    }
                    let _ = inbound.set_nodelay(true);
                    let _ = outbound.set_nodelay(true);
                    tokio::select! {
                        _ = carry(inbound, outbound, delay) => {}
                        _ = closed => {}
                    }
                });
            }
        });
        Ok(Proxy {
            url,
            cut,
            closed,
            task,
        })
    }

    /// Cuts the link (closing what it carries) or heals it.
    pub fn set_cut(&self, cut: bool) {
        self.cut.store(cut, Ordering::SeqCst);
        if cut {
            self.closed.notify_waiters();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Carries bytes both ways until either side closes.
async fn carry(mut a: TcpStream, mut b: TcpStream, delay: Duration) {
    if delay.is_zero() {
        let _ = tokio::io::copy_bidirectional(&mut a, &mut b).await;
        return;
    }
    let (ar, aw) = a.into_split();
    let (br, bw) = b.into_split();
    tokio::join!(delayed(ar, bw, delay), delayed(br, aw, delay));
}

/// Copies `from` to `to`, each chunk written `delay` after it was read (latency, not a
/// bandwidth limit: chunks read meanwhile are on their way too).
async fn delayed(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    delay: Duration,
) {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let reader = async move {
        let mut buf = vec![0u8; 64 << 10];
        loop {
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if tx
                        .send((Instant::now() + delay, buf[..n].to_vec()))
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
    };
    let writer = async move {
        while let Some((at, bytes)) = rx.recv().await {
            tokio::time::sleep_until(at).await;
            if to.write_all(&bytes).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}
