use clap::{Parser, Subcommand};
use ragsync::bench::{self, BenchArgs};
use ragsync::client::{Client, ClientArgs};
use ragsync::config::{ServeArgs, ServeConfig};
use ragsync::demo::{self, DemoArgs};
use ragsync::ingest::{self, IngestArgs};
use ragsync::search_cmd::{self, EvalArgs, QueryArgs};
use ragsync::serve;
use serde_json::{Value, json};
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
    /// Search a collection: a table of the best chunks (or the JSON answer).
    Query(QueryArgs),
    /// Score search on a judged BEIR folder: nDCG@10 and recall@10 per mode.
    Eval(EvalArgs),
    /// Show a node's status.
    Status(ClientArgs),
    /// Manage the peers a node pulls from (and pushes to).
    Peers(PeersArgs),
    /// List documents with concurrent versions, or keep one version of a document.
    Conflicts(ConflictsArgs),
    /// Serve MCP over stdio for an agent, as a client of a running node.
    Mcp(McpArgs),
    /// Run a guided demo on a temporary node.
    Demo(DemoArgs),
    /// Benchmarks that print figures.
    Bench(BenchArgs),
}

/// `ragsync mcp`: the MCP tools over stdin/stdout (logs on stderr).
#[derive(Debug, clap::Args)]
struct McpArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// The collection of tool calls that name none.
    #[arg(long, short = 'c', env = "RAGSYNC_COLLECTION")]
    collection: Option<String>,
}

/// `ragsync peers`: `--token` names the peer's token here (as in `peers add URL --token T`),
/// so the node's own token is `--node-token` or `RAGSYNC_TOKEN`.
#[derive(Debug, clap::Args)]
struct PeersArgs {
    /// Base URL of the node to manage.
    #[arg(long, env = "RAGSYNC_URL", default_value = "http://127.0.0.1:7070")]
    url: String,
    /// The managed node's admin token.
    #[arg(long, env = "RAGSYNC_TOKEN", hide_env_values = true)]
    node_token: String,
    #[command(subcommand)]
    what: PeersCommand,
}

#[derive(Debug, Subcommand)]
enum PeersCommand {
    /// Add a peer by its URL: the node pulls from it at once.
    Add {
        url: String,
        /// A token the peer accepts (its role must allow sync: peer or admin).
        #[arg(long)]
        token: String,
        /// Only these collections (comma-separated).
        #[arg(long, value_delimiter = ',')]
        collections: Vec<String>,
        /// Also push this node's changes to the peer (for a peer that cannot dial this node).
        #[arg(long)]
        push: bool,
    },
    /// List peers with their pull and push status.
    List,
    /// Forget a peer, by node id.
    Remove { node_id: String },
    /// Pull from (and push to) a peer now (ends a backoff).
    Sync { node_id: String },
    /// Apply a peer's parked rows again.
    Retry { node_id: String },
}

#[derive(Debug, clap::Args)]
struct ConflictsArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[command(subcommand)]
    what: ConflictsCommand,
}

#[derive(Debug, Subcommand)]
enum ConflictsCommand {
    /// Documents of a collection that hold conflicts, with every version.
    List {
        #[arg(long, short)]
        collection: String,
    },
    /// Keep one version (a stamp, as `list` shows it): a write that has seen every conflict.
    Resolve {
        #[arg(long, short)]
        collection: String,
        id: String,
        #[arg(long)]
        keep: String,
    },
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
        Command::Mcp(a) => {
            use rmcp::ServiceExt;
            let server = ragsync::mcp::RagsyncMcp::new(Client::new(&a.client)?, a.collection);
            let running = server.serve(rmcp::transport::stdio()).await?;
            running.waiting().await?;
            Ok(())
        }
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
        Command::Query(a) => search_cmd::query(a).await,
        Command::Eval(a) => search_cmd::eval(a).await,
        Command::Status(a) => {
            print_json(&Client::new(&a)?.get(&["status"], &[]).await?);
            Ok(())
        }
        Command::Peers(a) => {
            let c = Client::new(&ClientArgs {
                url: a.url,
                token: a.node_token,
            })?;
            let answer = match a.what {
                PeersCommand::Add {
                    url,
                    token,
                    collections,
                    push,
                } => {
                    let mut body = json!({"url": url, "token": token, "push": push});
                    if !collections.is_empty() {
                        body["collections"] = json!(collections);
                    }
                    c.post(&["peers"], &body).await?
                }
                PeersCommand::List => c.get(&["peers"], &[]).await?,
                PeersCommand::Remove { node_id } => c.delete(&["peers", &node_id]).await?,
                PeersCommand::Sync { node_id } => {
                    c.post(&["peers", &node_id, "sync"], &json!({})).await?
                }
                PeersCommand::Retry { node_id } => {
                    c.post(&["peers", &node_id, "retry"], &json!({})).await?
                }
            };
            print_json(&answer);
            Ok(())
        }
        Command::Conflicts(a) => {
            let c = Client::new(&a.client)?;
            let answer = match a.what {
                ConflictsCommand::List { collection } => {
                    json!(ragsync::conflicts::list(&c, &collection).await?)
                }
                ConflictsCommand::Resolve {
                    collection,
                    id,
                    keep,
                } => ragsync::conflicts::resolve(&c, &collection, &id, &keep).await?,
            };
            print_json(&answer);
            Ok(())
        }
        Command::Demo(args) => until_interrupted(demo::run(args)).await,
        Command::Bench(args) => until_interrupted(bench::run(args)).await,
    }
}
