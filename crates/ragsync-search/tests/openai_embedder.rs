//! The OpenAI-compatible embedder against a small stand-in server on `127.0.0.1:0` that
//! answers `/v1/embeddings` the way such servers do (vectors by `index`, possibly out of
//! order, not normalised), checks the bearer token and can be told to misbehave.

use axum::Json;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use ragsync_search::embed::{EmbedError, Embedder, OpenAiCompatible, dot};
use serde_json::{Value, json};

const KEY: &str = "sk-test";

/// A vector for `text`: letter counts over 4 buckets, scaled by 3 (so not unit length).
fn vector(text: &str, dims: usize) -> Vec<f32> {
    let mut v = vec![0.0f32; dims];
    for (i, b) in text.bytes().enumerate() {
        v[(b as usize + i) % dims] += 3.0;
    }
    v
}

async fn embeddings(headers: HeaderMap, Json(body): Json<Value>) -> (StatusCode, Json<Value>) {
    if headers.get("authorization").and_then(|h| h.to_str().ok()) != Some(&format!("Bearer {KEY}"))
    {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": {"message": "bad key"}})),
        );
    }
    let model = body["model"].as_str().unwrap_or("");
    let dims = match model {
        "small" => 4,
        "wrong-size" => 3,
        _ => {
            return (
                StatusCode::NOT_FOUND,
                Json(json!({"error": {"message": "no such model"}})),
            );
        }
    };
    let inputs: Vec<String> = body["input"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    // Answered in reverse order: clients must use `index`.
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .rev()
        .map(|(i, t)| json!({"object": "embedding", "index": i, "embedding": vector(t, dims)}))
        .collect();
    (
        StatusCode::OK,
        Json(json!({"object": "list", "data": data, "model": model})),
    )
}

/// Serves the stand-in on a thread of its own; returns its base URL.
fn stand_in() -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(format!("http://{}", listener.local_addr().unwrap()))
                .unwrap();
            let app = axum::Router::new().route("/v1/embeddings", post(embeddings));
            axum::serve(listener, app).await.unwrap();
        });
    });
    rx.recv().unwrap()
}

#[test]
fn vectors_come_back_in_order_normalised_and_batched() {
    let base = stand_in();
    let e = OpenAiCompatible::new(&base, "small", Some(KEY.into()), 4).unwrap();
    assert_eq!(
        (e.model_id(), e.dimension()),
        ("openai-compatible/small", 4)
    );
    let texts: Vec<String> = (0..600).map(|i| format!("text number {i}")).collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let v = e.embed(&refs).unwrap();
    assert_eq!(v.len(), 600);
    for (t, got) in refs.iter().zip(&v) {
        assert!((dot(got, got) - 1.0).abs() < 1e-5);
        let want = vector(t, 4);
        let n: f32 = want.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!(
            got.iter().zip(&want).all(|(a, b)| (a - b / n).abs() < 1e-5),
            "{t}"
        );
    }
    // The URL may name the API root or the endpoint itself.
    for url in [format!("{base}/v1"), format!("{base}/v1/embeddings/")] {
        let e = OpenAiCompatible::new(&url, "small", Some(KEY.into()), 4).unwrap();
        assert_eq!(e.embed(&["x"]).unwrap().len(), 1);
    }
}

#[test]
fn refusals_and_wrong_answers_are_errors() {
    let base = stand_in();
    let err = |e: Result<Vec<Vec<f32>>, EmbedError>| match e {
        Err(EmbedError::Model(m)) => m,
        other => panic!("expected a model error, got {other:?}"),
    };
    let no_key = OpenAiCompatible::new(&base, "small", None, 4).unwrap();
    assert!(err(no_key.embed(&["a"])).contains("401"));
    let wrong = OpenAiCompatible::new(&base, "wrong-size", Some(KEY.into()), 4).unwrap();
    assert!(err(wrong.embed(&["a"])).contains("3 dimensions"));
    let missing = OpenAiCompatible::new(&base, "nope", Some(KEY.into()), 4).unwrap();
    assert!(err(missing.embed(&["a"])).contains("404"));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let closed =
        OpenAiCompatible::new(&format!("http://127.0.0.1:{port}"), "small", None, 4).unwrap();
    assert!(matches!(closed.embed(&["a"]), Err(EmbedError::Model(_))));
    let e = OpenAiCompatible::new(&base, "small", Some(KEY.into()), 4).unwrap();
    assert!(matches!(e.embed(&[" "]), Err(EmbedError::Input(_))));
    assert!(OpenAiCompatible::new(&base, "small", None, 0).is_err());
}
