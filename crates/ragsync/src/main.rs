use clap::{Parser, Subcommand};
use ragsync::bench::{self, BenchArgs};
use ragsync::client::{Client, ClientArgs};
use ragsync::config::{ServeArgs, ServeConfig};
use ragsync::demo::{self, DemoArgs};
use ragsync::ingest::{self, IngestArgs};
use ragsync::serve;
use serde_json::Value;
use tokio::signal::unix::{SignalKind, signal};
use tracing_subscriber::EnvFilter;

/// A replicated knowledge store for retrieval-augmented generation.
#[derive(Debug, Parser)]
#[command(name = "ragsync", version)]
struct Cli {
    /// Log filter (tracing EnvFilter syntax); logs go to stderr.
    #[arg(long, global = true, env = "RAGSYNC_LOG", default_value = "info")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a node.
    Serve(Box<ServeArgs>),
    /// Write files, folders or BEIR corpus.jsonl files into a collection.
    Ingest(IngestArgs),
    /// Read one document.
    Get(DocArgs),
    /// Delete one document (a tombstone).
    Delete(DocArgs),
    /// Show a node's status.
    Status(ClientArgs),
    /// Run a guided demo on a temporary node.
    Demo(DemoArgs),
    /// Benchmarks that print figures.
    Bench(BenchArgs),
}

#[derive(Debug, clap::Args)]
struct DocArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// Collection name.
    #[arg(long, short)]
    collection: String,
    /// Document id.
    id: String,
}

/// Runs `work` until it ends or Ctrl-C: then it is dropped, which stops the nodes it started
/// and removes their temporary directories.
async fn until_interrupted(work: impl Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    // Registered before the work starts, so neither signal kills the process outright.
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    tokio::select! {
        r = work => return r,
        _ = interrupt.recv() => {}
        _ = terminate.recv() => {}
    }
    // `work` is dropped by now: its nodes are stopped and their directories removed. Exit
    // without waiting for blocking work it may have left running.
    eprintln!("interrupted; the temporary nodes were stopped and removed");
    std::process::exit(130)
}

fn print_json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_new(&cli.log).unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match cli.command {
        Command::Serve(args) => serve::run(ServeConfig::resolve(*args)?).await,
        Command::Ingest(args) => {
            let report = ingest::run(args).await?;
            ingest::print_report(&report);
            if report.interrupted {
                // The report said what is stored; the exit status says it did not finish.
                std::process::exit(130);
            }
            Ok(())
        }
        Command::Get(a) => {
            let c = Client::new(&a.client)?;
            print_json(
                &c.get(&["collections", &a.collection, "docs", &a.id], &[])
                    .await?,
            );
            Ok(())
        }
        Command::Delete(a) => {
            let c = Client::new(&a.client)?;
            print_json(
                &c.delete(&["collections", &a.collection, "docs", &a.id])
                    .await?,
            );
            Ok(())
        }
        Command::Status(a) => {
            print_json(&Client::new(&a)?.get(&["status"], &[]).await?);
            Ok(())
        }
        Command::Demo(args) => until_interrupted(demo::run(args)).await,
        Command::Bench(args) => until_interrupted(bench::run(args)).await,
    }
}
