//! A node running as a child process: how the demo, the benchmark and the black-box tests
//! start real nodes. The child listens on a free port; its address is read from the line it
//! prints once it listens. Dropping a [`NodeProcess`] kills the child.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::client::{Client, ClientArgs};
use crate::serve::LISTENING_PREFIX;

/// How long a node may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a node may take to stop after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

pub struct NodeProcess {
    child: Child,
    pub url: String,
    pub token: String,
    pub data_dir: PathBuf,
}

impl NodeProcess {
    /// Starts `exe serve` on `data_dir` (created if missing) on a free loopback port, with
    /// `token` as its admin token and `extra_args` after. Its log goes to [`log_path`].
    pub fn spawn(
        exe: &Path,
        data_dir: &Path,
        token: &str,
        extra_args: &[&str],
    ) -> anyhow::Result<Self> {
        Self::spawn_command(Command::new(exe), data_dir, token, extra_args)
    }

    /// [`NodeProcess::spawn`] with the program given as a command (a wrapper that sets limits
    /// before it execs the node, say); `serve` and its arguments are appended to it.
    pub fn spawn_command(
        mut command: Command,
        data_dir: &Path,
        token: &str,
        extra_args: &[&str],
    ) -> anyhow::Result<Self> {
        let log_file = log_path(data_dir);
        let log = File::options()
            .create(true)
            .append(true)
            .open(&log_file)
            .with_context(|| format!("opening {}", log_file.display()))?;
        command.arg("serve").arg("--data").arg(data_dir);
        // A free loopback port unless the caller names an address.
        if !extra_args.contains(&"--listen") {
            command.args(["--listen", "127.0.0.1:0"]);
        }
        let mut child = command
            .args(extra_args)
            .env("RAGSYNC_ADMIN_TOKEN", token)
            .env_remove("RAGSYNC_CONFIG")
            .env_remove("RAGSYNC_TOKENS")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {:?}", command.get_program()))?;
        let stdout = child.stdout.take().expect("piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if !sent && let Some(url) = line.strip_prefix(LISTENING_PREFIX) {
                    sent = tx.send(url.trim().to_string()).is_ok();
                }
            }
        });
        let url = match rx.recv_timeout(START_TIMEOUT) {
            Ok(url) => url,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                let log = std::fs::read_to_string(&log_file).unwrap_or_default();
                bail!("node did not start listening; its log:\n{log}");
            }
        };
        Ok(Self {
            child,
            url,
            token: token.to_string(),
            data_dir: data_dir.to_path_buf(),
        })
    }

    /// [`NodeProcess::spawn`] off the async workers, so a caller's other futures (a Ctrl-C
    /// handler) keep running while the node starts.
    pub async fn start(
        exe: &Path,
        data_dir: &Path,
        token: &str,
        extra_args: &[&str],
    ) -> anyhow::Result<Self> {
        let (exe, dir, token) = (exe.to_path_buf(), data_dir.to_path_buf(), token.to_string());
        let args: Vec<String> = extra_args.iter().map(|a| a.to_string()).collect();
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            Self::spawn(&exe, &dir, &token, &args)
        })
        .await?
    }

    /// [`NodeProcess::stop`] off the async workers.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        tokio::task::spawn_blocking(move || self.stop()).await?
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A client for this node with its admin token.
    pub fn client(&self) -> Client {
        Client::new(&ClientArgs {
            url: self.url.clone(),
            token: self.token.clone(),
        })
        .expect("the node printed a valid URL")
    }

    /// Kills the node with SIGKILL (no chance to clean up) and waits for it.
    pub fn kill9(&mut self) -> anyhow::Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// Asks the node to stop (SIGTERM) and waits; kills it if it does not stop in time.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        if self.child.try_wait()?.is_some() {
            return Ok(());
        }
        kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM)?;
        let deadline = std::time::Instant::now() + STOP_TIMEOUT;
        while std::time::Instant::now() < deadline {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill9()?;
        bail!("node did not stop within {STOP_TIMEOUT:?} of SIGTERM; killed it")
    }

    /// Peak resident set size of the node so far, in KiB (Linux `VmHWM`).
    pub fn peak_rss_kib(&self) -> Option<u64> {
        proc_status_kib(self.pid(), "VmHWM:")
    }

    /// Resident set size of the node now, in KiB (Linux `VmRSS`).
    pub fn rss_kib(&self) -> Option<u64> {
        proc_status_kib(self.pid(), "VmRSS:")
    }

    /// CPU time the node used so far (user + system), in seconds.
    pub fn cpu_seconds(&self) -> Option<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).ok()?;
        // Fields after the command name, which is in parentheses and may hold spaces.
        let rest = stat.rsplit_once(')')?.1;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks: u64 =
            fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
        let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok()??;
        Some(ticks as f64 / hz as f64)
    }
}

/// Where a node started by [`NodeProcess`] logs: beside its data directory, which holds only
/// the node's own files.
pub fn log_path(data_dir: &Path) -> PathBuf {
    let mut name = data_dir.file_name().unwrap_or_default().to_os_string();
    name.push(".log");
    data_dir.with_file_name(name)
}

fn proc_status_kib(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    line[key.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
