//! The replication stream: wire ([`pb::LinkFrame`]) <-> domain ([`yimen_core::link::Frame`]).
//!
//! Invariants: as for the rest of [`crate::convert`] (errors name the field path such as
//! `batch.events[3].digest`, no panic, domain → wire → domain is the identity). The wire
//! checks what a frame must be to exist in the protocol: digests of 32 bytes, node ids and
//! event origins that parse as division codes, store epochs, event seqs and positions above
//! 0, version ranges with `0 < min ≤ max`, a known error code and a detail of at most
//! [`ERROR_DETAIL_BYTES_MAX`] bytes. Whether a frame fits the connection (epoch, order,
//! credit, batch limits, an empty batch) is the core's `Sender`/`Receiver`/handshake
//! business. Event bytes stay opaque: relays forward them without decoding.

use yimen_core::link::{
    Ack, Batch, Credit, Cursor, Digest, ERROR_DETAIL_BYTES_MAX, ErrorCode, ErrorFrame, EventId,
    Frame, Hello, VersionRange, Welcome, WireEvent,
};

use super::{Path, WireError, division, required};
use crate::pb;
use crate::pb::link_frame::Frame as F;

impl TryFrom<pb::LinkFrame> for Frame {
    type Error = WireError;
    fn try_from(w: pb::LinkFrame) -> Result<Self, WireError> {
        let root = Path::ROOT;
        let frame = required(&root.field("frame"), w.frame)?;
        Ok(match frame {
            F::Hello(h) => Frame::Hello(hello(&root.field("hello"), h)?),
            F::Welcome(w) => Frame::Welcome(welcome(&root.field("welcome"), w)?),
            F::Batch(b) => Frame::Batch(batch(&root.field("batch"), b)?),
            F::Ack(a) => {
                let p = root.field("ack");
                Frame::Ack(Ack {
                    epoch: epoch(&p.field("epoch"), a.epoch)?,
                    position: a.position,
                })
            }
            F::Credit(c) => Frame::Credit(Credit {
                limit_bytes: c.limit_bytes,
            }),
            F::Error(e) => Frame::Error(error_frame(&root.field("error"), e)?),
        })
    }
}

impl From<&Frame> for pb::LinkFrame {
    fn from(frame: &Frame) -> Self {
        let f = match frame {
            Frame::Hello(h) => F::Hello(pb::LinkHello {
                versions: Some(versions_to_wire(h.versions)),
                node: h.node.clone(),
                epoch: h.epoch,
                clock_ms: h.clock_ms,
                cursor: h.cursor.as_ref().map(cursor_to_wire),
                refill: h.refill,
            }),
            Frame::Welcome(w) => F::Welcome(pb::LinkWelcome {
                version: w.version,
                epoch: w.epoch,
                clock_offset_ms: w.clock_offset_ms,
                cursor: w.cursor.as_ref().map(cursor_to_wire),
                log_position: w.log_position,
            }),
            Frame::Batch(b) => F::Batch(pb::LinkBatch {
                epoch: b.epoch,
                after: b.after,
                events: b.events.iter().map(event_to_wire).collect(),
            }),
            Frame::Ack(a) => F::Ack(pb::LinkAck {
                epoch: a.epoch,
                position: a.position,
            }),
            Frame::Credit(c) => F::Credit(pb::LinkCredit {
                limit_bytes: c.limit_bytes,
            }),
            Frame::Error(e) => F::Error(pb::LinkError {
                code: error_code_to_wire(e.code) as i32,
                detail: e.detail.clone(),
            }),
        };
        pb::LinkFrame { frame: Some(f) }
    }
}

impl From<Frame> for pb::LinkFrame {
    fn from(frame: Frame) -> Self {
        match frame {
            // Batches carry the bulk of the bytes: move them rather than clone.
            Frame::Batch(b) => pb::LinkFrame {
                frame: Some(F::Batch(pb::LinkBatch {
                    epoch: b.epoch,
                    after: b.after,
                    events: b.events.into_iter().map(event_into_wire).collect(),
                })),
            },
            other => (&other).into(),
        }
    }
}

fn hello(p: &Path<'_>, w: pb::LinkHello) -> Result<Hello, WireError> {
    Ok(Hello {
        versions: versions(&p.field("versions"), w.versions)?,
        node: node(&p.field("node"), w.node)?,
        epoch: epoch(&p.field("epoch"), w.epoch)?,
        clock_ms: w.clock_ms,
        cursor: cursor(&p.field("cursor"), w.cursor)?,
        refill: w.refill,
    })
}

fn welcome(p: &Path<'_>, w: pb::LinkWelcome) -> Result<Welcome, WireError> {
    if w.version == 0 {
        return Err(p.field("version").invalid("must be greater than 0"));
    }
    Ok(Welcome {
        version: w.version,
        epoch: epoch(&p.field("epoch"), w.epoch)?,
        clock_offset_ms: w.clock_offset_ms,
        cursor: cursor(&p.field("cursor"), w.cursor)?,
        log_position: w.log_position,
    })
}

fn batch(p: &Path<'_>, w: pb::LinkBatch) -> Result<Batch, WireError> {
    Ok(Batch {
        epoch: epoch(&p.field("epoch"), w.epoch)?,
        after: w.after,
        events: w
            .events
            .into_iter()
            .enumerate()
            .map(|(i, e)| event(&p.at("events", i), e))
            .collect::<Result<_, _>>()?,
    })
}

fn event(p: &Path<'_>, w: pb::LinkEvent) -> Result<WireEvent, WireError> {
    let id_path = p.field("id");
    let id = required(&id_path, w.id)?;
    let id = EventId {
        origin: node(&id_path.field("origin"), id.origin)?,
        epoch: epoch(&id_path.field("epoch"), id.epoch)?,
        seq: positive(&id_path.field("seq"), id.seq)?,
    };
    Ok(WireEvent {
        id,
        position: positive(&p.field("position"), w.position)?,
        digest: digest(&p.field("digest"), &w.digest)?,
        bytes: w.event,
    })
}

fn error_frame(p: &Path<'_>, w: pb::LinkError) -> Result<ErrorFrame, WireError> {
    let code_path = p.field("code");
    let code = match pb::LinkErrorCode::try_from(w.code) {
        Ok(pb::LinkErrorCode::Version) => ErrorCode::Version,
        Ok(pb::LinkErrorCode::Protocol) => ErrorCode::Protocol,
        Ok(pb::LinkErrorCode::NewEpoch) => ErrorCode::NewEpoch,
        Ok(pb::LinkErrorCode::Timeout) => ErrorCode::Timeout,
        Ok(pb::LinkErrorCode::Unspecified) => {
            return Err(code_path.invalid("LINK_ERROR_CODE_UNSPECIFIED"));
        }
        Err(_) => return Err(code_path.invalid(format!("unknown error code {}", w.code))),
    };
    if w.detail.len() > ERROR_DETAIL_BYTES_MAX {
        return Err(p.field("detail").invalid(format!(
            "{} bytes, at most {ERROR_DETAIL_BYTES_MAX} allowed",
            w.detail.len()
        )));
    }
    Ok(ErrorFrame {
        code,
        detail: w.detail,
    })
}

fn versions(p: &Path<'_>, w: Option<pb::LinkVersions>) -> Result<VersionRange, WireError> {
    let w = required(p, w)?;
    if w.min == 0 {
        return Err(p.field("min").invalid("must be greater than 0"));
    }
    if w.min > w.max {
        return Err(p.invalid(format!("min {} is above max {}", w.min, w.max)));
    }
    Ok(VersionRange {
        min: w.min,
        max: w.max,
    })
}

fn cursor(p: &Path<'_>, w: Option<pb::LinkCursor>) -> Result<Option<Cursor>, WireError> {
    let Some(w) = w else {
        return Ok(None);
    };
    Ok(Some(Cursor {
        epoch: epoch(&p.field("epoch"), w.epoch)?,
        position: w.position,
        digest: digest(&p.field("digest"), &w.digest)?,
    }))
}

/// A node id: a 12-digit division code, kept as sent.
fn node(p: &Path<'_>, s: String) -> Result<String, WireError> {
    division(p, &s)?;
    Ok(s)
}

/// A store epoch: every store takes one above 0 when it is created.
fn epoch(p: &Path<'_>, n: u64) -> Result<u64, WireError> {
    positive(p, n)
}

fn positive(p: &Path<'_>, n: u64) -> Result<u64, WireError> {
    if n == 0 {
        return Err(p.invalid("must be greater than 0"));
    }
    Ok(n)
}

fn digest(p: &Path<'_>, bytes: &[u8]) -> Result<Digest, WireError> {
    Digest::try_from(bytes).map_err(|_| {
        p.invalid(format!(
            "must be {} bytes, got {}",
            std::mem::size_of::<Digest>(),
            bytes.len()
        ))
    })
}

fn versions_to_wire(v: VersionRange) -> pb::LinkVersions {
    pb::LinkVersions {
        min: v.min,
        max: v.max,
    }
}

fn cursor_to_wire(c: &Cursor) -> pb::LinkCursor {
    pb::LinkCursor {
        epoch: c.epoch,
        position: c.position,
        digest: c.digest.to_vec(),
    }
}

fn id_to_wire(id: EventId) -> pb::EventId {
    pb::EventId {
        origin: id.origin,
        epoch: id.epoch,
        seq: id.seq,
    }
}

fn event_to_wire(e: &WireEvent) -> pb::LinkEvent {
    pb::LinkEvent {
        id: Some(id_to_wire(e.id.clone())),
        position: e.position,
        digest: e.digest.to_vec(),
        event: e.bytes.clone(),
    }
}

fn event_into_wire(e: WireEvent) -> pb::LinkEvent {
    pb::LinkEvent {
        id: Some(id_to_wire(e.id)),
        position: e.position,
        digest: e.digest.to_vec(),
        event: e.bytes,
    }
}

fn error_code_to_wire(code: ErrorCode) -> pb::LinkErrorCode {
    match code {
        ErrorCode::Version => pb::LinkErrorCode::Version,
        ErrorCode::Protocol => pb::LinkErrorCode::Protocol,
        ErrorCode::NewEpoch => pb::LinkErrorCode::NewEpoch,
        ErrorCode::Timeout => pb::LinkErrorCode::Timeout,
    }
}
