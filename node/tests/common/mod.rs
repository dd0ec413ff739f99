//! Helpers for node's real-process tests: a temporary node directory with its config, the
//! `yimen-node serve` process (ready line, first answered call, SIGKILL or SIGTERM), a clerk
//! client, and a complete application that is accepted at once.
//!
//! "Started" here means the ready line appeared *and* a first call was answered (whatever
//! the order of listening, opening the store and printing). A node that exits instead (say,
//! on a corrupt store) is reported as an [`Exit`] with its stderr.

#![allow(dead_code, reason = "each test binary uses a part of these helpers")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers: a panic is a failure"
)]

use std::fmt;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tonic::transport::Channel;
use yimen_proto::pb;
use yimen_proto::pb::clerk_client::ClerkClient;

/// The node every test directory is configured as.
pub const NODE_ID: &str = "430421105204";
/// What the node prints, followed by its address, once it listens.
pub const READY_MARK: &str = "serving the clerk API on ";
/// Bound on the ready line plus the first answered call.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// Bound on a graceful stop (SIGTERM) or a process's exit.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(20);
/// Bound on one clerk call made by the helpers.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// A temporary folder holding `node.toml` (id [`NODE_ID`], clerk on `127.0.0.1:0`, store
/// `store`), the store, and one stderr log per start.
pub struct NodeDir {
    pub root: tempfile::TempDir,
    starts: AtomicUsize,
}

impl NodeDir {
    pub fn new() -> NodeDir {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(
            root.path().join("node.toml"),
            format!("id = \"{NODE_ID}\"\nclerk_listen = \"127.0.0.1:0\"\nstore = \"store\"\n"),
        )
        .unwrap();
        NodeDir {
            root,
            starts: AtomicUsize::new(0),
        }
    }

    pub fn config(&self) -> PathBuf {
        self.root.path().join("node.toml")
    }

    /// The store directory (sled's).
    pub fn store(&self) -> PathBuf {
        self.root.path().join("store")
    }

    /// sled's data file inside the store.
    pub fn data_file(&self) -> PathBuf {
        self.store().join("db")
    }

    /// `yimen-node serve --config <node.toml>`.
    pub fn serve_command(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_yimen-node"));
        cmd.arg("serve").arg("--config").arg(self.config());
        cmd
    }

    /// A fresh stderr log path for the next start.
    pub fn next_stderr_path(&self) -> PathBuf {
        let n = self.starts.fetch_add(1, Ordering::Relaxed);
        self.root.path().join(format!("start-{n}.stderr"))
    }

    /// Starts the node; `Err` if it exits before answering.
    pub async fn start(&self) -> Result<Node, Exit> {
        start(self.serve_command(), &self.next_stderr_path()).await
    }

    /// Starts the node; panics (with its stderr) if it does not serve.
    pub async fn serve(&self) -> Node {
        self.start()
            .await
            .unwrap_or_else(|e| panic!("the node did not start: {e}"))
    }
}

/// How a process ended, with everything it wrote to stderr.
pub struct Exit {
    pub status: ExitStatus,
    pub stderr: String,
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}; stderr:\n{}", self.status, self.stderr)
    }
}

/// A running process; SIGKILLed and reaped on drop.
pub struct Node {
    child: Child,
    /// The clerk API's address, from the ready line.
    pub addr: SocketAddr,
    /// Lines printed on stdout before the ready line.
    pub preamble: Vec<String>,
    pub stderr_path: PathBuf,
}

impl Drop for Node {
    fn drop(&mut self) {
        // Already exited: kill fails harmlessly and wait returns the saved status.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Spawns `cmd` (stdout piped, stderr to `stderr_path`), waits for the ready line, then for a
/// first answered call (`ListItems`). `Err` if the process exits first; panics after
/// [`READY_TIMEOUT`].
pub async fn start(mut cmd: Command, stderr_path: &Path) -> Result<Node, Exit> {
    let stderr = std::fs::File::create(stderr_path).unwrap();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot spawn {cmd:?}: {e}"));
    let stdout = child.stdout.take().unwrap();
    let (tx, mut lines) = mpsc::unbounded_channel();
    // Drains stdout until the process closes it; lines after the ready line are dropped.
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    let mut node = Node {
        child,
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        preamble: Vec::new(),
        stderr_path: stderr_path.to_owned(),
    };
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        match tokio::time::timeout_at(deadline, lines.recv()).await {
            Ok(Some(line)) => match line.split_once(READY_MARK) {
                Some((_, addr)) => {
                    node.addr = addr
                        .trim()
                        .parse()
                        .unwrap_or_else(|e| panic!("ready line {line:?}: {e}"));
                    break;
                }
                None => node.preamble.push(line),
            },
            // stdout closed: the process is ending.
            Ok(None) => return Err(node.wait_exit().await),
            Err(_) => panic!(
                "no ready line within {READY_TIMEOUT:?}; stderr:\n{}",
                node.stderr()
            ),
        }
    }
    loop {
        if let Some(status) = node.child.try_wait().unwrap() {
            return Err(Exit {
                status,
                stderr: node.stderr(),
            });
        }
        let url = node.url();
        let answered = tokio::time::timeout(Duration::from_secs(1), async move {
            let mut c = ClerkClient::connect(url).await.ok()?;
            c.list_items(pb::ListItemsRequest {}).await.ok()
        })
        .await;
        if let Ok(Some(_)) = answered {
            return Ok(node);
        }
        if Instant::now() > deadline {
            panic!(
                "the node printed its ready line but answered no call within {READY_TIMEOUT:?}; stderr:\n{}",
                node.stderr()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl Node {
    /// The spawned process's id (for a wrapper such as strace: the wrapper's).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Everything the process wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// A new clerk client on its own connection.
    pub async fn client(&self) -> ClerkClient<Channel> {
        tokio::time::timeout(CALL_TIMEOUT, ClerkClient::connect(self.url()))
            .await
            .unwrap_or_else(|_| panic!("connecting to {} timed out", self.addr))
            .unwrap_or_else(|e| panic!("cannot connect to {}: {e}", self.addr))
    }

    /// SIGKILL, and reap.
    pub fn kill(mut self) -> Exit {
        self.child.kill().unwrap();
        let status = self.child.wait().unwrap();
        Exit {
            status,
            stderr: self.stderr(),
        }
    }

    /// SIGTERM (a graceful shutdown) and wait for the exit.
    pub async fn stop(self) -> Exit {
        let pid = self.pid();
        self.stop_pid(pid).await
    }

    /// SIGTERM to `pid` (the node under a wrapper), then wait for the spawned process.
    pub async fn stop_pid(mut self, pid: u32) -> Exit {
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status()
            .unwrap();
        assert!(sent.success(), "kill -TERM {pid} failed");
        self.wait_exit().await
    }

    /// Waits for the process to end by itself; panics after [`STOP_TIMEOUT`].
    async fn wait_exit(&mut self) -> Exit {
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Exit {
                    status,
                    stderr: self.stderr(),
                };
            }
            if Instant::now() > deadline {
                panic!(
                    "process {} did not exit within {STOP_TIMEOUT:?}; stderr:\n{}",
                    self.pid(),
                    self.stderr()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A complete 老年优待证 application, accepted at once; `helper` (代办人) makes it
/// recognisable.
pub fn senior_application(helper: Option<&str>) -> pb::ApplyRequest {
    pb::ApplyRequest {
        operator: "测试员".to_owned(),
        item_code: "430421-MZ-0001".to_owned(),
        applicant: Some(pb::ApplicantInput {
            id_number: "11010519491231002X".to_owned(),
            name: "张桂英".to_owned(),
            household: NODE_ID.to_owned(),
            statuses: Vec::new(),
        }),
        materials: vec!["sfzfyj".to_owned(), "zp".to_owned()],
        helper: helper.map(|name| pb::HelperInput {
            name: name.to_owned(),
            relation: "子女".to_owned(),
        }),
    }
}

/// The case of an acceptance slip; `None` for a one-time notice.
pub fn accepted(reply: pb::ApplyReply) -> Option<pb::CaseView> {
    match reply.outcome {
        Some(pb::apply_reply::Outcome::Accepted(slip)) => slip.case,
        _ => None,
    }
}

/// Applies `n` senior-card applications one after another; panics unless each is accepted.
pub async fn accept_senior(client: &mut ClerkClient<Channel>, n: usize) -> Vec<pb::CaseView> {
    let mut cases = Vec::with_capacity(n);
    for _ in 0..n {
        cases.push(apply_accepted(client, senior_application(None)).await);
    }
    cases
}

/// Applies once; panics unless accepted.
pub async fn apply_accepted(
    client: &mut ClerkClient<Channel>,
    request: pb::ApplyRequest,
) -> pb::CaseView {
    let reply = tokio::time::timeout(CALL_TIMEOUT, client.apply(request))
        .await
        .expect("apply timed out")
        .unwrap_or_else(|s| panic!("apply refused: {s}"))
        .into_inner();
    match accepted(reply.clone()) {
        Some(case) => case,
        None => panic!("not accepted: {reply:?}"),
    }
}

/// One case as the node shows it now.
pub async fn get_case(
    client: &mut ClerkClient<Channel>,
    number: &str,
) -> Result<pb::CaseView, tonic::Status> {
    let reply = tokio::time::timeout(
        CALL_TIMEOUT,
        client.get_case(pb::GetCaseRequest {
            case_number: number.to_owned(),
        }),
    )
    .await
    .expect("get_case timed out")?;
    reply
        .into_inner()
        .case
        .ok_or_else(|| tonic::Status::internal("empty case reply"))
}

/// Every case the node lists over all statuses (the node caps a listing at
/// `yimen_node::register::LIST_MAX`), in the node's order.
pub async fn list_all(client: &mut ClerkClient<Channel>) -> Vec<pb::CaseView> {
    tokio::time::timeout(
        CALL_TIMEOUT,
        client.list_cases(pb::ListCasesRequest {
            status: String::new(),
            overdue_only: false,
            due_by: None,
            limit: 0,
        }),
    )
    .await
    .expect("list_cases timed out")
    .unwrap_or_else(|s| panic!("list_cases refused: {s}"))
    .into_inner()
    .cases
}
