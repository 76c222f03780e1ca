//! MCP (Model Context Protocol) tools for agents, with the `rmcp` crate: served over stdio by
//! `ragsync mcp --url URL --token T`, and by every node over streamable HTTP at `/mcp`.
//!
//! Invariants at this boundary:
//! - **One write path.** Every tool is a call to the node's REST API v1 ([`Client`]: over HTTP
//!   from `ragsync mcp`, into the node's own router in process at `/mcp`), never to the store: what an agent adds is validated, stored, indexed and replicated exactly like a
//!   REST write, and refused with the same error code.
//! - **The caller's token.** Over stdio the token is the one `ragsync mcp` was given; over
//!   HTTP each call carries the bearer token of the MCP request (already checked by the node's
//!   auth before `/mcp` answers), so the REST API applies that token's role and scope.
//! - **Errors are tool results.** A refusal, an unreachable node or bad arguments come back as
//!   a tool result with `isError` and `{"error": {"code", "message"}}` structured content, so
//!   the agent reads why; the server never fails the session over them.
//! - **A small surface.** Seven tools: agents pay for every tool schema on every request.
//!   Parameters accept the names models tend to use (`q`, `k`, `doc_id`, ...).

use rand::RngExt;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock, Implementation, ServerCapabilities, ServerConfig};
use rmcp::service::RequestContext;
use rmcp::{RoleServer, ServerHandler, schemars, tool, tool_handler, tool_router};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::client::{Client, ClientError};

/// Results `search` returns when the call does not say.
const DEFAULT_TOP_K: u32 = 5;
/// Characters of a chunk shown as a search result's snippet.
const SNIPPET_CHARS: usize = 320;
/// Characters of a document's text `get` shows in its text content (the structured content
/// has all of it).
const GET_TEXT_CHARS: usize = 8_000;

/// The MCP server of one node (see the module docs).
#[derive(Clone)]
pub struct RagsyncMcp {
    client: Client,
    /// Take each call's token from its HTTP request (the `/mcp` route) rather than `client`'s.
    token_per_request: bool,
    /// The collection of calls that name none.
    collection: Option<String>,
    tool_router: ToolRouter<Self>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct SearchArgs {
    /// What to look for, in plain words.
    #[serde(alias = "q", alias = "text", alias = "question", alias = "search")]
    pub query: String,
    /// The collection to search (default: the configured one).
    #[serde(
        default,
        alias = "collection_name",
        alias = "index",
        alias = "namespace"
    )]
    pub collection: Option<String>,
    /// How many results (default 5).
    #[serde(
        default,
        alias = "k",
        alias = "limit",
        alias = "n",
        alias = "num_results"
    )]
    pub top_k: Option<u32>,
    /// bm25, vector or hybrid (default: the collection's setting).
    #[serde(default)]
    pub mode: Option<String>,
    /// Metadata filter on top-level fields, e.g. {"lang": "en", "year": {"$gte": 2020},
    /// "tag": {"$in": ["a", "b"]}}; operators $eq, $ne, $in, $gt, $gte, $lt, $lte.
    #[serde(default, alias = "where", alias = "filters")]
    pub filter: Option<Value>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct AddArgs {
    /// The document's text.
    #[serde(
        alias = "content",
        alias = "body",
        alias = "document",
        alias = "page_content"
    )]
    pub text: String,
    /// Its id (default: a new one). Adding an id that exists replaces that document.
    #[serde(default, alias = "doc_id", alias = "document_id")]
    pub id: Option<String>,
    #[serde(default, alias = "name")]
    pub title: Option<String>,
    /// Metadata: an object of strings, numbers, booleans, lists.
    #[serde(default, alias = "meta", alias = "metadatas")]
    pub metadata: Option<Map<String, Value>>,
    #[serde(
        default,
        alias = "collection_name",
        alias = "index",
        alias = "namespace"
    )]
    pub collection: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct DocArgs {
    /// The document's id.
    #[serde(alias = "doc_id", alias = "document_id")]
    pub id: String,
    #[serde(
        default,
        alias = "collection_name",
        alias = "index",
        alias = "namespace"
    )]
    pub collection: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct ConflictArgs {
    #[serde(
        default,
        alias = "collection_name",
        alias = "index",
        alias = "namespace"
    )]
    pub collection: Option<String>,
    /// With `keep`: the conflicted document to resolve.
    #[serde(default, alias = "doc_id", alias = "document_id")]
    pub id: Option<String>,
    /// The version (stamp) to keep; every other version of `id` is replaced by it.
    #[serde(default, alias = "version", alias = "stamp", alias = "keep_version")]
    pub keep: Option<String>,
}

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
pub struct NoArgs {}

/// Why a tool call failed, as the agent sees it.
struct ToolError {
    code: String,
    message: String,
}

impl From<ClientError> for ToolError {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::Api { code, message, .. } => Self { code, message },
            ClientError::Transport(e) => Self {
                code: "node_unreachable".into(),
                message: format!("the node did not answer: {e}"),
            },
            ClientError::Decode(m) => Self {
                code: "bad_response".into(),
                message: m,
            },
        }
    }
}

impl From<anyhow::Error> for ToolError {
    fn from(e: anyhow::Error) -> Self {
        match e.downcast::<ClientError>() {
            Ok(c) => c.into(),
            Err(e) => invalid(format!("{e:#}")),
        }
    }
}

fn invalid(message: impl Into<String>) -> ToolError {
    ToolError {
        code: "invalid_arguments".into(),
        message: message.into(),
    }
}

/// `id` if it can name a document, else the node's refusal of it: an empty id would name
/// the collection's document list instead (`route_not_found`).
fn doc_id(id: &str) -> Result<&str, ToolError> {
    ragsync_core::DocId::new(id).map_err(|e| ToolError {
        code: "invalid_document_id".into(),
        message: e.to_string(),
    })?;
    Ok(id)
}

/// A tool's answer: text an LLM reads, and the same as structured content; or its error.
fn answer(r: Result<(String, Value), ToolError>) -> CallToolResult {
    match r {
        Ok((text, value)) => {
            let mut out = CallToolResult::success(vec![ContentBlock::text(text)]);
            out.structured_content = Some(value);
            out
        }
        Err(e) => {
            let mut out = CallToolResult::error(vec![ContentBlock::text(format!(
                "error {}: {}",
                e.code, e.message
            ))]);
            out.structured_content = Some(json!({"error": {"code": e.code, "message": e.message}}));
            out
        }
    }
}

/// At most `n` characters of `s`, with an ellipsis when cut.
fn clip(s: &str, n: usize) -> String {
    match s.char_indices().nth(n) {
        Some((at, _)) => format!("{}…", &s[..at]),
        None => s.to_string(),
    }
}

#[tool_router]
impl RagsyncMcp {
    /// A server whose calls go to `client`'s node with `client`'s token (stdio).
    pub fn new(client: Client, collection: Option<String>) -> Self {
        Self {
            client,
            token_per_request: false,
            collection,
            tool_router: Self::tool_router(),
        }
    }

    /// A server whose calls go to `client`'s node with the token of each HTTP request (`/mcp`).
    pub fn per_request(client: Client, collection: Option<String>) -> Self {
        Self {
            token_per_request: true,
            ..Self::new(client, collection)
        }
    }

    /// The client of one call: the request's bearer token over HTTP.
    fn client(&self, ctx: &RequestContext<RoleServer>) -> Result<Client, ToolError> {
        if !self.token_per_request {
            return Ok(self.client.clone());
        }
        let token = ctx
            .extensions
            .get::<axum::http::request::Parts>()
            .and_then(|p| p.headers.get(axum::http::header::AUTHORIZATION))
            .and_then(ragsync_server::auth::bearer_secret)
            .map(str::to_string)
            .ok_or_else(|| ToolError {
                code: "missing_token".into(),
                message: "the MCP request carried no bearer token".into(),
            })?;
        Ok(self.client.with_token(token))
    }

    fn collection(&self, asked: Option<String>) -> Result<String, ToolError> {
        asked
            .filter(|c| !c.trim().is_empty())
            .or_else(|| self.collection.clone())
            .ok_or_else(|| {
                invalid("no collection: name one with `collection` (this server has no default)")
            })
    }

    #[tool(
        description = "Search a collection of documents (BM25, vector or hybrid). Returns the best chunks with their document ids, titles, scores and snippets."
    )]
    async fn search(
        &self,
        Parameters(a): Parameters<SearchArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        answer(
            async {
                let client = self.client(&ctx)?;
                let c = self.collection(a.collection)?;
                let mut body = json!({"query": a.query, "top_k": a.top_k.unwrap_or(DEFAULT_TOP_K)});
                if let Some(m) = a.mode {
                    body["mode"] = json!(m);
                }
                if let Some(f) = a.filter {
                    body["filter"] = f;
                }
                let r = client.post(&["collections", &c, "query"], &body).await?;
                let hits: Vec<Value> = r["results"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|h| {
                        json!({
                            "doc_id": h["doc_id"],
                            "chunk_id": h["chunk_id"],
                            "title": h["title"],
                            "score": h["score"],
                            "scores": h["scores"],
                            "metadata": h["metadata"],
                            "snippet": clip(h["text"].as_str().unwrap_or(""), SNIPPET_CHARS),
                        })
                    })
                    .collect();
                let mut text = format!("{} results in {c}:", hits.len());
                for (i, h) in hits.iter().enumerate() {
                    let title = h["title"]
                        .as_str()
                        .map(|t| format!(" — {t}"))
                        .unwrap_or_default();
                    text.push_str(&format!(
                        "\n{}. {}{title} (score {:.4})\n   {}",
                        i + 1,
                        h["doc_id"].as_str().unwrap_or(""),
                        h["score"].as_f64().unwrap_or(0.0),
                        h["snippet"].as_str().unwrap_or("").replace('\n', " ")
                    ));
                }
                Ok((text, json!({"collection": c, "results": hits})))
            }
            .await,
        )
    }

    #[tool(
        description = "Add a document (text, optional id, title and metadata) to a collection; an existing id is replaced. Returns its id and version."
    )]
    async fn add(
        &self,
        Parameters(a): Parameters<AddArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        answer(
            async {
                let client = self.client(&ctx)?;
                let c = self.collection(a.collection)?;
                let id =
                    a.id.unwrap_or_else(|| format!("mcp-{:016x}", rand::rng().random::<u64>()));
                let mut body = json!({"text": a.text});
                if let Some(t) = a.title {
                    body["title"] = json!(t);
                }
                if let Some(m) = a.metadata {
                    body["metadata"] = Value::Object(m);
                }
                let path = ["collections", c.as_str(), "docs", id.as_str()];
                let r = match client.put(&path, &body).await {
                    // An agent adds to a collection by naming it: a new one is made with the
                    // defaults, as `ragsync ingest` does.
                    Err(e) if e.code() == Some("collection_not_found") => {
                        client.put(&["collections", &c], &json!({})).await?;
                        client.put(&path, &body).await?
                    }
                    r => r?,
                };
                let version = r["version"].clone();
                Ok((
                    format!(
                        "added {id} to {c} (version {})",
                        version.as_str().unwrap_or("?")
                    ),
                    json!({"collection": c, "id": id, "version": version}),
                ))
            }
            .await,
        )
    }

    #[tool(
        description = "Read a document by id: its text, title, metadata, version and any conflicting versions."
    )]
    async fn get(
        &self,
        Parameters(a): Parameters<DocArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        answer(
            async {
                let client = self.client(&ctx)?;
                let c = self.collection(a.collection)?;
                let d = (client.get(&["collections", &c, "docs", doc_id(&a.id)?], &[])).await?;
                let conflicts: Vec<Value> = d["conflicts"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|v| {
                        json!({
                            "version": v["stamp"], "deleted": v["deleted"], "title": v["title"],
                        })
                    })
                    .collect();
                let out = json!({
                    "collection": c,
                    "id": a.id,
                    "title": d["title"],
                    "text": d["text"],
                    "metadata": d["metadata"],
                    "version": d["version"],
                    "stamp": d["stamp"],
                    "conflicts": conflicts,
                });
                let mut text = format!("{} in {c}", a.id);
                if let Some(t) = d["title"].as_str() {
                    text.push_str(&format!(" — {t}"));
                }
                text.push_str(&format!(
                    "\nversion {}\nmetadata {}",
                    d["stamp"].as_str().unwrap_or("?"),
                    d["metadata"]
                ));
                if !conflicts.is_empty() {
                    let stamps: Vec<&str> = conflicts
                        .iter()
                        .filter_map(|v| v["version"].as_str())
                        .collect();
                    text.push_str(&format!(
                        "\nCONFLICT: other versions {} (resolve with the conflicts tool)",
                        stamps.join(", ")
                    ));
                }
                match d["text"].as_str() {
                    Some(t) => text.push_str(&format!("\n\n{}", clip(t, GET_TEXT_CHARS))),
                    None => text.push_str("\n\n(no text content)"),
                }
                Ok((text, out))
            }
            .await,
        )
    }

    #[tool(description = "Delete a document by id.")]
    async fn delete(
        &self,
        Parameters(a): Parameters<DocArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        answer(
            async {
                let client = self.client(&ctx)?;
                let c = self.collection(a.collection)?;
                let r = client
                    .delete(&["collections", &c, "docs", doc_id(&a.id)?])
                    .await?;
                Ok((
                    format!("deleted {} from {c}", a.id),
                    json!({"collection": c, "id": a.id, "deleted": true, "version": r["version"]}),
                ))
            }
            .await,
        )
    }

    #[tool(description = "List the collections of the node, with their document counts.")]
    async fn list_collections(
        &self,
        Parameters(_): Parameters<NoArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        answer(
            async {
                let client = self.client(&ctx)?;
                let r = client.get(&["collections"], &[]).await?;
                let list: Vec<Value> = r["collections"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|c| json!({"name": c["name"], "documents": c["documents"]}))
                    .collect();
                let mut text = format!("{} collections:", list.len());
                for c in &list {
                    text.push_str(&format!(
                        "\n- {} ({} documents)",
                        c["name"].as_str().unwrap_or(""),
                        c["documents"]
                    ));
                }
                Ok((text, json!({"collections": list})))
            }
            .await,
        )
    }

    #[tool(
        description = "List the documents of a collection that hold conflicting versions; with `id` and `keep`, resolve one by keeping that version."
    )]
    async fn conflicts(
        &self,
        Parameters(a): Parameters<ConflictArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        answer(
            async {
                let client = self.client(&ctx)?;
                let c = self.collection(a.collection)?;
                match (a.id, a.keep) {
                    (Some(id), Some(keep)) => {
                        let r = crate::conflicts::resolve(&client, &c, &id, &keep).await?;
                        Ok((
                            format!("resolved {id} in {c}: kept {keep}"),
                            json!({
                                "collection": c, "id": id, "kept": keep, "version": r["version"],
                            }),
                        ))
                    }
                    (None, None) => {
                        let docs = crate::conflicts::list(&client, &c).await?;
                        let mut text = format!("{} conflicted documents in {c}", docs.len());
                        for d in &docs {
                            let stamps: Vec<String> = std::iter::once(&d["winner"])
                                .chain(d["conflicts"].as_array().into_iter().flatten())
                                .map(|v| {
                                    let gone = if v["deleted"] == true {
                                        " (deleted)"
                                    } else {
                                        ""
                                    };
                                    format!("{}{gone}", v["stamp"].as_str().unwrap_or("?"))
                                })
                                .collect();
                            text.push_str(&format!(
                                "\n- {}: versions {}",
                                d["id"].as_str().unwrap_or(""),
                                stamps.join(", ")
                            ));
                        }
                        Ok((text, json!({"collection": c, "documents": docs})))
                    }
                    _ => Err(invalid(
                        "give both `id` and `keep` to resolve, or neither to list",
                    )),
                }
            }
            .await,
        )
    }

    #[tool(description = "The node's status: its documents, its peers and how far behind each is.")]
    async fn status(
        &self,
        Parameters(_): Parameters<NoArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        answer(
            async {
                let client = self.client(&ctx)?;
                let s = client.get(&["status"], &[]).await?;
                let peers: Vec<Value> = s["peers"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|p| {
                        json!({
                            "node_id": p["node_id"],
                            "url": p["url"],
                            "pull": p["pull"],
                            "push": p["push"],
                        })
                    })
                    .collect();
                let mut text = format!(
                    "node {}: {} documents in {} collections, feed head {}",
                    s["node_id"].as_str().unwrap_or("?"),
                    s["counts"]["documents"],
                    s["counts"]["collections"],
                    s["counts"]["head_seq"]
                );
                if let Some(ix) = s["search"].as_object() {
                    text.push_str(&format!(
                        "; search indexed through {}",
                        ix["indexed_through"]
                    ));
                }
                for p in &peers {
                    text.push_str(&format!(
                        "\npeer {} {}: pull {}",
                        p["node_id"].as_str().unwrap_or("?"),
                        p["url"].as_str().unwrap_or(""),
                        p["pull"]
                    ));
                }
                let out = json!({
                    "node_id": s["node_id"],
                    "counts": s["counts"],
                    "search": s["search"],
                    "peers": peers,
                });
                Ok((text, out))
            }
            .await,
        )
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for RagsyncMcp {
    fn get_info(&self) -> ServerConfig {
        let mut info = ServerConfig::new(ServerCapabilities::builder().enable_tools().build());
        info.server_info = Implementation::new("ragsync", env!("CARGO_PKG_VERSION"));
        info.instructions = Some(match &self.collection {
            Some(c) => format!(
                "A replicated document store with search. Tools default to collection {c:?}."
            ),
            None => "A replicated document store with search. Name a collection in each call \
                     (list_collections shows them)."
                .into(),
        });
        info
    }
}

/// The `/mcp` service of a node whose API router is `api`: streamable HTTP, each call made
/// to that router in process with the caller's token (the same routes, token check and
/// limits as over the network). `allowed_hosts` are the `Host`
/// values it accepts (empty: loopback names); its body limit is the node's.
pub fn http_service(
    api: axum::Router,
    allowed_hosts: &[String],
    collection: Option<String>,
    max_body_bytes: usize,
) -> anyhow::Result<axum::Router> {
    use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
    use rmcp::transport::streamable_http_server::{
        StreamableHttpServerConfig, StreamableHttpService,
    };
    // No token of its own: each call carries the MCP request's.
    let client = Client::in_process(api);
    // Stateless, answering plain JSON: the tools are request-response and keep no state
    // between calls, so a call needs no session worker, no SSE framing and no session
    // teardown (each cost a round of channel hops per call).
    let mut config = StreamableHttpServerConfig::default()
        .with_max_request_body_bytes(max_body_bytes)
        .with_legacy_session_mode(false)
        .with_json_response(true)
        .with_sse_keep_alive(None);
    if !allowed_hosts.is_empty() {
        config = config.with_allowed_hosts(allowed_hosts.iter().cloned());
    }
    let service: StreamableHttpService<RagsyncMcp, LocalSessionManager> =
        StreamableHttpService::new(
            // One server built up front (its tool router holds every tool's schema), cloned
            // for each stateless request rather than built again.
            {
                let server = RagsyncMcp::per_request(client, collection);
                move || Ok(server.clone())
            },
            Default::default(),
            config,
        );
    Ok(axum::Router::new().fallback_service(service))
}
