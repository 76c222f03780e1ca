//! The CLI as a user runs it: `serve` with a generated token or a config file, and `ingest`,
//! `get`, `delete`, `status` against it.

use std::io::{BufRead, BufReader};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::{Command, Stdio};

use ragsync::node_proc::NodeProcess;
use serde_json::Value;

const EXE: &str = env!("CARGO_BIN_EXE_ragsync");
const TOKEN: &str = "cli-test-token-0123456789abcdef";

fn ragsync(args: &[&str], url: &str) -> (bool, String, String) {
    let out = Command::new(EXE)
        .args(args)
        .env("RAGSYNC_URL", url)
        .env("RAGSYNC_TOKEN", TOKEN)
        .env("RAGSYNC_LOG", "warn")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

#[test]
fn ingest_is_resumable_and_get_delete_status_work() {
    let dir = tempfile::tempdir().unwrap();
    let docs = dir.path().join("docs");
    write(&docs.join("a.md"), "# A\nalpha");
    write(&docs.join("sub/b.txt"), "beta");
    write(&docs.join(".hidden/secret"), "never ingested");
    std::fs::write(docs.join("bin.dat"), [0u8, 255, 1, 254]).unwrap();
    let corpus = dir.path().join("corpus.jsonl");
    write(
        &corpus,
        "{\"_id\": \"q1\", \"title\": \"One\", \"text\": \"first passage\", \"metadata\": {\"src\": \"x\"}}\n\n{\"_id\": \"q2\", \"title\": \"\", \"text\": \"second\"}\n",
    );
    // Skipped, and reported: a file the node would refuse as too large, and one whose name is
    // not UTF-8 (a lossy id could collide with another file's).
    write(&docs.join("big.txt"), &"z".repeat(5000));
    std::fs::write(docs.join(std::ffi::OsStr::from_bytes(b"bad\xffname")), "x").unwrap();
    let node = NodeProcess::spawn(
        Path::new(EXE),
        &dir.path().join("node"),
        TOKEN,
        // Smaller than ingest's default batch: ingest must fit its batches to the node.
        &["--max-content-bytes", "4096", "--max-batch-docs", "2"],
    )
    .unwrap();
    let (docs_s, corpus_s) = (docs.to_str().unwrap(), corpus.to_str().unwrap());

    let (ok, out, err) = ragsync(
        &["ingest", docs_s, corpus_s, "--collection", "kb", "--quiet"],
        &node.url,
    );
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("sent 5 documents (5 created, 0 updated); 0 already stored"),
        "{out}"
    );
    assert!(out.contains("2 records not stored:"), "{out}");
    assert!(
        out.contains("name is not UTF-8, so it cannot be a document id"),
        "{out}"
    );
    assert!(
        out.contains("big.txt: 5000 bytes, larger than the node's max_content_bytes (4096)"),
        "{out}"
    );

    write(&docs.join("a.md"), "# A\nalpha, edited");
    let (ok, out, _) = ragsync(
        &["ingest", docs_s, corpus_s, "--collection", "kb", "--quiet"],
        &node.url,
    );
    assert!(ok);
    assert!(
        out.contains("sent 1 documents (0 created, 1 updated); 4 already stored"),
        "{out}"
    );

    let (ok, out, _) = ragsync(&["get", "--collection", "kb", "sub/b.txt"], &node.url);
    assert!(ok);
    let doc: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["text"], "beta");
    let (_, out, _) = ragsync(&["get", "-c", "kb", "q1"], &node.url);
    let doc: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (&doc["title"], &doc["metadata"]["src"]),
        (&Value::from("One"), &Value::from("x"))
    );
    let (_, out, _) = ragsync(&["get", "-c", "kb", "bin.dat"], &node.url);
    let doc: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["content_base64"], "AP8B/g==");

    let (ok, _, _) = ragsync(&["delete", "-c", "kb", "q2"], &node.url);
    assert!(ok);
    let (ok, _, err) = ragsync(&["get", "-c", "kb", "q2"], &node.url);
    assert!(!ok && err.contains("document_deleted"), "{err}");
    let (ok, out, _) = ragsync(&["status"], &node.url);
    assert!(ok);
    let status: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (
            &status["counts"]["documents"],
            &status["counts"]["tombstones"]
        ),
        (&Value::from(4), &Value::from(1))
    );

    let (ok, _, err) = ragsync(&["ingest", docs_s, "--collection", "Bad Name"], &node.url);
    assert!(!ok && err.contains("invalid collection name"), "{err}");
}

/// A child process killed when dropped, so a failed assertion leaves no process behind.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `serve` with no token configured (`RAGSYNC_TOKENS` empty) and returns the printed
/// token and URL.
fn serve_without_tokens(data: &Path) -> (KillOnDrop, Option<String>, String) {
    let mut child = Command::new(EXE)
        .args([
            "serve",
            "--data",
            data.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ])
        .env_remove("RAGSYNC_ADMIN_TOKEN")
        // Set but empty (as `RAGSYNC_TOKENS=` in a unit file leaves it): no token either.
        .env("RAGSYNC_TOKENS", "")
        .env("RAGSYNC_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let child = KillOnDrop(child);
    let mut token = None;
    let mut lines = BufReader::new(stdout).lines();
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(t) = line.trim().strip_prefix("RAGSYNC_TOKEN=") {
            token = Some(t.to_string());
        }
        if let Some(url) = line.strip_prefix("ragsync listening on ") {
            return (child, token, url.to_string());
        }
    }
    panic!("serve exited before listening");
}

#[test]
fn first_start_generates_an_admin_token_once() {
    let dir = tempfile::tempdir().unwrap();
    let (first, token, url) = serve_without_tokens(dir.path());
    let token = token.expect("a generated token is printed on first start");
    let status = |url: &str, token: &str| {
        Command::new(EXE)
            .args(["status", "--url", url, "--token", token])
            .env("RAGSYNC_LOG", "warn")
            .output()
            .unwrap()
            .status
            .success()
    };
    assert!(status(&url, &token));
    assert!(!status(&url, "some-other-token-0123456789"));
    drop(first);
    let (_second, again, url) = serve_without_tokens(dir.path());
    assert_eq!(again, None, "the token is printed only on first start");
    assert!(
        status(&url, &token),
        "the generated token still works after a restart"
    );
}

#[test]
fn config_file_sets_tokens_and_limits_and_flags_override_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ragsync.toml");
    write(
        &config,
        &format!(
            "durability = \"extra\"\n[limits]\nmax_batch_docs = 2\n\n[[tokens]]\nname = \"reader\"\nrole = \"read\"\nsecret = \"reader-secret-0123456789\"\n\n[[tokens]]\nname = \"ops\"\nrole = \"admin\"\nsecret = \"{TOKEN}\"\n"
        ),
    );
    let node = NodeProcess::spawn(
        Path::new(EXE),
        &dir.path().join("node"),
        "flag-admin-token-0123456789",
        &[
            "--config",
            config.to_str().unwrap(),
            "--max-title-bytes",
            "4",
        ],
    )
    .unwrap();
    let (ok, out, _) = ragsync(&["status"], &node.url);
    assert!(ok);
    let status: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(status["durability"], "extra");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let c = node.client();
        c.put(&["collections", "c"], &serde_json::json!({})).await.unwrap();
        let three = serde_json::json!({"docs": [{"id": "a", "text": "x"}, {"id": "b", "text": "x"}, {"id": "c", "text": "x"}]});
        let err = c.post(&["collections", "c", "docs:batch"], &three).await.unwrap_err();
        assert_eq!(err.code(), Some("batch_too_large"));
        let long_title = serde_json::json!({"text": "x", "title": "longer"});
        let err = c.put(&["collections", "c", "docs", "a"], &long_title).await.unwrap_err();
        assert_eq!(err.code(), Some("title_too_large"));
    });
    let reader = Command::new(EXE)
        .args([
            "status",
            "--url",
            &node.url,
            "--token",
            "reader-secret-0123456789",
        ])
        .output()
        .unwrap();
    assert!(reader.status.success());

    let bad = dir.path().join("bad.toml");
    write(
        &bad,
        "[[tokens]]\nname = \"x\"\nrole = \"admin\"\nsecret = \"short\"\n",
    );
    let out = Command::new(EXE)
        .args([
            "serve",
            "--config",
            bad.to_str().unwrap(),
            "--data",
            dir.path().join("n2").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 16 characters"));
}

/// The README's main command: the guided demo runs to its end (on the repository's samples).
#[test]
fn the_demo_runs_to_the_end() {
    let out = Command::new(EXE)
        .arg("demo")
        .env("RAGSYNC_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for step in [
        "409 Conflict",
        "every node shows the same winner and the same conflict",
        "A, B and C: deletes.md answers 404 document_deleted",
        "demo finished: three nodes converged",
    ] {
        assert!(stdout.contains(step), "missing {step:?} in:\n{stdout}");
    }
}

/// Ctrl-C during an ingest stops it after the batch in flight (exit status 130); the same
/// command run again sends only what is missing.
#[test]
fn an_interrupted_ingest_resumes_where_it_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("corpus.jsonl");
    let lines: String = (0..60_000)
        .map(|i| {
            format!(
                "{{\"_id\": \"d{i}\", \"text\": \"passage {i} {}\"}}\n",
                "word ".repeat(40)
            )
        })
        .collect();
    write(&corpus, &lines);
    let node = NodeProcess::spawn(Path::new(EXE), &dir.path().join("node"), TOKEN, &[]).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let stored = || {
        rt.block_on(node.client().get(&["status"], &[])).unwrap()["counts"]["documents"]
            .as_u64()
            .unwrap()
    };
    let args = [
        "ingest",
        corpus.to_str().unwrap(),
        "-c",
        "kb",
        "--quiet",
        "--batch-docs",
        "500",
    ];
    let mut child = KillOnDrop(
        Command::new(EXE)
            .args(args)
            .env("RAGSYNC_URL", &node.url)
            .env("RAGSYNC_TOKEN", TOKEN)
            .env("RAGSYNC_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while stored() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "ingest stored nothing"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let pid = nix::unistd::Pid::from_raw(child.0.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let status = child.0.wait().unwrap();
    let mut out = String::new();
    std::io::Read::read_to_string(&mut child.0.stdout.take().unwrap(), &mut out).unwrap();
    let after_stop = stored();
    if status.code() == Some(130) {
        assert!(out.contains("interrupted"), "{out}");
        assert!(
            after_stop < 60_000,
            "the interrupt came too late to test anything"
        );
    } else {
        // The whole corpus went in before the signal arrived; nothing left to resume.
        assert!(status.success() && after_stop == 60_000, "{status:?} {out}");
    }
    let (ok, out, _) = ragsync(&args, &node.url);
    assert!(ok, "{out}");
    assert!(
        out.contains(&format!("{after_stop} already stored")),
        "{out}"
    );
    assert_eq!(stored(), 60_000);
}

/// Issue 11: a file larger than `--batch-bytes` but within the node's limits is sent alone;
/// corpus records the node would refuse are skipped and reported with `file:line` (the rest
/// is stored, and a re-run does not fail on them); links to files inside the folder are
/// followed, others reported.
#[test]
fn ingest_sends_large_files_reports_bad_records_and_follows_links_within() {
    let dir = tempfile::tempdir().unwrap();
    let docs = dir.path().join("docs");
    write(&docs.join("a.md"), "alpha");
    let big = "large text, sent alone in its request\n".repeat(270_000);
    assert!(big.len() > 10_000_000);
    write(&docs.join("big.txt"), &big);
    std::os::unix::fs::symlink(docs.join("a.md"), docs.join("link.md")).unwrap();
    write(&dir.path().join("elsewhere.txt"), "not in the folder");
    std::os::unix::fs::symlink(dir.path().join("elsewhere.txt"), docs.join("outside")).unwrap();
    std::fs::create_dir(docs.join("sub")).unwrap();
    std::os::unix::fs::symlink(docs.join("sub"), docs.join("dirlink")).unwrap();
    std::os::unix::fs::symlink(docs.join("gone"), docs.join("dangling")).unwrap();
    let corpus = dir.path().join("corpus.jsonl");
    let long_title = "t".repeat(2000);
    write(
        &corpus,
        &format!(
            "{{\"_id\": \"ok1\", \"text\": \"one\"}}\n\
             {{\"_id\": \"long\", \"title\": \"{long_title}\", \"text\": \"x\"}}\n\
             not json\n\
             {{\"_id\": \"wide\", \"text\": \"x\", \"metadata\": {{\"n\": 99999999999999999999}}}}\n\
             {{\"_id\": \"ok2\", \"text\": \"two\"}}\n"
        ),
    );
    // A line that is not UTF-8 is one more bad record, not the end of the corpus.
    let mut bytes = std::fs::read(&corpus).unwrap();
    bytes.extend_from_slice(
        b"{\"_id\": \"latin1\", \"text\": \"caf\xe9\"}\n{\"_id\": \"ok3\", \"text\": \"three\"}\n",
    );
    std::fs::write(&corpus, bytes).unwrap();
    // The folder is given through a link: the link itself is no refusal.
    let docs_link = dir.path().join("docs-link");
    std::os::unix::fs::symlink(&docs, &docs_link).unwrap();
    let node = NodeProcess::spawn(Path::new(EXE), &dir.path().join("node"), TOKEN, &[]).unwrap();
    let (docs_s, corpus_s) = (docs_link.to_str().unwrap(), corpus.to_str().unwrap());
    let args = ["ingest", docs_s, corpus_s, "--collection", "kb", "--quiet"];
    let (ok, out, err) = ragsync(&args, &node.url);
    assert!(ok, "{out}{err}");
    assert!(out.contains("sent 6 documents (6 created"), "{out}");
    assert!(out.contains("7 records not stored:"), "{out}");
    for expected in [
        format!("{corpus_s}:2: title of 2000 bytes is larger than the node's max_title_bytes"),
        format!("{corpus_s}:3: not a corpus record"),
        format!("{corpus_s}:4: invalid metadata: integer 99999999999999999999"),
        format!("{corpus_s}:6: the line is not UTF-8"),
        "outside: a symbolic link that leads outside the folder given".to_string(),
        "dirlink: a symbolic link to a folder".to_string(),
        "dangling: a symbolic link that leads nowhere".to_string(),
    ] {
        assert!(out.contains(&expected), "missing {expected:?} in:\n{out}");
    }
    let (ok, got, _) = ragsync(&["get", "-c", "kb", "big.txt"], &node.url);
    assert!(ok);
    let doc: Value = serde_json::from_str(&got).unwrap();
    assert!(
        doc["text"].as_str() == Some(big.as_str()),
        "big.txt differs"
    );
    let (ok, got, _) = ragsync(&["get", "-c", "kb", "link.md"], &node.url);
    assert!(ok);
    assert_eq!(
        serde_json::from_str::<Value>(&got).unwrap()["text"],
        "alpha"
    );

    // The re-run sends nothing and reports the same records, without failing.
    let (ok, out, err) = ragsync(&args, &node.url);
    assert!(ok, "{out}{err}");
    assert!(out.contains("sent 0 documents"), "{out}");
    assert!(out.contains("7 records not stored:"), "{out}");
}

#[test]
fn eval_scores_a_beir_folder_and_names_the_records_it_could_not_store() {
    let dir = tempfile::tempdir().unwrap();
    let beir = dir.path().join("beir");
    write(
        &beir.join("corpus.jsonl"),
        concat!(
            "{\"_id\": \"d1\", \"title\": \"Aardvark\", \"text\": \"it eats termites at night\"}\n",
            "{\"_id\": \"d2\", \"title\": \"\", \"text\": \"bison graze on the open plains\"}\n",
            // Some exporters write integer ids; the judgments name them by their digits.
            "{\"_id\": 3, \"text\": \"a cat sleeps all day\"}\n",
            "{\"_id\": \"d4\", \"text\": \"ants build nests\"}\n",
            // Decomposed: the node keeps it composed (NFC), and so must the judgments.
            "{\"_id\": \"cafe\\u0301\", \"text\": \"an espresso bar\"}\n",
            "{\"_id\": \"bad\\\\id\", \"text\": \"never stored\"}\n",
            "{\"_id\": null, \"text\": \"no id\"}\n",
        ),
    );
    write(
        &beir.join("queries.jsonl"),
        concat!(
            "{\"_id\": \"q1\", \"text\": \"aardvark\"}\n",
            "{\"_id\": 2, \"text\": \"cat\"}\n",
            "{\"_id\": \"q3\", \"text\": \"ants\"}\n",
            "{\"_id\": \"q5\", \"text\": \"espresso\"}\n",
            "{\"_id\": \"q9\", \"text\": \"not judged\"}\n",
        ),
    );
    write(
        &beir.join("qrels/test.tsv"),
        "query-id\tcorpus-id\tscore\nq1\td1\t2\n2\t3\t1\nq3\td4\t2\nq3\td2\t1\nq5\tcafe\u{301}\t1\n",
    );
    let node = NodeProcess::spawn(Path::new(EXE), &dir.path().join("node"), TOKEN, &[]).unwrap();
    let args = [
        "eval",
        beir.to_str().unwrap(),
        "-c",
        "ev",
        "--model",
        "none",
    ];
    let (ok, out, err) = ragsync(&args, &node.url);
    assert!(ok, "{out}{err}");
    // q1, 2 and q5 find their one judged document first (nDCG and recall 1); q3 finds d4
    // (grade 2) but not d2 (grade 1): nDCG 2 / (2 + 1/log2 3) = 0.7602, recall 0.5.
    assert!(
        out.contains("bm25 ndcg@10 0.9400 recall@10 0.8750 (4 judged queries)"),
        "{out}"
    );
    assert!(
        out.contains("vector not available: collection ev has no embedding model"),
        "{out}"
    );
    assert!(err.contains("ingested 5 documents"), "{err}");
    assert!(err.contains("2 records not stored:"), "{err}");
    let corpus = beir.join("corpus.jsonl");
    for line in [6, 7] {
        let origin = format!("{}:{line}: ", corpus.display());
        assert!(err.contains(&origin), "missing {origin:?} in:\n{err}");
    }
    assert!(
        err.contains("_id must be a string or an integer, not null"),
        "{err}"
    );
    // Run again: nothing to send, the same scores, the same two records named.
    let (ok, again, err) = ragsync(&args, &node.url);
    assert!(ok, "{again}{err}");
    assert_eq!(again, out);
    assert!(!err.contains("ingested"), "{err}");
    assert!(err.contains("2 records not stored:"), "{err}");

    // An external collection's vectors come from clients: eval scores BM25 and says why the
    // other lines are missing, rather than waiting for vectors that never come.
    let c = node.client();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(c.put(
        &["collections", "ext"],
        &serde_json::json!({"embedding": {"model": "external", "dimension": 3}}),
    ))
    .unwrap();
    let mut ext = args;
    ext[3] = "ext";
    let (ok, out, err) = ragsync(&ext, &node.url);
    assert!(ok, "{out}{err}");
    assert!(out.contains("bm25 ndcg@10 0.9400"), "{out}");
    assert!(
        out.contains("vector not available: collection ext has vectors from its clients"),
        "{out}"
    );
    // Refused before anything is written: --model external, judgments of no query, no corpus.
    let mut new_ext = args;
    (new_ext[3], new_ext[5]) = ("ext2", "external");
    let (ok, _, err) = ragsync(&new_ext, &node.url);
    assert!(!ok && err.contains("--model external"), "{err}");
    write(
        &beir.join("qrels/test.tsv"),
        "q7	d1	1
",
    );
    let mut other = args;
    other[3] = "ev3";
    let (ok, _, err) = ragsync(&other, &node.url);
    assert!(!ok && err.contains("judges none of the 5 queries"), "{err}");
    std::fs::remove_file(beir.join("corpus.jsonl")).unwrap();
    let (ok, _, err) = ragsync(&other, &node.url);
    assert!(!ok && err.contains("corpus.jsonl is not a file"), "{err}");
    for name in ["ext2", "ev3"] {
        let gone = rt.block_on(c.get_opt(&["collections", name], &[])).unwrap();
        assert!(gone.is_none(), "{name} was created");
    }
}
