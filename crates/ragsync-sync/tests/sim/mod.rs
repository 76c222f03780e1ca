//! A seeded simulation of replication: real stores (SQLite in temporary directories), the
//! real pull and push engines (each directed link is pulled by the receiver or pushed by the
//! sender, chosen by the seed), and an in-memory network that loses, duplicates, delays and reorders
//! messages, cuts links, crashes nodes (the engine's memory is lost, the store kept) and skews
//! clocks. Every decision comes from one seed, so a failing seed replays exactly.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use ragsync_core::{CollectionName, CollectionSettings, DocId, DocState, PhysicalClock, Stamp};
use ragsync_store::{DocOp, Durability, FeedItem, InlinePolicy, OpKind, Store, StoreOptions};
use ragsync_sync::apply::{apply_page, apply_pushed};
use ragsync_sync::pull::{Action, Backoff, Failure, PullConfig, Puller};
use ragsync_sync::push::{PushAction, PushConfig, Pusher};
use ragsync_sync::wire::{ChangesResponse, PushAnswer};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// Simulated milliseconds per step.
const STEP_MS: u64 = 5;
/// The part of a run with writes and faults.
const FAULTY_MS: u64 = 8_000;
/// After healing, every node must agree within this much simulated time (liveness).
const CONVERGE_WITHIN_MS: u64 = 30_000;
const START_MS: u64 = 1_800_000_000_000;
const DOC_IDS: u32 = 12;

/// Simulated time, with a skew per node.
struct SimClock {
    now: Arc<AtomicU64>,
    skew_ms: i64,
}

impl PhysicalClock for SimClock {
    fn now_ms(&self) -> u64 {
        (self.now.load(Ordering::Relaxed) as i64 + self.skew_ms) as u64
    }
}

struct SimNode {
    store: Store,
    _dir: tempfile::TempDir,
    /// Pullers by peer index; empty while the node is down.
    pullers: BTreeMap<usize, Puller>,
    /// Pushers by peer index; empty while the node is down.
    pushers: BTreeMap<usize, Pusher>,
    up: bool,
    /// Long-polls held by this node's server: (from, fetch id, since, limit, deadline).
    /// (Only open-ended fetches are held.)
    held: Vec<(usize, u64, u64, usize, u64)>,
}

#[derive(Clone)]
enum Msg {
    Fetch {
        from: usize,
        to: usize,
        id: u64,
        since: u64,
        until: Option<u64>,
        limit: usize,
        wait_ms: u64,
    },
    Page {
        to: usize,
        from: usize,
        id: u64,
        answer: Result<ChangesResponse, Failure>,
    },
    Push {
        from: usize,
        to: usize,
        id: u64,
        page: ChangesResponse,
    },
    Pushed {
        to: usize,
        from: usize,
        id: u64,
        answer: Result<PushAnswer, Failure>,
    },
}

/// What the run checks at the end.
#[derive(Default)]
struct Acked {
    /// Every acknowledged write: the document and the stamp of its version.
    puts: Vec<(String, Stamp)>,
    /// Every acknowledged delete: the document and its tombstone's state.
    deletes: Vec<(String, DocState)>,
}

pub struct Sim {
    rng: StdRng,
    now: Arc<AtomicU64>,
    nodes: Vec<SimNode>,
    /// Links by (min, max) node index; absent means up.
    cut: HashMap<(usize, usize), bool>,
    queue: Vec<(u64, u64, Msg)>,
    next_msg: u64,
    /// Applies under way: (when they finish, node, peer, apply id, page). Pages go on being
    /// fetched meanwhile, as on a real node.
    applying: Vec<(u64, usize, usize, u64, ChangesResponse)>,
    loss: f64,
    dup: f64,
    max_delay_ms: u64,
    acked: Acked,
    last_stamp: Vec<Option<Stamp>>,
    coll: CollectionName,
    /// Directed links (source, receiver, pushed): the receiver pulls from the source, or the
    /// source pushes to the receiver. A mesh links every pair, a ring each node with its two
    /// neighbours.
    links: Vec<(usize, usize, bool)>,
}

fn inline() -> InlinePolicy {
    InlinePolicy {
        max_content_bytes: 64 << 10,
        max_page_bytes: 1 << 20,
        embeddings: true,
    }
}

fn push_config(rng: &mut StdRng) -> PushConfig {
    PushConfig {
        page_rows: [1, 3, 50][rng.random_range(0..3)],
        request_timeout_ms: 500,
        backoff: Backoff {
            base_ms: 20,
            max_ms: 1_000,
        },
    }
}

fn pull_config(rng: &mut StdRng) -> PullConfig {
    PullConfig {
        page_rows: [1, 3, 50][rng.random_range(0..3)],
        wait_ms: 300,
        request_timeout_ms: 500,
        backoff: Backoff {
            base_ms: 20,
            max_ms: 1_000,
        },
        pages_ahead: [1, 2, 4][rng.random_range(0..3)],
    }
}

impl Sim {
    /// A run of `nodes` nodes; `mesh` links every node with every other, else a ring (each
    /// node with its two neighbours, so changes travel several hops). About a third of the
    /// directed links are pushed by their source, the rest pulled by their receiver.
    pub fn new(seed: u64, nodes: usize, mesh: bool) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let now = Arc::new(AtomicU64::new(START_MS));
        let coll = CollectionName::new("c").unwrap();
        let mut sim_nodes = Vec::new();
        for _ in 0..nodes {
            let dir = tempfile::tempdir().unwrap();
            let clock = SimClock {
                now: now.clone(),
                skew_ms: rng.random_range(-20_000..=20_000),
            };
            let store = Store::open(
                dir.path(),
                StoreOptions {
                    durability: Durability::Relaxed,
                    clock: Arc::new(clock),
                    ..StoreOptions::default()
                },
            )
            .unwrap();
            // Each node makes the collection on its own: the records converge by stamp.
            store
                .put_collection(&coll, CollectionSettings::default())
                .unwrap();
            sim_nodes.push(SimNode {
                store,
                _dir: dir,
                pullers: BTreeMap::new(),
                pushers: BTreeMap::new(),
                up: true,
                held: Vec::new(),
            });
        }
        let mut links = Vec::new();
        for to in 0..nodes {
            let sources: Vec<usize> = if mesh {
                (0..nodes).filter(|j| *j != to).collect()
            } else {
                vec![(to + 1) % nodes, (to + nodes - 1) % nodes]
            };
            for from in sources {
                links.push((from, to, rng.random_bool(0.3)));
            }
        }
        let mut sim = Sim {
            links,
            loss: rng.random_range(0.0..0.2),
            dup: rng.random_range(0.0..0.1),
            max_delay_ms: rng.random_range(1..60),
            rng,
            now,
            nodes: sim_nodes,
            cut: HashMap::new(),
            queue: Vec::new(),
            next_msg: 0,
            applying: Vec::new(),
            acked: Acked::default(),
            last_stamp: vec![None; nodes],
            coll,
        };
        for i in 0..nodes {
            sim.start_links(i);
        }
        sim
    }

    /// Starts the engines node `i` runs: a puller per source it pulls from, a pusher per
    /// receiver it pushes to.
    fn start_links(&mut self, i: usize) {
        for (from, to, pushed) in self.links.clone() {
            if pushed && from == i {
                self.start_pusher(i, to);
            } else if !pushed && to == i {
                self.start_puller(i, from);
            }
        }
    }

    fn start_pusher(&mut self, node: usize, peer: usize) {
        let peer_id = self.nodes[peer].store.node_id();
        let cursor = self.nodes[node]
            .store
            .push_cursor(peer_id)
            .unwrap()
            .map(|c| (c.epoch, c.since));
        let cfg = push_config(&mut self.rng);
        let seed = self.rng.random();
        self.nodes[node]
            .pushers
            .insert(peer, Pusher::new(cfg, peer_id, cursor, seed));
    }

    fn now(&self) -> u64 {
        self.now.load(Ordering::Relaxed)
    }

    fn start_puller(&mut self, node: usize, peer: usize) {
        let peer_id = self.nodes[peer].store.node_id();
        let cursor = self.nodes[node]
            .store
            .cursor(peer_id)
            .unwrap()
            .map(|c| (c.epoch, c.since));
        let cfg = pull_config(&mut self.rng);
        let seed = self.rng.random();
        self.nodes[node]
            .pullers
            .insert(peer, Puller::new(cfg, peer_id, cursor, seed));
    }

    fn link_up(&self, a: usize, b: usize) -> bool {
        !self
            .cut
            .get(&(a.min(b), a.max(b)))
            .copied()
            .unwrap_or(false)
    }

    fn send(&mut self, msg: Msg, faulty: bool) {
        let copies = if faulty && self.rng.random_bool(self.dup) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            if faulty && self.rng.random_bool(self.loss) {
                continue;
            }
            let at = self.now() + self.rng.random_range(1..=self.max_delay_ms);
            self.next_msg += 1;
            let copy = msg.clone();
            self.queue.push((at, self.next_msg, copy));
        }
    }

    /// Runs every puller and pusher until it has nothing to do now.
    fn drive(&mut self, faulty: bool) {
        let now = self.now();
        for i in 0..self.nodes.len() {
            let head = self.nodes[i].store.head_seq().unwrap();
            let receivers: Vec<usize> = self.nodes[i].pushers.keys().copied().collect();
            for p in receivers {
                if let Some(x) = self.nodes[i].pushers.get_mut(&p) {
                    x.on_local_head(now, head);
                }
                while let Some(action) = self.nodes[i].pushers.get_mut(&p).and_then(|x| x.poll(now))
                {
                    match action {
                        // Reads of the node's own feed are immediate.
                        PushAction::Read(r) => {
                            let s = &self.nodes[i].store;
                            let page = s.changes(r.since, r.limit, inline()).unwrap();
                            let page =
                                ChangesResponse::from_page(s.node_id(), s.epoch(), r.since, page);
                            if let Some(x) = self.nodes[i].pushers.get_mut(&p) {
                                x.on_read(now, r.id, Ok(page));
                            }
                        }
                        PushAction::Send { id, page } => self.send(
                            Msg::Push {
                                from: i,
                                to: p,
                                id,
                                page,
                            },
                            faulty,
                        ),
                        PushAction::Save { epoch, since } => {
                            let peer = self.nodes[p].store.node_id();
                            let c = ragsync_store::Cursor { epoch, since };
                            self.nodes[i].store.set_push_cursor(peer, c).unwrap();
                        }
                    }
                }
            }
            let peers: Vec<usize> = self.nodes[i].pullers.keys().copied().collect();
            for p in peers {
                while let Some(action) = self.nodes[i].pullers.get_mut(&p).and_then(|x| x.poll(now))
                {
                    match action {
                        Action::Fetch(f) => self.send(
                            Msg::Fetch {
                                from: i,
                                to: p,
                                id: f.id,
                                since: f.since,
                                until: f.until,
                                limit: f.limit,
                                wait_ms: f.wait_ms,
                            },
                            faulty,
                        ),
                        Action::Apply { id, page } => {
                            let done_at = now + self.rng.random_range(0..30);
                            self.applying.push((done_at, i, p, id, page));
                        }
                    }
                }
            }
        }
    }

    /// Finishes the applies whose time has come (a crashed node's are lost with it).
    fn finish_applies(&mut self) {
        let now = self.now();
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.applying)
            .into_iter()
            .partition(|a| a.0 <= now);
        self.applying = later;
        for (_, i, p, id, page) in due {
            if !self.nodes[i].up {
                continue;
            }
            let peer_id = self.nodes[p].store.node_id();
            let outcome = apply_page(&self.nodes[i].store, peer_id, page);
            if let Some(x) = self.nodes[i].pullers.get_mut(&p) {
                x.on_applied(now, id, outcome);
            }
        }
    }

    /// The page `node` serves for `since`, or `None` to hold a long-poll.
    fn serve(
        &self,
        node: usize,
        since: u64,
        until: Option<u64>,
        limit: usize,
        hold: bool,
    ) -> Option<Result<ChangesResponse, Failure>> {
        let s = &self.nodes[node].store;
        let head = s.head_seq().unwrap();
        if since > head {
            return Some(Err(Failure::CursorReset(format!(
                "since {since} is past head {head}"
            ))));
        }
        if hold && since == head {
            return None;
        }
        let page = match until {
            Some(u) => s.changes_window(since, u, limit, inline()).unwrap(),
            None => s.changes(since, limit, inline()).unwrap(),
        };
        Some(Ok(ChangesResponse::from_page(
            s.node_id(),
            s.epoch(),
            since,
            page,
        )))
    }

    fn deliver(&mut self, faulty: bool) {
        let now = self.now();
        self.queue.sort_by_key(|(at, n, _)| (*at, *n));
        let due = self.queue.partition_point(|(at, _, _)| *at <= now);
        let msgs: Vec<_> = self.queue.drain(..due).collect();
        for (_, _, msg) in msgs {
            match msg {
                Msg::Fetch {
                    from,
                    to,
                    id,
                    since,
                    until,
                    limit,
                    wait_ms,
                } => {
                    if !self.nodes[to].up || !self.link_up(from, to) {
                        continue;
                    }
                    match self.serve(to, since, until, limit, wait_ms > 0) {
                        Some(answer) => self.send(
                            Msg::Page {
                                to: from,
                                from: to,
                                id,
                                answer,
                            },
                            faulty,
                        ),
                        None => self.nodes[to]
                            .held
                            .push((from, id, since, limit, now + wait_ms)),
                    }
                }
                Msg::Page {
                    to,
                    from,
                    id,
                    answer,
                } => {
                    if !self.nodes[to].up || !self.link_up(from, to) {
                        continue;
                    }
                    if let Some(p) = self.nodes[to].pullers.get_mut(&from) {
                        p.on_fetched(now, id, answer);
                    }
                }
                Msg::Push { from, to, id, page } => {
                    if !self.nodes[to].up || !self.link_up(from, to) {
                        continue;
                    }
                    let answer =
                        apply_pushed(&self.nodes[to].store, page).map_err(|e| Failure::Refused {
                            status: 400,
                            code: format!("invalid_page: {e}"),
                            retry_after_ms: None,
                        });
                    self.send(
                        Msg::Pushed {
                            to: from,
                            from: to,
                            id,
                            answer,
                        },
                        faulty,
                    );
                }
                Msg::Pushed {
                    to,
                    from,
                    id,
                    answer,
                } => {
                    if !self.nodes[to].up || !self.link_up(from, to) {
                        continue;
                    }
                    if let Some(p) = self.nodes[to].pushers.get_mut(&from) {
                        p.on_sent(now, id, answer);
                    }
                }
            }
        }
        // Held long-polls answer when something new is there, or when they time out.
        for node in 0..self.nodes.len() {
            let head = self.nodes[node].store.head_seq().unwrap();
            let held = std::mem::take(&mut self.nodes[node].held);
            for h @ (from, id, since, limit, deadline) in held {
                if head > since || now >= deadline {
                    if let Some(answer) = self.serve(node, since, None, limit, false) {
                        self.send(
                            Msg::Page {
                                to: from,
                                from: node,
                                id,
                                answer,
                            },
                            faulty,
                        );
                    }
                } else {
                    self.nodes[node].held.push(h);
                }
            }
        }
    }

    fn random_write(&mut self) {
        let i = self.rng.random_range(0..self.nodes.len());
        if !self.nodes[i].up {
            return;
        }
        let id = format!("d{}", self.rng.random_range(0..DOC_IDS));
        let doc = DocId::new(id.clone()).unwrap();
        let delete = self.rng.random_bool(0.2);
        let kind = if delete {
            OpKind::Delete
        } else {
            OpKind::Put {
                title: None,
                metadata: Default::default(),
                content: format!("{id} by node {i} at {}", self.now()).into_bytes(),
                content_type: "text/plain".into(),
                embeddings: None,
            }
        };
        let store = &self.nodes[i].store;
        let Ok(r) = store.write(
            &self.coll,
            vec![DocOp {
                id: doc.clone(),
                if_match: None,
                kind,
            }],
        ) else {
            return; // a delete of a document this node has not seen: refused, not acknowledged
        };
        let stamp = r[0].version;
        if r[0].effect == ragsync_store::WriteEffect::Unchanged {
            return;
        }
        if let Some(last) = self.last_stamp[i] {
            assert!(stamp > last, "node {i} issued {stamp:?} after {last:?}");
        }
        self.last_stamp[i] = Some(stamp);
        if delete {
            let state = store.get(&self.coll, &doc).unwrap().unwrap().state;
            self.acked.deletes.push((id, state));
        } else {
            self.acked.puts.push((id, stamp));
        }
    }

    fn random_fault(&mut self) {
        let n = self.nodes.len();
        match self.rng.random_range(0..100) {
            0..3 => {
                let (a, b) = (self.rng.random_range(0..n), self.rng.random_range(0..n));
                if a != b {
                    let cut = self.cut.entry((a.min(b), a.max(b))).or_default();
                    *cut = !*cut;
                }
            }
            3 => {
                // A crash: the engine's memory is gone, the store stays.
                let i = self.rng.random_range(0..n);
                if self.nodes[i].up {
                    self.nodes[i].up = false;
                    self.nodes[i].pullers.clear();
                    self.nodes[i].pushers.clear();
                    self.nodes[i].held.clear();
                    self.applying.retain(|a| a.1 != i);
                }
            }
            4..7 => {
                let i = self.rng.random_range(0..n);
                if !self.nodes[i].up {
                    self.restart(i);
                }
            }
            _ => {}
        }
    }

    fn restart(&mut self, i: usize) {
        self.nodes[i].up = true;
        self.start_links(i);
    }

    fn quiet(&self) -> bool {
        self.queue.is_empty()
            && self.applying.is_empty()
            && self.nodes.iter().all(|n| {
                n.pullers.values().all(Puller::is_quiet) && n.pushers.values().all(Pusher::is_quiet)
            })
    }

    /// The whole run: faults and writes, then healing until every node agrees. Returns the
    /// simulated milliseconds convergence took after healing.
    pub fn run(&mut self) -> u64 {
        while self.now() < START_MS + FAULTY_MS {
            if self.rng.random_bool(0.3) {
                self.random_write();
            }
            self.random_fault();
            self.drive(true);
            self.deliver(true);
            self.finish_applies();
            self.now.fetch_add(STEP_MS, Ordering::Relaxed);
        }
        // Heal: every link up, every node up, no more loss.
        self.cut.clear();
        for i in 0..self.nodes.len() {
            if !self.nodes[i].up {
                self.restart(i);
            }
        }
        for n in &mut self.nodes {
            n.pullers.values_mut().for_each(Puller::nudge);
            n.pushers.values_mut().for_each(Pusher::nudge);
        }
        let healed = self.now();
        loop {
            self.drive(false);
            self.deliver(false);
            self.finish_applies();
            if self.quiet() && self.agree() {
                return self.now() - healed;
            }
            assert!(
                self.now() - healed < CONVERGE_WITHIN_MS,
                "no convergence {CONVERGE_WITHIN_MS} ms after healing:\n{}",
                self.explain()
            );
            self.now.fetch_add(STEP_MS, Ordering::Relaxed);
        }
    }

    /// Why the run has not converged: engines not quiet, and rows that differ from node 0's.
    fn explain(&self) -> String {
        let mut out = format!("messages in flight: {}\n", self.queue.len());
        for (i, n) in self.nodes.iter().enumerate() {
            for (p, x) in &n.pullers {
                if !x.is_quiet() {
                    out += &format!("node {i} <- {p}: not quiet: {:?}\n", x.status());
                }
            }
            for (p, x) in &n.pushers {
                if !x.is_quiet() {
                    out += &format!("node {i} -> {p}: not quiet: {:?}\n", x.status());
                }
            }
            out += &format!(
                "node {i}: held polls {}, head {}\n",
                n.held.len(),
                n.store.head_seq().unwrap()
            );
        }
        let first = self.everything(0);
        for i in 1..self.nodes.len() {
            let other = self.everything(i);
            for (k, v) in &first {
                if other.get(k) != Some(v) {
                    out += &format!(
                        "node {i} differs on {k}: {:?}\n vs node 0: {v}\n",
                        other.get(k)
                    );
                }
            }
            for k in other.keys().filter(|k| !first.contains_key(*k)) {
                out += &format!("node {i} has {k}, node 0 not\n");
            }
        }
        out
    }

    fn everything(&self, i: usize) -> BTreeMap<String, serde_json::Value> {
        let s = &self.nodes[i].store;
        let mut out = BTreeMap::new();
        let mut since = 0;
        loop {
            let page = s.changes(since, 1000, inline()).unwrap();
            for e in &page.entries {
                let (k, v) = match &e.item {
                    FeedItem::Doc { id, state, .. } => {
                        (format!("doc {id}"), serde_json::to_value(state).unwrap())
                    }
                    FeedItem::Collection(c) => {
                        (format!("coll {}", c.name), serde_json::to_value(c).unwrap())
                    }
                };
                out.insert(k, v);
            }
            since = page.next_since;
            if !page.has_more {
                return out;
            }
        }
    }

    fn agree(&self) -> bool {
        let first = self.everything(0);
        (1..self.nodes.len()).all(|i| self.everything(i) == first)
    }

    /// The checks of a converged run: nothing acknowledged lost, nothing deleted resurrected,
    /// no row parked, every cursor at or before its peer's head.
    pub fn check(&self) {
        let s = &self.nodes[0].store;
        let state = |id: &str| {
            s.get(&self.coll, &DocId::new(id).unwrap())
                .unwrap()
                .unwrap()
                .state
        };
        for (id, stamp) in &self.acked.puts {
            let st = state(id);
            assert!(
                st.versions()
                    .iter()
                    .any(|v| v.stamp == *stamp || v.clock.contains(stamp)),
                "acknowledged write {stamp:?} of {id} was lost: {st:?}"
            );
        }
        for (id, tomb) in &self.acked.deletes {
            let seen = tomb.clock();
            for v in state(id).versions().iter().filter(|v| !v.deleted) {
                assert!(
                    !seen.contains(&v.stamp),
                    "{id}: {:?}, deleted by {:?}, is alive again",
                    v.stamp,
                    tomb.winner().stamp
                );
            }
        }
        for (i, n) in self.nodes.iter().enumerate() {
            assert_eq!(n.store.stats().unwrap().parked, 0, "node {i} parked rows");
            for (p, puller) in &n.pullers {
                let head = self.nodes[*p].store.head_seq().unwrap();
                assert!(
                    puller.status().cursor <= head,
                    "node {i}'s cursor of {p} is past its head"
                );
            }
            let head = n.store.head_seq().unwrap();
            for (p, pusher) in &n.pushers {
                assert_eq!(
                    pusher.status().cursor,
                    head,
                    "node {i}'s push cursor to {p} is not its head"
                );
            }
        }
    }
}
