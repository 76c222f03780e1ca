//! Black-box: clients that never finish their request cannot lock a node out, even past its
//! connection cap and its open-files limit, and cannot hold up its shutdown.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use ragsync::node_proc::NodeProcess;

const EXE: &str = env!("CARGO_BIN_EXE_ragsync");
const TOKEN: &str = "connections-test-token-0123456789";
/// The node's open-files limit in these tests (soft and hard).
const NODE_OPEN_FILES: u64 = 256;
/// Stalled sockets: more than the node's cap and its open-files limit.
const STALLED: usize = 300;

/// This test process holds hundreds of sockets at once.
fn raise_own_open_files_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).unwrap();
}

/// A node whose open-files limit is [`NODE_OPEN_FILES`], hard and soft.
fn limited_node(dir: &Path, args: &[&str]) -> NodeProcess {
    let mut sh = Command::new("sh");
    sh.args([
        "-c",
        &format!("ulimit -n {NODE_OPEN_FILES} && exec \"$0\" \"$@\""),
        EXE,
    ]);
    NodeProcess::spawn_command(sh, &dir.join("node"), TOKEN, args).unwrap()
}

fn addr(node: &NodeProcess) -> String {
    node.url.trim_start_matches("http://").to_string()
}

/// Sockets that send half a request head and then nothing.
fn stall(node: &NodeProcess, n: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|_| {
            let mut s = TcpStream::connect(addr(node)).unwrap();
            s.write_all(b"GET /v1/status HTTP/1.1\r\nHost: x\r\n")
                .unwrap();
            s
        })
        .collect()
}

fn status_ok(node: &NodeProcess, timeout: Duration) -> bool {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        tokio::time::timeout(timeout, node.client().get(&["status"], &[]))
            .await
            .is_ok_and(|r| r.is_ok())
    })
}

/// Stalls more sockets than the cap and the open-files limit allow, then checks that a real
/// request is answered well within the header timeout (the stalled ones are still open, so
/// nothing timed out: the node made room) and that the node does not spin meanwhile.
fn real_request_gets_through(max_connections: &str) {
    raise_own_open_files_limit();
    let dir = tempfile::tempdir().unwrap();
    let header_timeout = Duration::from_secs(20);
    let node = limited_node(
        dir.path(),
        &[
            "--max-connections",
            max_connections,
            "--header-read-timeout-ms",
            &header_timeout.as_millis().to_string(),
        ],
    );
    let stalled = stall(&node, STALLED);
    std::thread::sleep(Duration::from_millis(500));
    let cpu_before = node.cpu_seconds().unwrap();
    let started = Instant::now();
    if !status_ok(&node, header_timeout / 2) {
        let log = std::fs::read_to_string(ragsync::node_proc::log_path(&node.data_dir));
        let log = log.unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(15).collect();
        panic!(
            "no answer while {STALLED} sockets stall (cap {max_connections}, {NODE_OPEN_FILES} \
             files); the node's log ends:\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    let took = started.elapsed();
    std::thread::sleep(Duration::from_secs(1));
    let cpu = node.cpu_seconds().unwrap() - cpu_before;
    let window = started.elapsed().as_secs_f64();
    assert!(
        cpu < 0.5 * window,
        "the node used {cpu:.2} s of CPU in {window:.2} s with stalled clients: spinning"
    );
    eprintln!("answered in {took:?} with {STALLED} stalled sockets; node CPU {cpu:.3} s");
    drop(stalled);
}

#[test]
fn stalled_sockets_past_the_connection_cap_do_not_lock_out_a_request() {
    real_request_gets_through("100");
}

#[test]
fn stalled_sockets_past_the_open_files_limit_do_not_lock_out_a_request() {
    // A cap far above what the open-files limit holds: the node lowers it, so that the
    // store keeps the descriptors it needs to answer (a status request opens a reader).
    real_request_gets_through("5000");
}

#[test]
fn a_partial_head_is_closed_after_the_header_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::spawn(
        Path::new(EXE),
        &dir.path().join("node"),
        TOKEN,
        &["--header-read-timeout-ms", "300"],
    )
    .unwrap();
    let mut stalled = stall(&node, 1).pop().unwrap();
    stalled
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let started = Instant::now();
    let mut buf = Vec::new();
    // The node closes the connection (EOF) rather than waiting for the rest.
    let _ = stalled.read_to_end(&mut buf);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "a stalled head was kept open"
    );
}

#[test]
fn sigterm_stops_within_the_grace_period_and_keeps_acknowledged_writes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("node");
    let args = [
        "--shutdown-grace-ms",
        "1000",
        "--header-read-timeout-ms",
        "120000",
        "--body-read-timeout-ms",
        "120000",
    ];
    let mut node = NodeProcess::spawn(Path::new(EXE), &data, TOKEN, &args).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = node.client();
    rt.block_on(async {
        client
            .put(&["collections", "c"], &serde_json::json!({}))
            .await
            .unwrap();
        client
            .put(
                &["collections", "c", "docs", "kept"],
                &serde_json::json!({"text": "acknowledged"}),
            )
            .await
            .unwrap();
    });
    // One client holds half a head, another a whole head and half its body.
    let _half_head = stall(&node, 1);
    let mut half_body = TcpStream::connect(addr(&node)).unwrap();
    half_body
        .write_all(
            format!(
                "PUT /v1/collections/c/docs/late HTTP/1.1\r\nHost: x\r\n\
                 Authorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n\
                 Content-Length: 100\r\n\r\n{{\"text\": "
            )
            .as_bytes(),
        )
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    node.stop()
        .expect("stopped on SIGTERM without being killed");
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(6),
        "shutdown took {took:?} with a 1 s grace period"
    );
    let node = NodeProcess::spawn(Path::new(EXE), &data, TOKEN, &[]).unwrap();
    let doc = rt
        .block_on(
            node.client()
                .get(&["collections", "c", "docs", "kept"], &[]),
        )
        .unwrap();
    assert_eq!(doc["text"], "acknowledged");
}

/// Clients that send requests and never read the answers hold connections inside a request
/// (their responses stall on full sockets): once such a connection has taken nothing for the
/// stall limit (`header_read_timeout_ms`), it is closed to make room, so they cannot lock
/// the node out either.
#[test]
fn clients_that_never_read_their_answers_do_not_lock_out_a_request() {
    use tokio::io::AsyncWriteExt;
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::spawn(
        Path::new(EXE),
        &dir.path().join("node"),
        TOKEN,
        &["--max-connections", "4", "--header-read-timeout-ms", "1000"],
    )
    .unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = node.client();
        client
            .put(&["collections", "c"], &serde_json::json!({}))
            .await
            .unwrap();
        let text = "x".repeat(4 << 20);
        client
            .put(
                &["collections", "c", "docs", "big"],
                &serde_json::json!({"text": text}),
            )
            .await
            .unwrap();
        let cid = ragsync_core::ContentId::of(text.as_bytes());
        // Four downloads of 4 MiB each, pipelined, on a 4 KiB receive buffer never read.
        let requests = format!(
            "GET /v1/blobs/{cid} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
        )
        .repeat(4);
        let addr: std::net::SocketAddr = addr(&node).parse().unwrap();
        let mut hogs = Vec::new();
        for _ in 0..6 {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.set_recv_buffer_size(4096).unwrap();
            let mut stream = socket.connect(addr).await.unwrap();
            let requests = requests.clone();
            hogs.push(tokio::spawn(async move {
                let _ = stream.write_all(requests.as_bytes()).await;
                std::future::pending::<()>().await;
                drop(stream);
            }));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let started = Instant::now();
        let answered = tokio::time::timeout(Duration::from_secs(15), client.get(&["status"], &[]))
            .await
            .is_ok_and(|r| r.is_ok());
        assert!(
            answered,
            "no answer while 6 clients never read theirs (cap 4)"
        );
        eprintln!("answered in {:?} past 6 stalled readers", started.elapsed());
        for h in hogs {
            h.abort();
        }
    });
}
