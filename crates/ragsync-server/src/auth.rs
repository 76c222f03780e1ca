//! Bearer-token authentication and role checks.
//!
//! Tokens are kept only as BLAKE3 hashes; a presented token is hashed and compared with every
//! known hash in constant time (`blake3::Hash` equality), so neither the comparison nor the
//! position of a match leaks through timing. Tokens are never logged.
//!
//! A [`Principal`] carries a [`Scope`]; today every token has [`Scope::All`], and per-collection
//! scopes plug in at [`Principal::require`] without changing callers.

use std::collections::BTreeSet;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use ragsync_core::CollectionName;
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::error::ApiError;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything, including collections, peers and node settings.
    Admin,
    /// Read and write documents.
    Write,
    /// Read documents and status.
    Read,
    /// Another node: the replication endpoints and blobs.
    Peer,
}

/// What a request needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Permission {
    Status,
    ReadDocs,
    WriteDocs,
    ManageCollections,
    ReadBlobs,
    Sync,
    /// Add, remove and drive peers (admin only).
    ManagePeers,
}

impl Role {
    pub fn allows(self, p: Permission) -> bool {
        use Permission::*;
        match self {
            Role::Admin => true,
            Role::Write => matches!(p, Status | ReadDocs | WriteDocs | ReadBlobs),
            Role::Read => matches!(p, Status | ReadDocs | ReadBlobs),
            Role::Peer => matches!(p, Status | Sync | ReadBlobs),
        }
    }
}

/// Which collections a token reaches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    All,
    Collections(BTreeSet<CollectionName>),
}

/// The authenticated caller of a request.
#[derive(Clone, Debug)]
pub struct Principal {
    /// The token's name, for logs and the audit trail (never the secret).
    pub name: String,
    pub role: Role,
    pub scope: Scope,
}

impl Principal {
    /// Refuses with 403 unless the role allows `p` (on `collection`, when given).
    pub fn require(
        &self,
        p: Permission,
        collection: Option<&CollectionName>,
    ) -> Result<(), ApiError> {
        // A scoped token reaches only its collections: a request that names none (the whole
        // feed, a blob by content id, the list of collections) is refused unless it only
        // reads the node's status.
        let in_scope = match (&self.scope, collection) {
            (Scope::All, _) => true,
            (Scope::Collections(set), Some(c)) => set.contains(c),
            (Scope::Collections(_), None) => p == Permission::Status,
        };
        if self.role.allows(p) && in_scope {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!(
                    "token {:?} with role {:?} may not do this",
                    self.name, self.role
                ),
            ))
        }
    }
}

/// A token as configured: a name, a role and the secret. Any other key is refused: a
/// `collections` list here would otherwise be ignored, and the token reach every collection.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSpec {
    pub name: String,
    pub role: Role,
    pub secret: String,
}

impl std::fmt::Debug for TokenSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSpec")
            .field("name", &self.name)
            .field("role", &self.role)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// The known tokens, by hash.
#[derive(Clone, Debug, Default)]
pub struct Auth {
    entries: Vec<([u8; 32], Principal)>,
}

/// The hash under which a token secret is kept.
pub fn token_hash(secret: &str) -> [u8; 32] {
    *blake3::hash(secret.as_bytes()).as_bytes()
}

impl Auth {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, spec: &TokenSpec) {
        self.add_hashed(token_hash(&spec.secret), spec.name.clone(), spec.role);
    }

    pub fn add_hashed(&mut self, hash: [u8; 32], name: String, role: Role) {
        self.entries.push((
            hash,
            Principal {
                name,
                role,
                scope: Scope::All,
            },
        ));
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The principal of a presented secret. Every entry is compared, in constant time.
    pub fn authenticate(&self, secret: &str) -> Option<&Principal> {
        let presented = blake3::Hash::from_bytes(token_hash(secret));
        let mut found = None;
        for (hash, principal) in &self.entries {
            if presented == blake3::Hash::from_bytes(*hash) && found.is_none() {
                found = Some(principal);
            }
        }
        found
    }
}

/// Middleware: every request must carry `Authorization: Bearer <token>` of a known token.
/// The caller's [`Principal`] goes into the request's extensions.
/// The secret of an `Authorization: Bearer <secret>` value, `None` for any other value. The
/// scheme name is case-insensitive (RFC 9110 §11.1).
pub fn bearer_secret(value: &axum::http::HeaderValue) -> Option<&str> {
    value
        .to_str()
        .ok()
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, secret)| secret.trim())
        .filter(|s| !s.is_empty())
}

pub async fn require_token(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let unauthorized = |code, msg: &str| ApiError::new(StatusCode::UNAUTHORIZED, code, msg);
    // An empty header (what `curl -H "Authorization: $TOKEN"` sends when the variable is
    // unset) names no token, as a missing one does.
    let value = (req.headers().get(header::AUTHORIZATION))
        .filter(|v| !v.as_bytes().trim_ascii().is_empty())
        .ok_or_else(|| {
            unauthorized("missing_token", "Authorization: Bearer <token> is required")
        })?;
    let secret = bearer_secret(value)
        .ok_or_else(|| unauthorized("invalid_token", "expected Authorization: Bearer <token>"))?;
    let principal = state
        .auth
        .authenticate(secret)
        .ok_or_else(|| unauthorized("invalid_token", "unknown token"))?
        .clone();
    req.extensions_mut().insert(principal);
    Ok(next.run(req).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scoped(role: Role, names: &[&str]) -> Principal {
        let set = names
            .iter()
            .map(|n| CollectionName::new(*n).unwrap())
            .collect();
        Principal {
            name: "t".into(),
            role,
            scope: Scope::Collections(set),
        }
    }

    #[test]
    fn scoped_tokens_reach_only_their_collections() {
        let p = scoped(Role::Peer, &["a"]);
        let (a, b) = (
            CollectionName::new("a").unwrap(),
            CollectionName::new("b").unwrap(),
        );
        assert!(p.require(Permission::Sync, Some(&a)).is_ok());
        assert!(p.require(Permission::Sync, Some(&b)).is_err());
        // Requests that name no collection would reach all of them: refused, but for status.
        assert!(p.require(Permission::Sync, None).is_err());
        assert!(p.require(Permission::ReadBlobs, None).is_err());
        assert!(p.require(Permission::Status, None).is_ok());
        assert!(
            scoped(Role::Read, &["a"])
                .require(Permission::WriteDocs, Some(&a))
                .is_err()
        );
    }

    #[test]
    fn secrets_are_found_by_hash_and_never_debug_printed() {
        let mut auth = Auth::new();
        let spec = TokenSpec {
            name: "ci".into(),
            role: Role::Write,
            secret: "s3cret-0123456789".into(),
        };
        auth.add(&spec);
        assert_eq!(
            auth.authenticate("s3cret-0123456789").map(|p| p.role),
            Some(Role::Write)
        );
        assert!(auth.authenticate("s3cret-012345678").is_none());
        assert!(!format!("{spec:?}").contains("s3cret"));
    }
}
