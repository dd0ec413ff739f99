//! The handshake that opens a link connection: the child says `Hello` (its versions, id,
//! epoch, clock and the cursor it durably applied of the parent's down stream), the parent
//! answers `Welcome` (the chosen version, its epoch, the child's clock offset and the cursor it
//! durably applied of the child's up stream).
//!
//! Invariants: the chosen version is the highest both ranges hold, and the child refuses a
//! `Welcome` naming a version outside its own range; each side transmits its handshake frame
//! once; a handshake that does not complete in [`HANDSHAKE_TIMEOUT_MS`] fails.

use serde::{Deserialize, Serialize};

use super::{Cursor, ErrorCode, ErrorFrame, Frame, is_node_id};

/// Oldest protocol version this build speaks.
pub const PROTOCOL_VERSION_MIN: u32 = 1;
/// Newest protocol version this build speaks.
pub const PROTOCOL_VERSION_MAX: u32 = 1;
/// The versions this build offers.
pub const VERSIONS: VersionRange = VersionRange {
    min: PROTOCOL_VERSION_MIN,
    max: PROTOCOL_VERSION_MAX,
};
/// Time for the peer's handshake frame: a 4G link that cannot carry one frame in this long is
/// as good as down; the dialer backs off and retries.
pub const HANDSHAKE_TIMEOUT_MS: u64 = 30_000;
/// Clock offset above which the clerk is warned: a slip dated ten minutes off is noticed by
/// applicants.
pub const CLOCK_OFFSET_WARN_MS: u64 = 10 * 60 * 1000;

/// A range of protocol versions, both ends included.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionRange {
    pub min: u32,
    pub max: u32,
}

impl std::fmt::Display for VersionRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{}, {}]", self.min, self.max)
    }
}

/// The version both sides use: the highest in both ranges.
pub fn negotiate(ours: VersionRange, theirs: VersionRange) -> Result<u32, HandshakeError> {
    for r in [ours, theirs] {
        if r.min > r.max {
            return Err(HandshakeError::EmptyRange(r));
        }
    }
    let low = ours.min.max(theirs.min);
    let high = ours.max.min(theirs.max);
    if low > high {
        return Err(HandshakeError::NoCommonVersion { ours, theirs });
    }
    Ok(high)
}

/// The child's opening frame.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub versions: VersionRange,
    /// The child's 12-digit node id (the shell checks it against the certificate).
    pub node: String,
    /// The child's store epoch: the up stream's positions are numbered in it.
    pub epoch: u64,
    /// The child's clock, milliseconds since the Unix epoch.
    pub clock_ms: u64,
    /// Where the child has durably applied the parent's down stream.
    pub cursor: Option<Cursor>,
    /// The child lost its store: the parent also sends the child's own events back.
    pub refill: bool,
}

/// The parent's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    pub version: u32,
    /// The parent's store epoch: the down stream's positions are numbered in it.
    pub epoch: u64,
    /// Parent clock minus child clock, for the clerk's warning.
    pub clock_offset_ms: i64,
    /// Where the parent has durably applied the child's up stream.
    pub cursor: Option<Cursor>,
    /// The position of the parent's last durable event at the handshake: a child being
    /// refilled is whole once its down cursor reaches it.
    pub log_position: u64,
}

/// Why a handshake failed. Messages are English (logs); `reason_zh` is for clerks.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    #[error("no common protocol version: ours {ours}, theirs {theirs}")]
    NoCommonVersion {
        ours: VersionRange,
        theirs: VersionRange,
    },
    #[error("version range {0} is empty")]
    EmptyRange(VersionRange),
    #[error("the parent chose version {chosen}, outside our range {offered}")]
    VersionNotOffered { chosen: u32, offered: VersionRange },
    #[error("{0:?} is not a 12-digit node id")]
    BadNode(String),
    #[error("expected {expected}, got a {got} frame")]
    UnexpectedFrame {
        expected: &'static str,
        got: &'static str,
    },
    #[error("the peer refused the connection ({code:?}): {detail}")]
    Refused { code: ErrorCode, detail: String },
    #[error("no handshake answer within {after_ms} ms")]
    TimedOut { after_ms: u64 },
    #[error("the handshake is not at a step where this is possible")]
    OutOfTurn,
}

impl HandshakeError {
    /// A sentence a clerk can act on.
    pub fn reason_zh(&self) -> String {
        match self {
            HandshakeError::NoCommonVersion { ours, theirs } => format!(
                "本机软件（协议版本{ours}）与上级节点（协议版本{theirs}）不兼容，无法同步；请升级较旧的一方"
            ),
            HandshakeError::TimedOut { .. } => {
                "连接上级节点超时，办件已在本机保存，网络恢复后会自动同步".to_owned()
            }
            _ => "与上级节点的连接出错，系统将自动重连；如持续出现请联系乡镇管理员".to_owned(),
        }
    }

    /// The error frame telling the peer why the connection ends.
    pub fn to_frame(&self) -> Frame {
        let code = match self {
            HandshakeError::NoCommonVersion { .. } | HandshakeError::VersionNotOffered { .. } => {
                ErrorCode::Version
            }
            HandshakeError::TimedOut { .. } => ErrorCode::Timeout,
            _ => ErrorCode::Protocol,
        };
        Frame::Error(ErrorFrame::new(code, self.to_string()))
    }
}

/// What the child learnt from a `Welcome`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Agreed {
    pub version: u32,
    /// The parent's epoch: expect down batches of it.
    pub parent_epoch: u64,
    /// Where the parent stated it applied the up stream: the input of [`super::resume`].
    pub stated: Option<Cursor>,
    pub clock_offset_ms: i64,
    /// The parent's last durable position at the handshake ([`Welcome::log_position`]).
    pub parent_log_position: u64,
}

impl Agreed {
    /// Whether the clerk must be warned that the village clock is off.
    pub fn clock_warning(&self) -> bool {
        self.clock_offset_ms.unsigned_abs() > CLOCK_OFFSET_WARN_MS
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum ChildStep {
    /// The Hello is waiting for `poll_transmit`.
    Start,
    Sent,
    Done,
    Failed,
}

/// The dialing side of a handshake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChildHandshake {
    hello: Hello,
    started_ms: u64,
    step: ChildStep,
}

impl ChildHandshake {
    /// A handshake that will send `hello`; refuses an empty range or a bad node id.
    pub fn new(hello: Hello, now_ms: u64) -> Result<ChildHandshake, HandshakeError> {
        if hello.versions.min > hello.versions.max {
            return Err(HandshakeError::EmptyRange(hello.versions));
        }
        if !is_node_id(&hello.node) {
            return Err(HandshakeError::BadNode(hello.node));
        }
        Ok(ChildHandshake {
            hello,
            started_ms: now_ms,
            step: ChildStep::Start,
        })
    }

    /// The Hello, once.
    pub fn poll_transmit(&mut self) -> Option<Frame> {
        if self.step != ChildStep::Start {
            return None;
        }
        self.step = ChildStep::Sent;
        Some(Frame::Hello(self.hello.clone()))
    }

    /// The parent's answer: a `Welcome` agrees, an `Error` or anything else fails.
    pub fn handle_frame(&mut self, frame: Frame) -> Result<Agreed, HandshakeError> {
        if self.step != ChildStep::Sent {
            return Err(HandshakeError::OutOfTurn);
        }
        self.step = ChildStep::Failed;
        let welcome = match frame {
            Frame::Welcome(w) => w,
            Frame::Error(e) => {
                return Err(HandshakeError::Refused {
                    code: e.code,
                    detail: e.detail,
                });
            }
            other => {
                return Err(HandshakeError::UnexpectedFrame {
                    expected: "Welcome",
                    got: other.kind(),
                });
            }
        };
        let offered = self.hello.versions;
        if welcome.version < offered.min || welcome.version > offered.max {
            return Err(HandshakeError::VersionNotOffered {
                chosen: welcome.version,
                offered,
            });
        }
        self.step = ChildStep::Done;
        Ok(Agreed {
            version: welcome.version,
            parent_epoch: welcome.epoch,
            stated: welcome.cursor,
            clock_offset_ms: welcome.clock_offset_ms,
            parent_log_position: welcome.log_position,
        })
    }

    /// Fails the handshake when no answer came in time.
    pub fn handle_timeout(&mut self, now_ms: u64) -> Result<(), HandshakeError> {
        let waiting = matches!(self.step, ChildStep::Start | ChildStep::Sent);
        timeout(waiting, self.started_ms, now_ms)
    }

    /// Whether the handshake completed.
    pub fn is_done(&self) -> bool {
        self.step == ChildStep::Done
    }
}

/// What the parent learnt from a `Hello`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HelloAccepted {
    pub version: u32,
    pub child: String,
    /// The child's epoch: expect up batches of it.
    pub child_epoch: u64,
    /// Where the child stated it applied the down stream: the input of [`super::resume`].
    pub stated: Option<Cursor>,
    pub refill: bool,
    pub clock_offset_ms: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum ParentStep {
    Waiting,
    /// The Hello was accepted; the shell decides its epoch and calls `answer`.
    Accepted {
        version: u32,
        clock_offset_ms: i64,
    },
    /// The answer is waiting for `poll_transmit`.
    Answer(Frame),
    Done,
    Failed,
}

/// The accepting side of a handshake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParentHandshake {
    versions: VersionRange,
    started_ms: u64,
    step: ParentStep,
}

impl ParentHandshake {
    pub fn new(versions: VersionRange, now_ms: u64) -> Result<ParentHandshake, HandshakeError> {
        if versions.min > versions.max {
            return Err(HandshakeError::EmptyRange(versions));
        }
        Ok(ParentHandshake {
            versions,
            started_ms: now_ms,
            step: ParentStep::Waiting,
        })
    }

    /// The child's `Hello`. On success the shell runs [`super::resume`] for its down stream
    /// (taking a new epoch first if it is behind) and then calls [`ParentHandshake::answer`].
    /// On failure an error frame waits in `poll_transmit`.
    pub fn handle_frame(
        &mut self,
        frame: Frame,
        now_ms: u64,
    ) -> Result<HelloAccepted, HandshakeError> {
        if self.step != ParentStep::Waiting {
            return Err(HandshakeError::OutOfTurn);
        }
        let result = match frame {
            Frame::Hello(hello) => self.accept(hello, now_ms),
            other => Err(HandshakeError::UnexpectedFrame {
                expected: "Hello",
                got: other.kind(),
            }),
        };
        match &result {
            Ok(accepted) => {
                self.step = ParentStep::Accepted {
                    version: accepted.version,
                    clock_offset_ms: accepted.clock_offset_ms,
                }
            }
            Err(e) => self.step = ParentStep::Answer(e.to_frame()),
        }
        result
    }

    fn accept(&self, hello: Hello, now_ms: u64) -> Result<HelloAccepted, HandshakeError> {
        if !is_node_id(&hello.node) {
            return Err(HandshakeError::BadNode(hello.node));
        }
        let version = negotiate(self.versions, hello.versions)?;
        let offset = i128::from(now_ms) - i128::from(hello.clock_ms);
        let clock_offset_ms =
            i64::try_from(offset).unwrap_or(if offset < 0 { i64::MIN } else { i64::MAX });
        Ok(HelloAccepted {
            version,
            child: hello.node,
            child_epoch: hello.epoch,
            stated: hello.cursor,
            refill: hello.refill,
            clock_offset_ms,
        })
    }

    /// Queues the `Welcome`: `epoch` is the parent's store epoch after any new epoch it took,
    /// `cursor` where it durably applied the child's up stream, `log_position` the position of
    /// its last durable event.
    pub fn answer(
        &mut self,
        epoch: u64,
        cursor: Option<Cursor>,
        log_position: u64,
    ) -> Result<(), HandshakeError> {
        let ParentStep::Accepted {
            version,
            clock_offset_ms,
        } = self.step
        else {
            return Err(HandshakeError::OutOfTurn);
        };
        self.step = ParentStep::Answer(Frame::Welcome(Welcome {
            version,
            epoch,
            clock_offset_ms,
            cursor,
            log_position,
        }));
        Ok(())
    }

    /// The `Welcome` or the error frame, once.
    pub fn poll_transmit(&mut self) -> Option<Frame> {
        let ParentStep::Answer(frame) = &self.step else {
            return None;
        };
        let frame = frame.clone();
        self.step = match frame {
            Frame::Welcome(_) => ParentStep::Done,
            _ => ParentStep::Failed,
        };
        Some(frame)
    }

    /// Fails the handshake when no Hello came in time.
    pub fn handle_timeout(&mut self, now_ms: u64) -> Result<(), HandshakeError> {
        let waiting = matches!(self.step, ParentStep::Waiting);
        timeout(waiting, self.started_ms, now_ms)
    }

    /// Whether the Welcome was transmitted.
    pub fn is_done(&self) -> bool {
        self.step == ParentStep::Done
    }
}

fn timeout(waiting: bool, started_ms: u64, now_ms: u64) -> Result<(), HandshakeError> {
    if waiting && now_ms.saturating_sub(started_ms) >= HANDSHAKE_TIMEOUT_MS {
        return Err(HandshakeError::TimedOut {
            after_ms: HANDSHAKE_TIMEOUT_MS,
        });
    }
    Ok(())
}
