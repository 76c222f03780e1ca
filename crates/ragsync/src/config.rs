//! Node configuration: a TOML file, overridden by `RAGSYNC_*` environment variables, overridden
//! by flags. Defaults live in the types ([`Limits`], [`Durability`]) and here.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;
use ragsync_core::Limits;
use ragsync_search::background::Priority;
use ragsync_search::embed::OpenAiEndpoint;
use ragsync_server::{Role, TokenSpec};
use ragsync_store::Durability;
use serde::Deserialize;

/// Default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7070";
/// Default data directory.
pub const DEFAULT_DATA_DIR: &str = "ragsync-data";
/// Shortest token secret accepted: shorter ones are guessable.
pub const MIN_TOKEN_SECRET_BYTES: usize = 16;

/// The config file, `ragsync serve --config FILE`. Every field is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<SocketAddr>,
    pub data: Option<PathBuf>,
    pub durability: Option<Durability>,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub tokens: Vec<TokenSpec>,
    /// Peers to pull from (and push to, with `push = true`), added at start (known afterwards
    /// by their node id).
    #[serde(default)]
    pub peers: Vec<PeerConfig>,
}

/// A `[[peers]]` entry of the config file.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    pub url: String,
    /// A token the peer accepts (never logged).
    pub token: String,
    #[serde(default)]
    pub collections: Option<Vec<String>>,
    /// Also push this node's changes to the peer.
    #[serde(default)]
    pub push: bool,
}

impl std::fmt::Debug for PeerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerConfig")
            .field("url", &self.url)
            .field("token", &"<redacted>")
            .field("collections", &self.collections)
            .field("push", &self.push)
            .finish()
    }
}

/// `ragsync serve` flags; each also reads a `RAGSYNC_*` variable.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Data directory (created if missing).
    #[arg(long, env = "RAGSYNC_DATA")]
    pub data: Option<PathBuf>,
    /// Address to listen on; port 0 picks a free port (the bound address is printed).
    #[arg(long, env = "RAGSYNC_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// TOML config file.
    #[arg(long, env = "RAGSYNC_CONFIG")]
    pub config: Option<PathBuf>,
    /// Make a new node in a data directory that already holds other files (by default a new
    /// node is made only in a missing or empty directory).
    #[arg(long)]
    pub init: bool,
    /// relaxed | full | extra: how hard a commit waits for the disk (default full).
    #[arg(long, env = "RAGSYNC_DURABILITY", value_parser = parse_durability)]
    pub durability: Option<Durability>,
    /// An admin token secret (prefer the environment variable: flags show in `ps`).
    #[arg(long, env = "RAGSYNC_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<Secret>,
    /// More tokens, comma-separated, each `name:role:secret` (role: admin, write, read, peer;
    /// a secret cannot hold a comma).
    #[arg(
        long,
        env = "RAGSYNC_TOKENS",
        hide_env_values = true,
        value_delimiter = ','
    )]
    pub tokens: Vec<Secret>,
    /// Keep no search index (a relay that only stores and replicates; queries are refused).
    #[arg(long, env = "RAGSYNC_NO_SEARCH")]
    pub no_search: bool,
    /// How the search index's threads are scheduled beside requests: a nice increment from
    /// 0 to 19 (0: the same priority), or `idle` (Linux's `SCHED_IDLE`: only on a core no
    /// request wants; bulk loads are acknowledged faster, and queries, which wait for the
    /// index to cover earlier writes, wait longer). Lower, a busy node acknowledges writes
    /// and answers queries first and indexes with what is left.
    #[arg(long, env = "RAGSYNC_INDEX_PRIORITY", default_value_t = Priority::default(),
          alias = "index-nice")]
    pub index_priority: Priority,
    /// An OpenAI-compatible embeddings server this node uses for collections whose model is
    /// `openai-compatible/<name>` (`http://127.0.0.1:8080` or `.../v1`).
    #[arg(long, env = "RAGSYNC_EMBEDDINGS_URL")]
    pub embeddings_url: Option<String>,
    /// The API key of that server (prefer the environment variable).
    #[arg(long, env = "RAGSYNC_EMBEDDINGS_API_KEY", hide_env_values = true)]
    pub embeddings_api_key: Option<Secret>,
    /// `Host` header values `/mcp` accepts (host or host:port; repeat or comma-separate).
    /// Default: localhost, 127.0.0.1 and ::1 only, against DNS rebinding; a node agents reach
    /// by another name must list it.
    #[arg(
        long = "mcp-allowed-host",
        env = "RAGSYNC_MCP_ALLOWED_HOSTS",
        value_delimiter = ','
    )]
    pub mcp_allowed_hosts: Vec<String>,
    /// The collection of `/mcp` tool calls that name none.
    #[arg(long, env = "RAGSYNC_MCP_COLLECTION")]
    pub mcp_collection: Option<String>,
    #[command(flatten)]
    pub limits: LimitArgs,
}

/// Overrides of [`Limits`].
#[derive(Debug, Args)]
pub struct LimitArgs {
    #[arg(long, env = "RAGSYNC_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<usize>,
    #[arg(long, env = "RAGSYNC_MAX_BATCH_DOCS")]
    pub max_batch_docs: Option<usize>,
    #[arg(long, env = "RAGSYNC_MAX_CONTENT_BYTES")]
    pub max_content_bytes: Option<usize>,
    #[arg(long, env = "RAGSYNC_MAX_METADATA_BYTES")]
    pub max_metadata_bytes: Option<usize>,
    #[arg(long, env = "RAGSYNC_MAX_TITLE_BYTES")]
    pub max_title_bytes: Option<usize>,
    #[arg(long, env = "RAGSYNC_MAX_INLINE_BYTES")]
    pub max_inline_bytes: Option<usize>,
    #[arg(long, env = "RAGSYNC_MAX_PAGE_ROWS")]
    pub max_page_rows: Option<usize>,
    #[arg(long, env = "RAGSYNC_MAX_PAGE_INLINE_BYTES")]
    pub max_page_inline_bytes: Option<usize>,
    #[arg(long, env = "RAGSYNC_HLC_MAX_DRIFT_MS")]
    pub hlc_max_drift_ms: Option<u64>,
    #[arg(long, env = "RAGSYNC_MAX_METADATA_DEPTH")]
    pub max_metadata_depth: Option<usize>,
    #[arg(long, env = "RAGSYNC_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    #[arg(long, env = "RAGSYNC_HEADER_READ_TIMEOUT_MS")]
    pub header_read_timeout_ms: Option<u64>,
    #[arg(long, env = "RAGSYNC_BODY_READ_TIMEOUT_MS")]
    pub body_read_timeout_ms: Option<u64>,
    #[arg(long, env = "RAGSYNC_SHUTDOWN_GRACE_MS")]
    pub shutdown_grace_ms: Option<u64>,
}

/// A string that is never shown by `Debug` (token secrets in parsed arguments).
#[derive(Clone)]
pub struct Secret(pub String);

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_string()))
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

fn parse_durability(s: &str) -> Result<Durability, String> {
    match s {
        "relaxed" => Ok(Durability::Relaxed),
        "full" => Ok(Durability::Full),
        "extra" => Ok(Durability::Extra),
        _ => Err("expected relaxed, full or extra".into()),
    }
}

/// The resolved configuration of a node.
#[derive(Debug)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    pub data: PathBuf,
    pub durability: Durability,
    pub init: bool,
    pub limits: Limits,
    pub tokens: Vec<TokenSpec>,
    pub peers: Vec<PeerConfig>,
    /// Keep a search index (off with `--no-search`).
    pub search: bool,
    /// How the index's threads are scheduled (see [`ragsync_search::background`]).
    pub index_priority: Priority,
    /// The node's OpenAI-compatible embeddings server, when it has one.
    pub embeddings: Option<OpenAiEndpoint>,
    /// `Host` values `/mcp` accepts; empty: loopback names only.
    pub mcp_allowed_hosts: Vec<String>,
    /// The collection of `/mcp` tool calls that name none.
    pub mcp_collection: Option<String>,
}

impl ServeConfig {
    pub fn resolve(args: ServeArgs) -> anyhow::Result<Self> {
        let file = match &args.config {
            Some(p) => load_file(p)?,
            None => FileConfig::default(),
        };
        let mut limits = file.limits;
        let l = args.limits;
        macro_rules! override_limits {
            ($($f:ident),*) => { $( if let Some(v) = l.$f { limits.$f = v; } )* };
        }
        override_limits!(
            max_body_bytes,
            max_batch_docs,
            max_content_bytes,
            max_metadata_bytes,
            max_title_bytes,
            max_inline_bytes,
            max_page_rows,
            max_page_inline_bytes,
            hlc_max_drift_ms,
            max_metadata_depth,
            max_connections,
            header_read_timeout_ms,
            body_read_timeout_ms,
            shutdown_grace_ms
        );
        let mut tokens = file.tokens;
        if let Some(Secret(secret)) = args.admin_token {
            tokens.push(TokenSpec {
                name: "admin".into(),
                role: Role::Admin,
                secret,
            });
        }
        // `RAGSYNC_TOKENS=` (set, empty) names no token rather than a malformed one.
        for spec in args.tokens.iter().filter(|s| !s.0.trim().is_empty()) {
            tokens.push(parse_token_spec(&spec.0)?);
        }
        limits.validate().map_err(anyhow::Error::msg)?;
        for t in &tokens {
            check_secret(t)?;
        }
        Ok(Self {
            listen: args.listen.or(file.listen).unwrap_or_else(|| {
                DEFAULT_LISTEN
                    .parse()
                    .expect("valid default listen address")
            }),
            data: args
                .data
                .or(file.data)
                .unwrap_or_else(|| DEFAULT_DATA_DIR.into()),
            durability: args.durability.or(file.durability).unwrap_or_default(),
            init: args.init,
            limits,
            tokens,
            peers: file.peers,
            search: !args.no_search,
            index_priority: args.index_priority,
            embeddings: args.embeddings_url.map(|base_url| OpenAiEndpoint {
                base_url,
                api_key: args.embeddings_api_key.map(|s| s.0),
            }),
            mcp_allowed_hosts: args.mcp_allowed_hosts,
            mcp_collection: args.mcp_collection,
        })
    }
}

/// Refuses a secret no client could present: too short to be safe, or with whitespace at
/// either end (presented tokens are trimmed, so such a secret would never match).
fn check_secret(t: &TokenSpec) -> anyhow::Result<()> {
    if t.secret.trim() != t.secret {
        bail!(
            "token {:?}: secret starts or ends with whitespace, which a presented token never \
             does (tokens are trimmed); remove it",
            t.name
        );
    }
    if t.secret.len() < MIN_TOKEN_SECRET_BYTES {
        bail!(
            "token {:?}: secret must be at least {MIN_TOKEN_SECRET_BYTES} characters",
            t.name
        );
    }
    Ok(())
}

fn load_file(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing config file {}", path.display()))
}

fn parse_token_spec(spec: &str) -> anyhow::Result<TokenSpec> {
    let mut parts = spec.splitn(3, ':');
    let (Some(name), Some(role), Some(secret)) = (parts.next(), parts.next(), parts.next()) else {
        bail!("a token is name:role:secret");
    };
    let role = match role {
        "admin" => Role::Admin,
        "write" => Role::Write,
        "read" => Role::Read,
        "peer" => Role::Peer,
        other => bail!("token {name:?}: unknown role {other:?} (admin, write, read, peer)"),
    };
    Ok(TokenSpec {
        name: name.into(),
        role,
        secret: secret.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_specs_parse_and_short_secrets_are_refused() {
        let t = parse_token_spec("ci:write:0123456789abcdef:x").unwrap();
        assert_eq!(
            (t.name.as_str(), t.role, t.secret.as_str()),
            ("ci", Role::Write, "0123456789abcdef:x")
        );
        assert!(parse_token_spec("ci:root:0123456789abcdef").is_err());
        assert!(parse_token_spec("ci").is_err());
    }

    #[test]
    fn secrets_with_outer_whitespace_are_refused() {
        let spec = |secret: &str| TokenSpec {
            name: "t".into(),
            role: Role::Read,
            secret: secret.into(),
        };
        assert!(check_secret(&spec("0123456789abcdef")).is_ok());
        assert!(check_secret(&spec("0123456789 abcdef")).is_ok());
        for bad in [
            " 0123456789abcdef",
            "0123456789abcdef\n",
            "\t0123456789abcdef",
        ] {
            let err = check_secret(&spec(bad)).unwrap_err().to_string();
            assert!(err.contains("whitespace"), "{err}");
        }
    }

    #[test]
    fn file_config_parses_with_defaults() {
        let f: FileConfig = toml::from_str(
            "listen = \"127.0.0.1:9000\"\ndurability = \"extra\"\n[limits]\nmax_batch_docs = 5\n\
             [[tokens]]\nname = \"a\"\nrole = \"read\"\nsecret = \"0123456789abcdef\"\n",
        )
        .unwrap();
        assert_eq!(f.durability, Some(Durability::Extra));
        assert_eq!(f.limits.max_batch_docs, 5);
        assert_eq!(f.limits.max_body_bytes, Limits::default().max_body_bytes);
        assert_eq!(f.tokens.len(), 1);
        assert!(toml::from_str::<FileConfig>("bogus = 1").is_err());
        // A token key this build does not know (per-collection scopes are not configurable
        // yet) is refused, not ignored into a token that reaches every collection.
        let scoped = "[[tokens]]\nname = \"a\"\nrole = \"read\"\nsecret = \"0123456789abcdef\"\n\
                      collections = [\"notes\"]\n";
        let err = toml::from_str::<FileConfig>(scoped)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("collections"), "{err}");
    }
}
